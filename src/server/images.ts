// Turning the image references of a request into bytes: base64 strings, data: URLs, and remote
// URLs when (and only when) their host is on the configured allow-list. The engine checks the
// bytes themselves (real format, pixel limits) when it decodes them.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { HttpError } from './errors';

const DATA_URL = /^data:([^;,]*)((?:;[^;,]*)*?),(.*)$/s;
const ACCEPTED_TYPES = new Set(['image/png', 'image/jpeg', 'image/jpg', 'image/webp']);
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Bytes of a base64 string or a base64 `data:` URL. */
export function decodeInlineImage(value: string, maxBytes: number, field: string): Buffer {
  let payload = value.trim();
  const match = DATA_URL.exec(payload);
  if (match) {
    const [, type, params, data] = match;
    if (type && !ACCEPTED_TYPES.has(type.toLowerCase())) {
      throw new HttpError(415, 'unsupported_image_type', `${field}: data URL type "${type}" is not accepted; send PNG, JPEG or WebP`);
    }
    if (!params.split(';').includes('base64')) throw new HttpError(400, 'invalid_image_encoding', `${field}: data URLs must be base64-encoded`);
    payload = data;
  }
  payload = payload.replace(/\s+/g, '');
  if (!payload.length) throw new HttpError(422, 'empty_image', `${field}: the image is empty`);
  // Checked before decoding so an oversized string is refused without allocating its bytes.
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 3) {
    throw new HttpError(413, 'image_too_large', `${field}: the image is larger than the configured limit of ${maxBytes} bytes`);
  }
  if (!BASE64.test(payload)) throw new HttpError(400, 'invalid_image_encoding', `${field}: the image is neither base64 nor a base64 data: URL`);
  const bytes = Buffer.from(payload, 'base64');
  if (!bytes.length) throw new HttpError(422, 'empty_image', `${field}: the image is empty`);
  if (bytes.length > maxBytes) throw new HttpError(413, 'image_too_large', `${field}: the image is larger than the configured limit of ${maxBytes} bytes`);
  return bytes;
}

function isPrivateAddress(address: string): boolean {
  if (isIP(address) === 4) {
    const [a, b] = address.split('.').map(Number);
    return a === 10 || a === 127 || a === 0 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || a >= 224;
  }
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:')) return isPrivateAddress(lower.slice(7));
  return lower === '::1' || lower === '::' || lower.startsWith('fc') || lower.startsWith('fd') || lower.startsWith('fe80') || lower.startsWith('ff');
}

export interface RemoteImagePolicy {
  allowedHosts: string[];
  maxBytes: number;
  timeoutMs?: number;
}

/** Fetch an http(s) image from an allow-listed public host; everything else is refused. */
export async function fetchRemoteImage(url: string, policy: RemoteImagePolicy, field: string): Promise<Buffer> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HttpError(400, 'invalid_image_url', `${field}: not a valid URL or data: URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new HttpError(400, 'invalid_image_url', `${field}: only data:, http: and https: image URLs are understood`);
  }
  const host = parsed.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (!policy.allowedHosts.includes(host)) {
    throw new HttpError(400, 'remote_image_not_allowed', `${field}: fetching images from ${host} is not allowed; send the image inline as a base64 data: URL (operators can allow hosts with ALLOWED_IMAGE_HOSTS)`);
  }
  const addresses = isIP(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  if (!addresses.length) throw new HttpError(422, 'image_host_unresolved', `${field}: cannot resolve ${host}`);
  if (addresses.some(isPrivateAddress)) {
    throw new HttpError(400, 'remote_image_not_allowed', `${field}: ${host} resolves to a private or loopback address`);
  }
  let response: Response;
  try {
    response = await fetch(parsed, { redirect: 'error', signal: AbortSignal.timeout(policy.timeoutMs ?? 10_000) });
  } catch (error) {
    throw new HttpError(422, 'image_fetch_failed', `${field}: fetching the image failed (${(error as Error).message})`);
  }
  if (!response.ok || !response.body) throw new HttpError(422, 'image_fetch_failed', `${field}: the image URL answered ${response.status}`);
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > policy.maxBytes) throw new HttpError(413, 'image_too_large', `${field}: the image is larger than ${policy.maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > policy.maxBytes) throw new HttpError(413, 'image_too_large', `${field}: the image is larger than ${policy.maxBytes} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
