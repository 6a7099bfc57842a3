// The dashboard's entry point: the admin-token box, the models list, and the views switched by
// the location hash (#training[/<job>], #evaluation[/<run>], #try).
import { getJson, hasToken, setToken, tokenIsKept } from './api.js';
import { loadRules } from './completion.js';
import { $, notify, reportError } from './dom.js';
import { fillRunModels, hideEvaluation, initEvaluation, showEvaluation } from './evaluation.js';
import { fillModelSuggestions, hideTraining, initTraining, showTraining } from './training.js';
import { fillModels, initTry } from './try.js';

const VIEWS = ['training', 'evaluation', 'try'];

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, '').split('/');
  const view = VIEWS.includes(name) ? name : 'evaluation';
  const id = rest.length ? decodeURIComponent(rest.join('/')) : null;
  for (const v of VIEWS) {
    $(`#view-${v}`).hidden = v !== view;
    $(`nav a[data-view="${v}"]`).classList.toggle('active', v === view);
  }
  document.body.dataset.view = view;
  if (view !== 'training') hideTraining();
  if (view !== 'evaluation') hideEvaluation();
  const shown = view === 'training' ? showTraining(id) : view === 'evaluation' ? showEvaluation(id) : Promise.resolve();
  shown.catch(reportError);
}

function showTokenState() {
  const state = $('#token-state');
  state.textContent = hasToken() ? (tokenIsKept() ? 'admin token set (kept for this tab)' : 'admin token set (this page only)') : 'no admin token';
  state.dataset.set = String(hasToken());
  $('#forget-token').hidden = !hasToken();
}

function initToken() {
  $('#remember-token').checked = tokenIsKept();
  $('#token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#admin-token');
    setToken(input.value, $('#remember-token').checked);
    input.value = '';
    showTokenState();
    if (!hasToken()) return;
    try {
      await getJson('/admin/train', { admin: true });
      notify('admin token accepted');
    } catch (error) {
      reportError(error);
    }
  });
  $('#forget-token').addEventListener('click', () => {
    setToken('', false);
    showTokenState();
    notify('admin token forgotten');
  });
  showTokenState();
}

async function main() {
  initToken();
  initTraining();
  initEvaluation();
  initTry();
  await loadRules().catch(reportError);
  getJson('/v1/models')
    .then((models) => {
      fillModels(models.data);
      fillRunModels(models.data);
      fillModelSuggestions(models.data);
    })
    .catch(reportError);
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = 'true';
}

main().catch(reportError);
