// Small DOM helpers. Text always goes in as text nodes (never as HTML): completions, questions
// and error messages cannot inject markup.

/** el('div', { class: 'x', dataset: { id: 1 }, onclick }, child, 'text', ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, ...children);
  return node;
}

export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function percent(value, digits = 1) {
  return typeof value === 'number' && Number.isFinite(value) ? `${(value * 100).toFixed(digits)}%` : '–';
}

export function number(value, digits = 3) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '–';
  if (value !== 0 && Math.abs(value) < 10 ** -digits) return value.toExponential(2);
  return Number(value.toFixed(digits)).toString();
}

export function shortId(id) {
  const at = id.indexOf('_');
  return at >= 0 ? `${id.slice(0, at + 1)}${id.slice(at + 1, at + 9)}` : id.slice(0, 12);
}

export function when(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function badge(text, kind = text) {
  return el('span', { class: `badge badge-${kind}` }, text);
}

/** The status line at the bottom of the page. */
export function notify(message, kind = 'info') {
  const bar = document.getElementById('status-line');
  if (!bar) return;
  bar.textContent = message;
  bar.dataset.kind = kind;
}

export function reportError(error) {
  notify(error instanceof Error ? error.message : String(error), 'error');
}
