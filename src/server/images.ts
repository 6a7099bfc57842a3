// Turning the image references of a request into bytes: base64 strings, data: URLs, and remote
// URLs when (and only when) their host is on the configured allow-list. The engine checks the
// bytes themselves (real format, pixel limits) when it decodes them.
import { lookup as dnsLookup, LookupAddress } from 'node:dns';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { BlockList, isIP, LookupFunction } from 'node:net';
import { ServiceError } from '../errors';

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
      throw new ServiceError(415, 'unsupported_image_type', `${field}: data URL type "${type}" is not accepted; send PNG, JPEG or WebP`);
    }
    if (!params.split(';').includes('base64')) throw new ServiceError(400, 'invalid_image_encoding', `${field}: data URLs must be base64-encoded`);
    payload = data;
  }
  payload = payload.replace(/\s+/g, '');
  if (!payload.length) throw new ServiceError(422, 'empty_image', `${field}: the image is empty`);
  // Checked before decoding so an oversized string is refused without allocating its bytes.
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 3) {
    throw new ServiceError(413, 'image_too_large', `${field}: the image is larger than the configured limit of ${maxBytes} bytes`);
  }
  if (!BASE64.test(payload)) throw new ServiceError(400, 'invalid_image_encoding', `${field}: the image is neither base64 nor a base64 data: URL`);
  const bytes = Buffer.from(payload, 'base64');
  if (!bytes.length) throw new ServiceError(422, 'empty_image', `${field}: the image is empty`);
  if (bytes.length > maxBytes) throw new ServiceError(413, 'image_too_large', `${field}: the image is larger than the configured limit of ${maxBytes} bytes`);
  return bytes;
}

// Addresses a fetch must never reach: loopback, private, link-local, shared (CGNAT), special and
// multicast ranges. A BlockList also matches IPv4 rules against IPv4-mapped IPv6 addresses
// (::ffff:127.0.0.1 and ::ffff:7f00:1 alike).
const BLOCKED = new BlockList();
for (const [net, prefix] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3]] as const) {
  BLOCKED.addSubnet(net, prefix, 'ipv4');
}
// ::/96 holds ::, ::1 and the deprecated IPv4-compatible addresses (::127.0.0.1).
for (const [net, prefix] of [['::', 96], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) BLOCKED.addSubnet(net, prefix, 'ipv6');

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  return family === 0 || BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export interface RemoteImagePolicy {
  allowedHosts: string[];
  maxBytes: number;
  timeoutMs?: number;
}

class PrivateAddressError extends Error {}

/**
 * dns.lookup for the connection itself: every address it resolves is checked before any is
 * connected to, so no second resolution (DNS rebinding) can slip a private address in between.
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error: NodeJS.ErrnoException | null, list: LookupAddress[]) => {
    if (error) return callback(error, '');
    const blocked = list.find((a) => isPrivateAddress(a.address));
    if (blocked || !list.length) return callback(new PrivateAddressError(blocked?.address ?? 'no address'), '');
    if (options.all) callback(null, list);
    else callback(null, list[0].address, list[0].family);
  });
};

/** Fetch an http(s) image from an allow-listed public host; everything else is refused. */
export async function fetchRemoteImage(url: string, policy: RemoteImagePolicy, field: string): Promise<Buffer> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ServiceError(400, 'invalid_image_url', `${field}: not a valid URL or data: URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new ServiceError(400, 'invalid_image_url', `${field}: only data:, http: and https: image URLs are understood`);
  }
  const host = parsed.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (!policy.allowedHosts.includes(host)) {
    throw new ServiceError(400, 'remote_image_not_allowed', `${field}: fetching images from ${host} is not allowed; send the image inline as a base64 data: URL (operators can allow hosts with ALLOWED_IMAGE_HOSTS)`);
  }
  const privateHost = () => new ServiceError(400, 'remote_image_not_allowed', `${field}: ${host} resolves to a private or loopback address`);
  // IP literals are connected to without a lookup: checked here.
  if (isIP(host) && isPrivateAddress(host)) throw privateHost();
  const tooLarge = () => new ServiceError(413, 'image_too_large', `${field}: the image is larger than ${policy.maxBytes} bytes`);
  const failed = (why: string) => new ServiceError(422, 'image_fetch_failed', `${field}: fetching the image failed (${why})`);
  const get = parsed.protocol === 'https:' ? httpsGet : httpGet;
  return new Promise<Buffer>((resolve, reject) => {
    // Redirects are not followed (a 3xx is a failure): each hop would need the same checks.
    const req = get(parsed, { lookup: publicOnlyLookup, headers: { accept: 'image/*' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        reject(new ServiceError(422, 'image_fetch_failed', `${field}: the image URL answered ${status}`));
        return;
      }
      // Settling first, then dropping the connection: the promise keeps the first outcome.
      const refuse = (error: ServiceError) => {
        reject(error);
        req.destroy();
      };
      if (Number(res.headers['content-length'] ?? 0) > policy.maxBytes) return refuse(tooLarge());
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxBytes) refuse(tooLarge());
        else chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('close', () => {
        if (!res.complete) refuse(failed('the connection closed before the whole image arrived'));
      });
    });
    const timer = setTimeout(() => {
      reject(failed('no complete answer in time'));
      req.destroy();
    }, policy.timeoutMs ?? 10_000);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (error: Error & { code?: string }) => {
      if (error instanceof PrivateAddressError) reject(privateHost());
      else if (error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') reject(new ServiceError(422, 'image_host_unresolved', `${field}: cannot resolve ${host}`));
      else reject(failed(error.message));
    });
  });
}
