// Evaluation view: the runs; for a run its accuracy per task beside other runs of the same
// benchmark (model against model, template against template), format rates, and a browser of its
// predictions (image, question, response, gold, correct) with filters for wrong and badly
// formatted answers. Items' questions and images come from GET /evaluate/<id>/items/<item>.
import { call, getJson, jsonLines, sendJson } from './api.js';
import { groupedBars } from './charts.js';
import { renderCompletion } from './completion.js';
import { $, badge, clear, el, notify, percent, reportError, shortId, when } from './dom.js';

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

function runLabel(run) {
  return `${run.model} · ${run.params?.template ?? 'r1'}/${run.params?.strategy ?? 'r1'} · ${shortId(run.id)}`;
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
  $('#run-progress').textContent = `${run.progress.done} / ${run.progress.total} items`;
  $('#run-meta').textContent = [
    run.id,
    runLevel(run) ? `level ${runLevel(run)}` : null,
    `template ${run.params?.template ?? 'r1'}`,
    `strategy ${run.params?.strategy ?? 'r1'}`,
    `max ${run.params?.maxNewTokens ?? '–'} new tokens`,
    `created ${when(run.created_at)}`,
    run.error ? `error: ${run.error}` : null,
  ]
    .filter(Boolean)
    .join(' · ');
  const result = run.result;
  const stats = clear($('#run-stats'));
  const stat = (label, value) => el('div', { class: 'stat' }, el('div', { class: 'stat-value' }, value), el('div', { class: 'stat-label' }, label));
  stats.append(
    stat('accuracy', percent(result?.accuracy)),
    stat('format rate', percent(result?.format_rate)),
    stat(`official score (${result?.official?.name ?? '–'})`, percent(result?.official?.score)),
    stat('items', String(result?.n ?? run.progress.done)),
  );
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

/** Per task of the selected run: items, accuracy and format rate (from its predictions). */
function renderTaskTable(run) {
  const byTask = new Map();
  for (const p of state.predictions) {
    const t = byTask.get(p.task) ?? { n: 0, correct: 0, format: 0 };
    t.n += 1;
    t.correct += p.correct ? 1 : 0;
    t.format += p.format_ok ? 1 : 0;
    byTask.set(p.task, t);
  }
  const body = clear($('#task-table tbody'));
  for (const [task, t] of [...byTask.entries()].sort()) {
    body.append(el('tr', {}, el('td', {}, task), el('td', {}, String(t.n)), el('td', {}, percent(t.correct / t.n)), el('td', {}, percent(t.format / t.n))));
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
        { class: `prediction ${p.correct ? 'is-correct' : 'is-wrong'} ${p.format_ok ? '' : 'bad-format'}`, dataset: { item: p.id } },
        imageCell,
        questionCell,
        el('td', { class: 'pred-response' }, renderCompletion(p.prediction, { opensThink })),
        el('td', {}, el('div', { class: 'mono' }, p.extracted ?? '–'), el('div', { class: 'meta' }, p.task)),
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

export function fillRunModels(models) {
  const select = clear($('#run-model'));
  select.append(el('option', { value: '' }, 'default model'));
  for (const model of models) select.append(el('option', { value: model.id }, model.id));
}
