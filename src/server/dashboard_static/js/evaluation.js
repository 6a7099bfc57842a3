// Evaluation view: the runs; for a run its accuracy per task beside other runs of the same
// benchmark (model against model, template against template), format rates, pass@k curves of the
// same runs side by side, the response statistics (completion length, reflection and off-option
// rates) per task, and a browser of its predictions (image, question, response, gold, correct;
// every sample of an item) with filters for wrong and badly formatted answers. Items' questions and
// images come from GET /evaluate/<id>/items/<item>. Runs are started here, or scored from an
// uploaded file of predictions (POST /evaluate/predictions).
import { call, getJson, jsonLines, sendJson, sendText } from './api.js';
import { curvesChart, groupedBars } from './charts.js';
import { renderCompletion } from './completion.js';
import { $, append, badge, clear, el, notify, number, percent, reportError, shortId, when } from './dom.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 3000;
const PAGE_SIZE = 20;
const MAX_COMPARED = 6;

const state = {
  active: false,
  runs: [],
  selected: null,
  /** Run ids shown in the bars beside the selected one (null: the default choice). */
  compared: null,
  predictions: [],
  predictionsOf: null,
  filter: 'all',
  task: '',
  search: '',
  page: 0,
  items: new Map(),
  poll: null,
  loadSeq: 0,
};

const runPath = (id) => `/evaluate/${encodeURIComponent(id)}`;

export function initEvaluation() {
  $('#runs-refresh').addEventListener('click', () => refreshRuns().catch(reportError));
  $('#start-run').addEventListener('submit', (event) => {
    event.preventDefault();
    startRun(event.target).catch(reportError);
  });
  $('#upload-run').addEventListener('submit', (event) => {
    event.preventDefault();
    uploadRun(event.target).catch(reportError);
  });
  for (const input of document.querySelectorAll('input[name="pred-filter"]')) {
    input.addEventListener('change', () => {
      state.filter = input.value;
      state.page = 0;
      renderPredictions();
    });
  }
  $('#pred-task').addEventListener('change', (event) => {
    state.task = event.target.value;
    state.page = 0;
    renderPredictions();
  });
  $('#pred-search').addEventListener('input', (event) => {
    state.search = event.target.value.trim().toLowerCase();
    state.page = 0;
    renderPredictions();
  });
  $('#pred-prev').addEventListener('click', () => {
    state.page = Math.max(0, state.page - 1);
    renderPredictions();
  });
  $('#pred-next').addEventListener('click', () => {
    state.page += 1;
    renderPredictions();
  });
}

export async function showEvaluation(runId) {
  state.active = true;
  if (!state.poll) {
    state.poll = setInterval(() => {
      if (state.active && state.runs.some((r) => !TERMINAL.has(r.status))) refreshRuns().catch(reportError);
    }, POLL_MS);
  }
  await refreshRuns();
  const id = runId ?? state.selected ?? state.runs[0]?.id ?? null;
  if (id) await select(id);
}

export function hideEvaluation() {
  state.active = false;
  clearInterval(state.poll);
  state.poll = null;
}

async function refreshRuns() {
  const list = await getJson('/evaluate');
  const before = state.runs.find((r) => r.id === state.selected);
  state.runs = list.data;
  renderRunList();
  const now = state.runs.find((r) => r.id === state.selected);
  // A selected run that progressed: its numbers and predictions are new.
  if (now && before && (now.status !== before.status || now.progress.done !== before.progress.done)) await showRun(now, true);
}

/** spatial-synth's generator level ("standard" for runs stored before levels existed); null for other benchmarks. */
function runLevel(run) {
  return run.benchmark === 'spatial-synth' ? (run.params?.level ?? 'standard') : null;
}

/** The benchmark and split, with the level for spatial-synth. */
function runSet(run) {
  const level = runLevel(run);
  return `${run.benchmark} ${run.split}${level ? ` · ${level}` : ''}`;
}

/** Responses per item (1 for runs stored before samples existed). */
function runSamples(run) {
  return run.result?.samples ?? run.params?.samples ?? 1;
}

function runLabel(run) {
  const samples = runSamples(run) > 1 ? ` · ${runSamples(run)} samples` : '';
  const origin = run.params?.origin === 'uploaded' ? ' · uploaded' : '';
  return `${run.model} · ${run.params?.template ?? 'r1'}/${run.params?.strategy ?? 'r1'}${samples}${origin} · ${shortId(run.id)}`;
}

/** "mean / p50 / p90" completion tokens, or – when unknown. */
function tokens(stats) {
  const t = stats?.completion_tokens;
  return t ? `${number(t.mean, 1)} / ${number(t.p50, 1)} / ${number(t.p90, 1)}` : '–';
}

/** pass@k at the run's largest k, labelled. */
function passAtLargest(scores, samples) {
  return `${percent(scores?.pass_at_k?.[String(samples)])} @${samples}`;
}

function renderRunList() {
  const body = clear($('#run-list tbody'));
  if (!state.runs.length) {
    body.append(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No evaluation runs yet.')));
    return;
  }
  for (const run of state.runs) {
    body.append(
      el(
        'tr',
        {
          class: run.id === state.selected ? 'selected' : '',
          dataset: { id: run.id },
          tabindex: 0,
          onclick: () => (location.hash = `#evaluation/${run.id}`),
          onkeydown: (e) => e.key === 'Enter' && (location.hash = `#evaluation/${run.id}`),
        },
        el('td', { title: run.id }, shortId(run.id), el('div', { class: 'meta' }, runSet(run))),
        el('td', {}, run.model, el('div', { class: 'meta' }, `${run.params?.template ?? 'r1'} / ${run.params?.strategy ?? 'r1'}`)),
        el('td', {}, badge(run.status), run.status === 'running' ? ` ${run.progress.done}/${run.progress.total}` : ''),
        el('td', {}, percent(run.result?.accuracy)),
      ),
    );
  }
}

async function select(id) {
  if (state.selected !== id) {
    state.selected = id;
    state.compared = null;
    state.page = 0;
    state.task = '';
  }
  renderRunList();
  const run = state.runs.find((r) => r.id === id) ?? (await getJson(runPath(id)));
  await showRun(run, state.predictionsOf !== id);
}

async function showRun(run, reloadPredictions) {
  $('#run-empty').hidden = true;
  $('#run-view').hidden = false;
  $('#run-title').textContent = `${runSet(run)} · ${run.model}`;
  const status = clear($('#run-status'));
  status.append(badge(run.status));
  status.dataset.status = run.status;
  const samples = runSamples(run);
  $('#run-progress').textContent = `${run.progress.done} / ${run.progress.total} ${samples > 1 ? 'responses' : 'items'}`;
  $('#run-meta').textContent = [
    run.id,
    runLevel(run) ? `level ${runLevel(run)}` : null,
    `template ${run.params?.template ?? 'r1'}`,
    `strategy ${run.params?.strategy ?? 'r1'}`,
    run.params?.origin === 'uploaded' ? 'scored from uploaded predictions' : `max ${run.params?.maxNewTokens ?? '–'} new tokens`,
    samples > 1 ? `${samples} samples per item, temperature ${run.params?.temperature ?? '–'}, top p ${run.params?.topP ?? 1}, seed ${run.params?.seed ?? 'random'}` : null,
    `created ${when(run.created_at)}`,
    run.error ? `error: ${run.error}` : null,
  ]
    .filter(Boolean)
    .join(' · ');
  const result = run.result;
  const stats = clear($('#run-stats'));
  const stat = (label, value) => el('div', { class: 'stat' }, el('div', { class: 'stat-value' }, value), el('div', { class: 'stat-label' }, label));
  // append() skips the nulls of the stats a single-sample run does not have.
  append(
    stats,
    stat('accuracy', percent(result?.accuracy)),
    samples > 1 ? stat(`pass@${samples}`, percent(result?.pass_at_k?.[String(samples)])) : null,
    samples > 1 ? stat(`majority@${samples}`, percent(result?.majority_accuracy)) : null,
    stat('format rate', percent(result?.format_rate)),
    stat(`official score (${result?.official?.name ?? '–'})`, percent(result?.official?.score)),
    stat('items', String(result?.n ?? run.progress.done)),
    stat('tokens mean / p50 / p90', tokens(result?.stats)),
    stat('reflection rate', percent(result?.stats?.reflection_rate)),
    stat('answers off the options', percent(result?.stats?.off_option_rate)),
  );
  for (const node of [...stats.children]) node.dataset.stat = node.querySelector('.stat-label').textContent;
  renderComparison(run);
  if (reloadPredictions) await loadPredictions(run);
}

/** Runs of the same benchmark (and split, and level) with results, the selected one first. */
function comparable(run) {
  return state.runs.filter((r) => r.id !== run.id && r.benchmark === run.benchmark && r.split === run.split && runLevel(r) === runLevel(run) && r.result);
}

function renderComparison(run) {
  const others = comparable(run);
  if (state.compared === null) state.compared = new Set(others.slice(0, MAX_COMPARED - 1).map((r) => r.id));
  const box = clear($('#compare-runs'));
  if (!others.length) box.append(el('span', { class: 'meta' }, `No other finished ${runSet(run)} runs to compare with.`));
  for (const other of others) {
    const input = el('input', { type: 'checkbox', value: other.id, checked: state.compared.has(other.id) });
    input.addEventListener('change', () => {
      if (input.checked) state.compared.add(other.id);
      else state.compared.delete(other.id);
      renderComparison(run);
    });
    box.append(el('label', { class: 'check' }, input, runLabel(other)));
  }
  const shown = [run, ...others.filter((r) => state.compared.has(r.id))].filter((r) => r.result);
  const tasks = [...new Set(shown.flatMap((r) => Object.keys(r.result.by_task ?? {})))].sort();
  const labelled = shown.map((r) => ({ label: r.id === run.id ? `${runLabel(r)} (this run)` : runLabel(r), run: r }));
  groupedBars($('#task-bars'), {
    groups: ['overall', ...tasks],
    runs: labelled.map(({ label, run: r }) => ({
      label,
      values: Object.fromEntries([
        ['overall', { value: r.result.accuracy, n: r.result.n }],
        ...Object.entries(r.result.by_task ?? {}).map(([task, s]) => [task, { value: s.accuracy, n: s.n }]),
      ]),
    })),
  });
  groupedBars($('#format-bars'), {
    groups: ['format rate'],
    runs: labelled.map(({ label, run: r }) => ({ label, values: { 'format rate': { value: r.result.format_rate, n: r.result.n } } })),
  });
  // pass@k against k for the same runs: how far sampling more lifts each (docs/evaluation.md).
  curvesChart($('#pass-chart'), {
    xLabel: 'k',
    series: labelled.map(({ label, run: r }) => ({ label, points: r.result.pass_at_k ?? { 1: r.result.accuracy } })),
  });
  if (!run.result) $('#task-bars').prepend(el('p', { class: 'meta' }, 'This run has no result yet: bars appear when it has finished.'));
}

async function loadPredictions(run) {
  const seq = ++state.loadSeq;
  const rows = [];
  const res = await call(`${runPath(run.id)}/predictions`, { accept: 'application/x-ndjson' });
  for await (const row of jsonLines(res)) rows.push(row);
  if (seq !== state.loadSeq) return;
  if (state.predictionsOf !== run.id) state.items = new Map();
  state.predictions = rows;
  state.predictionsOf = run.id;
  renderTaskTable(run);
  const tasks = [...new Set(rows.map((r) => r.task))].sort();
  const select = clear($('#pred-task'));
  select.append(el('option', { value: '' }, 'all tasks'), tasks.map((t) => el('option', { value: t }, t)));
  select.value = tasks.includes(state.task) ? state.task : '';
  renderPredictions();
}

/**
 * Per task of the selected run: items, accuracy, pass@k, majority, format rate and the response
 * statistics from its result; while it runs (no result yet), what its predictions so far give.
 */
function renderTaskTable(run) {
  const body = clear($('#task-table tbody'));
  const samples = runSamples(run);
  const cells = (...values) => values.map((v) => el('td', {}, v));
  if (run.result?.by_task) {
    for (const [task, t] of Object.entries(run.result.by_task).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      body.append(
        el(
          'tr',
          { dataset: { task } },
          cells(task, String(t.n), percent(t.accuracy), t.pass_at_k ? passAtLargest(t, samples) : '–', samples > 1 ? percent(t.majority_accuracy) : '–', percent(t.format_rate), tokens(t.stats), percent(t.stats?.reflection_rate), percent(t.stats?.off_option_rate)),
        ),
      );
    }
  } else {
    const byTask = new Map();
    for (const p of state.predictions) {
      const t = byTask.get(p.task) ?? { n: 0, correct: 0, format: 0 };
      t.n += 1;
      t.correct += p.correct ? 1 : 0;
      t.format += p.format_ok ? 1 : 0;
      byTask.set(p.task, t);
    }
    for (const [task, t] of [...byTask.entries()].sort()) {
      body.append(el('tr', { dataset: { task } }, cells(task, `${t.n} responses`, percent(t.correct / t.n), '–', '–', percent(t.format / t.n), '–', '–', '–')));
    }
  }
  $('#task-table').dataset.run = run.id;
}

function filtered() {
  return state.predictions.filter((p) => {
    if (state.filter === 'wrong' && p.correct) return false;
    if (state.filter === 'format' && p.format_ok) return false;
    if (state.filter === 'either' && p.correct && p.format_ok) return false;
    if (state.task && p.task !== state.task) return false;
    if (state.search && !`${p.id} ${p.prediction} ${p.gold_text}`.toLowerCase().includes(state.search)) return false;
    return true;
  });
}

function renderPredictions() {
  const rows = filtered();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const shown = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  $('#pred-count').textContent = `${rows.length} of ${state.predictions.length} predictions`;
  $('#pred-page').textContent = `page ${state.page + 1} of ${pages}`;
  $('#pred-prev').disabled = state.page === 0;
  $('#pred-next').disabled = state.page >= pages - 1;
  const run = state.runs.find((r) => r.id === state.predictionsOf);
  const opensThink = (run?.params?.template ?? 'r1') === 'r1';
  const body = clear($('#predictions tbody'));
  if (!shown.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No predictions match.')));
  for (const p of shown) {
    const imageCell = el('td', { class: 'pred-image' });
    const questionCell = el('td', { class: 'pred-question' }, el('span', { class: 'meta' }, p.id));
    body.append(
      el(
        'tr',
        { class: `prediction ${p.correct ? 'is-correct' : 'is-wrong'} ${p.format_ok ? '' : 'bad-format'}`, dataset: { item: p.id, sample: String(p.sample ?? 0) } },
        imageCell,
        questionCell,
        el('td', { class: 'pred-response' }, renderCompletion(p.prediction, { opensThink })),
        el(
          'td',
          {},
          el('div', { class: 'mono' }, p.extracted ?? '–'),
          el('div', { class: 'meta' }, p.task),
          run && runSamples(run) > 1 ? el('div', { class: 'meta' }, `sample ${p.sample}`) : null,
        ),
        el('td', {}, el('div', { class: 'mono' }, p.gold), el('div', { class: 'meta' }, p.gold_text)),
        el('td', {}, badge(p.correct ? 'correct' : 'wrong', p.correct ? 'ok' : 'bad'), ' ', badge(p.format_ok ? 'format ok' : 'bad format', p.format_ok ? 'ok' : 'warn')),
      ),
    );
    fillItem(state.predictionsOf, p.id, imageCell, questionCell).catch((error) => {
      questionCell.append(el('div', { class: 'error' }, error.message));
    });
  }
}

async function fillItem(runId, itemId, imageCell, questionCell) {
  const key = `${runId}\n${itemId}`;
  let item = state.items.get(key);
  if (!item) {
    item = getJson(`${runPath(runId)}/items/${encodeURIComponent(itemId)}`);
    state.items.set(key, item);
    item.catch(() => state.items.delete(key));
  }
  const data = await item;
  for (const src of data.images) imageCell.append(el('img', { src, alt: `image of ${itemId}`, loading: 'lazy' }));
  clear(questionCell).append(
    el('div', {}, data.question),
    el(
      'ol',
      { class: 'choices' },
      data.choices.map((c, i) => el('li', { class: i === data.answer.charCodeAt(0) - 65 ? 'gold' : '' }, c)),
    ),
    el('div', { class: 'meta' }, itemId),
  );
}

async function startRun(form) {
  const body = {};
  for (const [key, raw] of new FormData(form).entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    body[key] = form.elements.namedItem(key)?.type === 'number' ? Number(value) : value;
  }
  const created = await sendJson('/evaluate', body);
  notify(`evaluation run ${created.id} ${created.status}`);
  $('#start-run-box').open = false;
  await refreshRuns();
  location.hash = `#evaluation/${created.id}`;
}

/** A run from a file of predictions made elsewhere: its JSON lines go as they are, the settings in the query. */
async function uploadRun(form) {
  const query = new URLSearchParams();
  let file = null;
  for (const [key, raw] of new FormData(form).entries()) {
    if (key === 'file') {
      file = raw;
      continue;
    }
    const value = String(raw).trim();
    if (value) query.set(key, value);
  }
  if (!file || !file.size) throw new Error('choose a file of predictions (JSON lines)');
  const run = await sendText(`/evaluate/predictions?${query}`, await file.text(), 'application/x-ndjson');
  notify(`run ${run.id} scored from ${file.name}`);
  $('#upload-run-box').open = false;
  await refreshRuns();
  location.hash = `#evaluation/${run.id}`;
}

export function fillRunModels(models) {
  const select = clear($('#run-model'));
  select.append(el('option', { value: '' }, 'default model'));
  for (const model of models) select.append(el('option', { value: model.id }, model.id));
}
