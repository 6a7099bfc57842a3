// Training view: the job list, live curves of a job from its events stream (reward and its
// accuracy/format parts, mean completion length, reflection rate, KL against step), the sampled
// rollouts of a step, and the admin actions (start, cancel, load the exported model). A
// `preparing` job (its split generated, the trainer's .venv made) shows what is made and how far,
// live from the stream's `status` events. The training API is admin-only: nothing is asked for
// until the user has given the token.
import { call, getJson, hasToken, onTokenChange, sendJson, serverEvents } from './api.js';
import { lineChart } from './charts.js';
import { renderCompletion } from './completion.js';
import { $, badge, clear, el, notify, number, percent, reportError, shortId, when } from './dom.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 3000;

const CHARTS = [
  {
    id: 'chart-reward',
    series: [
      { label: 'reward', key: 'reward', color: '#2563eb' },
      { label: 'accuracy', key: 'rewards/accuracy', color: '#16a34a' },
      { label: 'format', key: 'rewards/format', color: '#d97706' },
    ],
  },
  { id: 'chart-length', series: [{ label: 'completion length', key: 'completion_length', color: '#9333ea' }] },
  {
    id: 'chart-reflection',
    series: [
      { label: 'reflection rate', key: 'reflection_rate', color: '#dc2626' },
      { label: 'most common answer share', key: 'answer_top_share', color: '#64748b' },
    ],
  },
  { id: 'chart-kl', series: [{ label: 'KL', key: 'kl', color: '#0891b2' }] },
];

const state = {
  active: false,
  jobs: [],
  selected: null,
  job: null,
  follow: null,
  points: new Map(),
  charts: null,
  drawQueued: false,
  rolloutStep: 'latest',
  rolloutTimer: null,
  rolloutSeq: 0,
  poll: null,
};

const api = {
  job: (id) => `/admin/train/${encodeURIComponent(id)}`,
};

export function initTraining() {
  $('#jobs-refresh').addEventListener('click', () => refreshJobs().catch(reportError));
  $('#job-cancel').addEventListener('click', () => cancelJob().catch(reportError));
  $('#job-load').addEventListener('click', () => loadModel().catch(reportError));
  $('#start-job').addEventListener('submit', (event) => {
    event.preventDefault();
    startJob(event.target).catch(reportError);
  });
  $('#rollout-step').addEventListener('change', (event) => {
    state.rolloutStep = event.target.value;
    loadRollouts().catch(reportError);
  });
  onTokenChange(() => {
    if (state.active) showTraining(state.selected).catch(reportError);
  });
}

export async function showTraining(jobId) {
  state.active = true;
  const locked = !hasToken();
  $('#training-locked').hidden = !locked;
  $('#training-body').hidden = locked;
  if (locked) {
    stopFollowing();
    stopPolling();
    return;
  }
  startPolling();
  await refreshJobs();
  const id = jobId ?? state.selected ?? state.jobs[0]?.id ?? null;
  if (id) await select(id);
}

export function hideTraining() {
  state.active = false;
  stopPolling();
  stopFollowing();
}

function startPolling() {
  if (state.poll) return;
  state.poll = setInterval(() => {
    if (state.active && hasToken()) refreshJobs().catch(reportError);
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(state.poll);
  state.poll = null;
}

async function refreshJobs() {
  const list = await getJson('/admin/train', { admin: true });
  state.jobs = list.data;
  renderJobList();
  const current = state.jobs.find((j) => j.id === state.selected);
  if (current) showJob(current);
}

function renderJobList() {
  const body = clear($('#job-list tbody'));
  if (!state.jobs.length) {
    body.append(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No training jobs yet.')));
    return;
  }
  for (const job of state.jobs) {
    const total = job.progress.total_steps;
    body.append(
      el(
        'tr',
        {
          class: job.id === state.selected ? 'selected' : '',
          dataset: { id: job.id },
          tabindex: 0,
          onclick: () => (location.hash = `#training/${job.id}`),
          onkeydown: (e) => e.key === 'Enter' && (location.hash = `#training/${job.id}`),
        },
        el('td', { title: job.id }, shortId(job.id)),
        statusCell(job),
        el('td', {}, `${job.progress.step}${total ? ` / ${total}` : ''}`),
        el('td', {}, number(job.metrics?.reward)),
      ),
    );
  }
}

/** What a preparing job is making, or null when it is not preparing. */
function preparingOf(job) {
  return job.status === 'preparing' ? (job.preparing ?? null) : null;
}

const counted = (p) => typeof p.done === 'number' && typeof p.total === 'number' && p.total > 0;

/** The list's status cell: the badge, and a preparing job's items done of all. */
function statusCell(job) {
  const preparing = preparingOf(job);
  return el(
    'td',
    { class: 'job-status', title: preparing?.message },
    badge(job.status),
    preparing && counted(preparing) ? ` ${preparing.done}/${preparing.total}` : '',
  );
}

/** A `status` event of the job's stream: its status, and what it is preparing (null otherwise). */
function applyStatus(id, data) {
  const index = state.jobs.findIndex((j) => j.id === id);
  const known = index >= 0 ? state.jobs[index] : state.job?.id === id ? state.job : null;
  if (!known || !data?.status) return;
  const job = { ...known, status: data.status, preparing: data.preparing ?? null };
  if (index >= 0) {
    state.jobs[index] = job;
    const row = [...$('#job-list tbody').rows].find((r) => r.dataset.id === id);
    // Progress alone changes one cell; a new status may change the rest (a rendered list anyway).
    if (row && known.status === job.status) row.cells[1].replaceWith(statusCell(job));
    else renderJobList();
  }
  if (state.selected === id) showJob(job);
}

function ensureCharts() {
  if (state.charts) return;
  state.charts = CHARTS.map((spec) => lineChart(document.getElementById(spec.id), { series: spec.series }));
}

async function select(id) {
  if (state.selected === id && state.follow) return;
  stopFollowing();
  state.selected = id;
  state.points = new Map();
  state.rolloutStep = 'latest';
  $('#job-empty').hidden = true;
  $('#job-view').hidden = false;
  ensureCharts();
  draw();
  renderJobList();
  const job = state.jobs.find((j) => j.id === id) ?? (await getJson(api.job(id), { admin: true }));
  showJob(job);
  follow(id);
  await loadRollouts();
}

function showJob(job) {
  state.job = job;
  $('#job-title').textContent = `Job ${job.id}`;
  const status = clear($('#job-status'));
  status.append(badge(job.status));
  status.dataset.status = job.status;
  const total = job.progress.total_steps;
  const preparing = preparingOf(job);
  $('#job-progress').textContent = preparing
    ? preparing.stage === 'dataset'
      ? `generating the data set${counted(preparing) ? `: ${preparing.done} of ${preparing.total} items` : ''}`
      : "making the trainer's environment"
    : `step ${job.progress.step}${total ? ` of ${total}` : ''}`;
  const box = clear($('#job-preparing'));
  box.hidden = !preparing;
  box.dataset.stage = preparing?.stage ?? '';
  if (preparing) {
    box.append(el('span', { class: 'preparing-message' }, preparing.message ?? ''));
    if (counted(preparing)) box.append(el('progress', { max: preparing.total, value: preparing.done }));
  }
  const request = job.request ?? {};
  $('#job-meta').textContent = [
    `base model ${request.base_model ?? '–'}`,
    `data set ${request.dataset ?? '–'}${request.level ? ` (${request.level})` : ''}`,
    `template ${request.template ?? 'r1'}`,
    `created ${when(job.created_at)}`,
    job.finished_at ? `finished ${when(job.finished_at)}` : null,
    job.model_name ? `exported model ${job.model_name}` : null,
  ]
    .filter(Boolean)
    .join(' · ');
  const error = $('#job-error');
  error.hidden = !job.error;
  error.textContent = job.error ?? '';
  $('#job-cancel').hidden = TERMINAL.has(job.status) || job.cancel_requested;
  $('#job-load').hidden = !job.model_name;
}

function stopFollowing() {
  state.follow?.abort();
  state.follow = null;
}

/** Every stored step, then live ones, until the job ends (GET /admin/train/<id>/events). */
async function follow(id) {
  const controller = new AbortController();
  state.follow = controller;
  try {
    const res = await call(`${api.job(id)}/events`, { admin: true, signal: controller.signal, accept: 'text/event-stream' });
    for await (const message of serverEvents(res)) {
      if (state.follow !== controller) break;
      if (message.event === 'metrics') {
        state.points.set(message.data.step, message.data);
        queueDraw();
        queueRollouts();
      } else if (message.event === 'status') {
        applyStatus(id, message.data);
      } else if (message.event === 'done') {
        if (message.data.job) {
          const index = state.jobs.findIndex((j) => j.id === id);
          if (index >= 0) state.jobs[index] = message.data.job;
          renderJobList();
          showJob(message.data.job);
        }
        queueRollouts();
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) reportError(error);
  } finally {
    // The stream ended with the job (or failed): a later select() opens a new one.
    if (state.follow === controller) state.follow = null;
  }
}

function queueDraw() {
  if (state.drawQueued) return;
  state.drawQueued = true;
  requestAnimationFrame(() => {
    state.drawQueued = false;
    draw();
  });
}

function draw() {
  const points = [...state.points.values()];
  for (const chart of state.charts ?? []) chart.setPoints(points);
  const latest = points.reduce((a, b) => (a && a.step > b.step ? a : b), null);
  $('#job-latest').textContent = latest
    ? `latest step ${latest.step}: reward ${number(latest.reward)}, accuracy ${number(latest['rewards/accuracy'])}, format ${number(latest['rewards/format'])}, length ${number(latest.completion_length, 1)}, reflection ${percent(latest.reflection_rate)}, KL ${number(latest.kl, 4)}`
    : 'No steps yet.';
}

function queueRollouts() {
  if (state.rolloutStep !== 'latest') return;
  clearTimeout(state.rolloutTimer);
  state.rolloutTimer = setTimeout(() => loadRollouts().catch(reportError), 300);
}

async function loadRollouts() {
  const id = state.selected;
  if (!id) return;
  const seq = ++state.rolloutSeq;
  const step = state.rolloutStep === 'latest' ? '' : `&step=${encodeURIComponent(state.rolloutStep)}`;
  const page = await getJson(`${api.job(id)}/rollouts?limit=16${step}`, { admin: true });
  if (seq !== state.rolloutSeq || id !== state.selected) return;
  const select = clear($('#rollout-step'));
  select.append(el('option', { value: 'latest' }, page.steps.length ? `latest (${page.steps.at(-1)})` : 'latest'));
  for (const s of [...page.steps].reverse()) select.append(el('option', { value: String(s) }, String(s)));
  select.value = state.rolloutStep;
  $('#rollout-count').textContent = page.step === null ? '' : `${page.data.length} of ${page.total} sampled completions of step ${page.step}`;
  const box = clear($('#rollouts'));
  box.dataset.step = page.step === null ? '' : String(page.step);
  if (!page.data.length) {
    box.append(el('p', { class: 'empty' }, 'No rollouts written for this job yet (the trainer writes rollouts.jsonl).'));
    return;
  }
  const opensThink = (state.job?.request?.template ?? 'r1') === 'r1';
  for (const rollout of page.data) box.append(rolloutCard(rollout, opensThink));
}

function rolloutCard(rollout, opensThink) {
  const rewards = rollout.rewards ?? {};
  const completion = renderCompletion(String(rollout.completion ?? ''), { opensThink });
  return el(
    'article',
    { class: 'rollout' },
    el(
      'header',
      {},
      el('span', { class: 'mono' }, String(rollout.item_id ?? '')),
      badge(rewards.accuracy ? 'correct' : 'wrong', rewards.accuracy ? 'ok' : 'bad'),
      badge(rewards.format ? 'format ok' : 'bad format', rewards.format ? 'ok' : 'warn'),
      rollout.reflection ? badge('reflection', 'reflect') : null,
      el('span', { class: 'meta' }, `answer ${JSON.stringify(rollout.answer ?? null)} · gold ${JSON.stringify(rollout.gold ?? null)}`),
    ),
    el('details', {}, el('summary', {}, 'prompt'), el('pre', { class: 'prompt' }, String(rollout.prompt ?? ''))),
    completion,
  );
}

async function cancelJob() {
  const id = state.selected;
  if (!id || !window.confirm(`Cancel training job ${id}? Its last checkpoint is kept.`)) return;
  const job = await sendJson(`${api.job(id)}/cancel`, undefined, { admin: true });
  showJob(job);
  notify(`cancel requested for ${id}`);
  await refreshJobs();
}

async function loadModel() {
  const name = state.job?.model_name;
  if (!name) return;
  notify(`loading ${name}…`);
  const loaded = await sendJson(`/admin/models/${encodeURIComponent(name)}/load`, undefined, { admin: true });
  notify(`model ${loaded.id} loaded in ${loaded.load_ms} ms; pick it in Try it`);
}

async function startJob(form) {
  const body = {};
  for (const [key, raw] of new FormData(form).entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    const input = form.elements.namedItem(key);
    body[key] = input?.type === 'number' ? Number(value) : value;
  }
  const created = await sendJson('/admin/train', body, { admin: true });
  notify(`training job ${created.id} ${created.status}`);
  $('#start-job-box').open = false;
  await refreshJobs();
  location.hash = `#training/${created.id}`;
}

/** Names for the base-model field's suggestions. */
export function fillModelSuggestions(models) {
  const list = clear($('#model-names'));
  for (const model of models) list.append(el('option', { value: model.id }));
}
