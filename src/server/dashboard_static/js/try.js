// Try it: an image and a question sent to POST /generate with stream=true; the server-sent
// events are read with fetch as they arrive, and the think and answer are shown while they grow.
import { call, serverEvents } from './api.js';
import { renderCompletion, splitCompletion } from './completion.js';
import { $, clear, el, notify, reportError } from './dom.js';

let running = null;
let preview = null;

export function initTry() {
  $('#try-image').addEventListener('change', (event) => {
    if (preview) URL.revokeObjectURL(preview);
    const file = event.target.files?.[0];
    preview = file ? URL.createObjectURL(file) : null;
    const box = clear($('#try-preview'));
    if (preview) box.append(el('img', { src: preview, alt: 'the uploaded image' }));
  });
  $('#try-form').addEventListener('submit', (event) => {
    event.preventDefault();
    generate(event.target).catch(reportError);
  });
  $('#try-stop').addEventListener('click', () => running?.abort());
}

export function fillModels(models) {
  const select = clear($('#try-model'));
  select.append(el('option', { value: '' }, 'default model'));
  for (const model of models) select.append(el('option', { value: model.id }, model.id));
}

function show(text, opensThink, final) {
  const output = clear($('#try-output'));
  output.append(renderCompletion(text, { opensThink }));
  const parts = final ?? splitCompletion(text, { opensThink });
  $('#try-think').textContent = parts.think ?? '';
  $('#try-answer').textContent = parts.answer ?? '';
}

async function generate(form) {
  running?.abort();
  const controller = new AbortController();
  running = controller;
  const data = new FormData();
  const file = $('#try-image').files?.[0];
  if (file) data.append('image', file);
  const fields = new FormData(form);
  data.append('question', String(fields.get('question') ?? ''));
  data.append('template', String(fields.get('template') || 'r1'));
  for (const key of ['model', 'max_new_tokens', 'temperature', 'seed']) {
    const value = String(fields.get(key) ?? '').trim();
    if (value) data.append(key, value);
  }
  data.append('stream', 'true');
  const opensThink = (fields.get('template') || 'r1') === 'r1';
  const status = $('#try-status');
  status.dataset.state = 'streaming';
  status.textContent = 'generating…';
  $('#try-submit').disabled = true;
  $('#try-stop').disabled = false;
  $('#try-result').hidden = false;
  let text = '';
  let deltas = 0;
  show(text, opensThink);
  try {
    const res = await call('/generate', { method: 'POST', body: data, signal: controller.signal, accept: 'text/event-stream' });
    for await (const message of serverEvents(res)) {
      if (message.event === 'delta') {
        text += message.data.text;
        deltas += 1;
        show(text, opensThink);
        status.textContent = `generating… ${deltas} chunks`;
      } else if (message.event === 'done') {
        const result = message.data;
        show(result.text, opensThink, { think: result.think, answer: result.answer });
        status.dataset.state = 'done';
        status.textContent = `done: ${result.finish_reason}, ${result.usage.completion_tokens} tokens in ${result.timings.total_ms} ms, format ${result.format_ok ? 'ok' : 'not ok'} (${result.model}, ${result.template})`;
      } else if (message.event === 'error') {
        status.dataset.state = 'error';
        status.textContent = `error: ${message.data.error?.message ?? 'generation failed'}`;
      }
    }
  } catch (error) {
    status.dataset.state = controller.signal.aborted ? 'stopped' : 'error';
    status.textContent = controller.signal.aborted ? 'stopped' : `error: ${error.message}`;
    if (!controller.signal.aborted) notify(error.message, 'error');
  } finally {
    if (running === controller) running = null;
    $('#try-submit').disabled = false;
    $('#try-stop').disabled = true;
  }
}
