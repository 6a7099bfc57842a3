// REMOTE_MODELS (docs/configuration.md, docs/remote-models.md): models served elsewhere by an
// OpenAI-compatible endpoint. Comma-separated `name=URL` entries; `name=URL1|URL2` for replicas of
// the same model; `URL#remote-id` when the remote knows the model by another id. The URLs are the
// only addresses remote traffic ever goes to: nothing in a request can add or change one.

export interface RemoteReplicaSpec {
  /** The endpoint's base, without a trailing slash (`http://host:8000/v1`). */
  url: string;
  /** The model id sent to the remote. */
  remoteId: string;
}

export interface RemoteModelSpec {
  name: string;
  replicas: RemoteReplicaSpec[];
}

const NAME = /^[\w.:/-]{1,200}$/;

function invalid(message: string): Error {
  return new Error(`invalid configuration: REMOTE_MODELS: ${message}`);
}

function parseReplica(name: string, text: string): RemoteReplicaSpec {
  const hash = text.indexOf('#');
  const address = (hash < 0 ? text : text.slice(0, hash)).trim();
  const remoteId = hash < 0 ? name : text.slice(hash + 1).trim();
  if (!remoteId) throw invalid(`model "${name}": an empty remote id after "#" in "${text}"`);
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw invalid(`model "${name}": "${address}" is not a URL; give the endpoint's base, e.g. http://host:8000/v1`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`model "${name}": "${address}" is not an http or https URL`);
  if (url.username || url.password) throw invalid(`model "${name}": "${address}" holds credentials; remote URLs may not carry them`);
  if (url.search) throw invalid(`model "${name}": "${address}" has a query string; give the endpoint's base, e.g. http://host:8000/v1`);
  return { url: `${url.origin}${url.pathname}`.replace(/\/+$/, ''), remoteId };
}

/** The remote models named by REMOTE_MODELS ("" gives none); throws a message naming the bad entry. */
export function parseRemoteModels(value: string): RemoteModelSpec[] {
  const models: RemoteModelSpec[] = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf('=');
    if (eq < 0) throw invalid(`"${entry}" is not name=URL`);
    const name = entry.slice(0, eq).trim();
    if (!NAME.test(name)) throw invalid(`"${name}" is not a model name (letters, digits, _ . : / -, at most 200)`);
    if (models.some((m) => m.name === name)) throw invalid(`model "${name}" is named twice; give its replicas as name=URL1|URL2`);
    const replicas = entry
      .slice(eq + 1)
      .split('|')
      .map((r) => r.trim());
    if (replicas.some((r) => !r)) throw invalid(`model "${name}": an empty URL in "${entry}"`);
    models.push({ name, replicas: replicas.map((r) => parseReplica(name, r)) });
  }
  return models;
}
