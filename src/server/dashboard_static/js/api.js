// The service's HTTP API as the dashboard uses it: JSON calls with the documented error envelope,
// JSON-lines bodies, and server-sent events read with fetch (EventSource cannot send the admin
// token). The admin token lives in this module's memory, and in sessionStorage only when the user
// asks for it to be kept for the tab; it is never written into the page.

const TOKEN_KEY = 'visualthinker.admin-token';
let adminToken = '';
try {
  adminToken = sessionStorage.getItem(TOKEN_KEY) ?? '';
} catch {
  adminToken = '';
}
const tokenListeners = new Set();

export function hasToken() {
  return adminToken !== '';
}

export function tokenIsKept() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) !== null;
  } catch {
    return false;
  }
}

/** Use `token` for admin calls; keep it in sessionStorage (this tab only) when `keep`. */
export function setToken(token, keep) {
  adminToken = token.trim();
  try {
    if (keep && adminToken) sessionStorage.setItem(TOKEN_KEY, adminToken);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: memory only
  }
  for (const listener of tokenListeners) listener(hasToken());
}

export function onTokenChange(listener) {
  tokenListeners.add(listener);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(res) {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch {
    // not the JSON envelope
  }
  if (res.status === 401) message = `admin token refused: ${message}`;
  return new ApiError(res.status, code, message);
}

function headers(admin, extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  if (admin) {
    if (!adminToken) throw new ApiError(401, 'no_token', 'enter the admin token first');
    h.Authorization = `Bearer ${adminToken}`;
  }
  return h;
}

/** fetch() that turns non-2xx answers into ApiError. */
export async function call(path, { method = 'GET', body, admin = false, signal, accept } = {}) {
  const extra = {};
  if (body !== undefined && !(body instanceof FormData)) extra['Content-Type'] = 'application/json';
  if (accept) extra.Accept = accept;
  const res = await fetch(path, {
    method,
    headers: headers(admin, extra),
    body: body === undefined || body instanceof FormData ? body : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
  return res;
}

export async function getJson(path, options = {}) {
  return (await call(path, options)).json();
}

export async function sendJson(path, body, options = {}) {
  return (await call(path, { method: 'POST', body, ...options })).json();
}

/** POST a text body of the given type (JSON lines of predictions); the answer's JSON. */
export async function sendText(path, text, type) {
  const res = await fetch(path, { method: 'POST', headers: headers(false, { 'Content-Type': type }), body: text, cache: 'no-store' });
  if (!res.ok) throw await failure(res);
  return res.json();
}

/** The text of a streamed body, chunk by chunk. */
async function* chunks(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** JSON lines of a body (application/x-ndjson). */
export async function* jsonLines(res) {
  let buffer = '';
  for await (const chunk of chunks(res)) {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

/** Server-sent events of a body: { event, data } with `data` parsed as JSON when it is. */
export async function* serverEvents(res) {
  let buffer = '';
  const parse = (block) => {
    let event = 'message';
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length) return null;
    const text = data.join('\n');
    try {
      return { event, data: JSON.parse(text) };
    } catch {
      return { event, data: text };
    }
  };
  for await (const chunk of chunks(res)) {
    buffer += chunk;
    let match;
    while ((match = /\r?\n\r?\n/.exec(buffer))) {
      const message = parse(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
      if (message) yield message;
    }
  }
  const last = parse(buffer);
  if (last) yield last;
}
