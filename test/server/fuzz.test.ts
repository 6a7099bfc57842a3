// Property-based fuzzing of the HTTP contract (docs/api.md) against the real app: the tiny model, real
// evaluation runs and training jobs (the fake trainer). Whatever arrives — any JSON, any bytes
// under any content type, mutated or random images — the answer is a documented status, never a
// 5xx, errors are always the envelope with a bounded message, and the process keeps serving.
//
// Runs are deterministic by default (a fixed seed per property) so that CI is reproducible;
// FUZZ_SEED=<n> or FUZZ_SEED=random explores other inputs, FUZZ_RUNS=<factor> scales the counts.
import { Server } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import request from 'supertest';
import { EvalRuns } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { BENCHMARKS } from '../../src/benchmarks/types';
import { JobManager } from '../../src/training/manager';
import { capturingLogger, startTestService, TestService } from '../helpers/app';
import { noiseImage } from '../helpers/service';
import { MODELS_ROOT, TrainingFixture } from '../helpers/training';

const TOKEN = 'fuzz-admin-token-3e9a71c2';
const auth = { Authorization: `Bearer ${TOKEN}` };

/** Statuses docs/api.md documents for requests that are not bugs. */
const DOCUMENTED = new Set([200, 201, 202, 400, 404, 409, 413, 415, 422, 429, 503]);
/** What an image can get: accepted, or refused as bad, too large, unsupported or unusable. */
const IMAGE_STATUSES = new Set([200, 400, 413, 415, 422]);
/** Error messages are meant for people: capped (errors.ts clips at 500 characters). */
const MAX_MESSAGE_CHARS = 1024;

const RUN_FACTOR = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => Math.max(1, Math.round(n * RUN_FACTOR));
function seedFor(property: number): number | undefined {
  const given = process.env.FUZZ_SEED;
  if (given === 'random') return undefined;
  return (given ? Number(given) : 0x5eed) + property;
}

// ---------------------------------------------------------------------------------------------
// JSON with control over the text: raw number tokens (1e400, -0, 30 digits), duplicate keys and
// keys such as __proto__ that a plain object cannot carry through JSON.stringify.

class Raw {
  constructor(readonly text: string) {}
}
class Obj {
  constructor(readonly entries: [string, Json][]) {}
}
type Json = null | boolean | number | string | Raw | Obj | Json[] | { [key: string]: Json };

function toJson(value: Json): string {
  if (value instanceof Raw) return value.text;
  if (value instanceof Obj) return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object') return toJson(new Obj(Object.entries(value)));
  // NaN and the infinities become null, as JSON.stringify writes them.
  return JSON.stringify(value) ?? 'null';
}

const clipText = (text: string, n = 600) => (text.length > n ? `${text.slice(0, n)}... (${text.length} chars)` : text);

const junkKey = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', '', ' ', 'Question', 'QUESTION', 'question ', 'image[]', 'messages[0]', '$where', '\u0000', 'stream_options.include_usage'),
);

const rawNumber = fc
  .constantFrom('1e400', '-1e400', '1e-400', '-0', '-0.0', '123456789012345678901234567890', '0.1e1', '1E+2', '9007199254740993', '4.9e-324')
  .map((t) => new Raw(t));

const nastyNumber: fc.Arbitrary<Json> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 0.5, 1, 2, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON),
  rawNumber,
);

const nastyString: fc.Arbitrary<Json> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom(
    'NaN', 'Infinity', '-Infinity', '1e400', '0x1A', ' 3 ', 'true', 'false', 'null', '', ' ', '\u0000', '\u202e', '\ud800', '\r\n',
    '../../../etc/passwd', '..', '/etc', '%2e%2e%2f', '..%2f..%2f', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
    'data:', 'data:image/png;base64,', 'data:image/png,abc', 'data:;base64,AAAA', 'http://127.0.0.1:1/x.png', 'file:///etc/passwd',
    'javascript:alert(1)', '<script>alert(1)</script>', "' OR 1=1 --", '${process.exit()}', '{{ 7*7 }}', '{% for x in y %}',
    '<|im_start|>system', '<|vision_start|><|image_pad|><|vision_end|>', '<think>', '</answer>',
  ),
  // Very long strings: beyond the question limit, and multi-byte.
  fc.integer({ min: 0, max: 25_000 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: 0, max: 3_000 }).map((n) => '\u{1F642}'.repeat(n)),
);

/** Deeply nested arrays: the JSON parser and the schemas must not recurse into trouble. */
const deepNesting = fc.integer({ min: 1, max: 20_000 }).map((n) => new Raw(`${'['.repeat(n)}${']'.repeat(n)}`));

const { nasty } = fc.letrec<{ nasty: Json }>((tie) => ({
  nasty: fc.oneof(
    { maxDepth: 3 },
    fc.constant(null),
    fc.boolean(),
    nastyNumber,
    nastyString,
    fc.array(tie('nasty'), { maxLength: 4 }),
    fc.array(fc.tuple(junkKey, tie('nasty')), { maxLength: 4 }).map((entries) => new Obj(entries)),
    deepNesting,
  ),
}));

/** Whole bodies that are not an object of fields: other JSON values and broken JSON text. */
const nonObjectBody: fc.Arbitrary<Json> = fc.oneof(
  nasty,
  fc
    .constantFrom('', '{', '{"question":', 'null', '"just a string"', '[]', '1e400', '{"a":1}garbage', '\ufeff{}', '{"question": "q",}', "{'question': 'q'}", '{"a":1}{"b":2}', '\u0000')
    .map((t) => new Raw(t)),
);

/** One field of an endpoint: values it accepts, and values just outside (0 steps, an unknown enum). */
interface Field {
  valid: fc.Arbitrary<Json>;
  edge?: fc.Arbitrary<Json>;
}

/**
 * An object body drawn from an endpoint's real fields: each present or not, mostly with a valid
 * value, sometimes an edge value or any value at all; now and then junk keys, duplicates and
 * __proto__. About half the bodies are valid, so the inputs reach the engine, the runs and the
 * job manager as well as the validation.
 */
function bodyArb(fields: Record<string, Field>, required: string[]): fc.Arbitrary<Json> {
  const entries = Object.fromEntries(
    Object.entries(fields).map(([key, { valid, edge }]) => {
      const value = fc.oneof(
        { weight: 17, arbitrary: valid },
        { weight: edge ? 2 : 0, arbitrary: edge ?? valid },
        { weight: 1, arbitrary: nasty },
      );
      const present = required.includes(key) ? 19 : 7;
      return [key, fc.oneof({ weight: 20 - present, arbitrary: fc.constant(undefined) }, { weight: present, arbitrary: value })];
    }),
  );
  const junk = fc.oneof(
    { weight: 10, arbitrary: fc.constant([] as [string, Json][]) },
    { weight: 1, arbitrary: fc.array(fc.tuple(fc.oneof(junkKey, fc.constantFrom(...Object.keys(fields))), nasty), { minLength: 1, maxLength: 3 }) },
  );
  const object = fc.tuple(fc.record(entries), junk).map(([record, extra]) => {
    const present = Object.entries(record).filter((e): e is [string, Json] => e[1] !== undefined);
    return new Obj([...present, ...extra]);
  });
  return fc.oneof({ weight: 20, arbitrary: object }, { weight: 1, arbitrary: nonObjectBody });
}

// ---------------------------------------------------------------------------------------------
// The contract of one response

interface Envelope {
  error: { code: string; message: string };
}

function envelopeProblem(body: unknown): string | null {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return 'the body is not an object';
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'error') return `top-level keys ${JSON.stringify(keys)}`;
  const error = (body as Envelope).error;
  if (!error || typeof error !== 'object') return 'error is not an object';
  if (Object.keys(error).sort().join(',') !== 'code,message') return `error keys ${JSON.stringify(Object.keys(error))}`;
  if (typeof error.code !== 'string' || !/^[a-z][a-z0-9_]*$/.test(error.code)) return `code ${JSON.stringify(error.code)} is not snake_case`;
  if (typeof error.message !== 'string' || !error.message) return 'empty message';
  if (error.message.length > MAX_MESSAGE_CHARS) return `a message of ${error.message.length} characters`;
  return null;
}

/** Problems of a server-sent event stream: an error event with a 5xx, or no end at all. */
function streamProblem(text: string): string | null {
  let ended = false;
  for (const block of text.split('\n\n')) {
    const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (data === undefined) continue;
    if (data === '[DONE]' || event === 'done') {
      ended = true;
      continue;
    }
    const parsed = JSON.parse(data) as { status?: number; error?: unknown };
    if (event === 'error' || parsed.error !== undefined) {
      const { status, ...rest } = parsed;
      if (typeof status === 'number' && status >= 500) return `an error event with status ${status}: ${data}`;
      const problem = envelopeProblem(rest);
      if (problem) return `an error event that is not the envelope (${problem}): ${data}`;
      if ((rest as Envelope).error.code === 'internal_error') return `an internal error event: ${data}`;
      ended = true;
    }
  }
  return ended ? null : 'the stream ended without a final event';
}

function contractProblem(res: request.Response, allowed: Set<number>): string | null {
  if (!allowed.has(res.status)) return `status ${res.status} is not one of ${[...allowed].join(', ')}`;
  if (res.status >= 400) {
    const problem = envelopeProblem(res.body);
    if (problem) return `${problem}: ${clipText(res.text ?? '')}`;
    if ((res.status === 429 || res.status === 503) && !res.headers['retry-after']) return `${res.status} without Retry-After`;
    return null;
  }
  if (/^text\/event-stream/.test(res.headers['content-type'] ?? '')) return streamProblem(res.text);
  if (!res.body || typeof res.body !== 'object') return `a ${res.status} without a JSON object body`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Images and their mutations

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'splice'; at: number; bytes: Uint8Array }
  | { kind: 'dims'; width: number; height: number; fixCrc: boolean };

const dimension = fc.oneof(fc.constantFrom(0, 1, 2, 28, 16383, 65535, 100_000, 0x7fffffff, 0xffffffff), fc.nat());
const position = fc.oneof(fc.nat(64), fc.nat());
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.constantFrom(0x00, 0xff, 0x7f, 0x80) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 512 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('dims' as const), width: dimension, height: dimension, fixCrc: fc.boolean() }),
);

/** Writes a width and height into the header fields of a PNG, JPEG or lossy/extended WebP. */
function editDimensions(bytes: Buffer, width: number, height: number, fixCrc: boolean): void {
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE) && bytes.length >= 33) {
    bytes.writeUInt32BE(width >>> 0, 16);
    bytes.writeUInt32BE(height >>> 0, 20);
    if (fixCrc) bytes.writeUInt32BE(crc32(bytes.subarray(12, 29)), 29);
    return;
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    // The first SOFn segment: FF Cn, length, precision, height, width.
    for (let i = 2; i + 9 < bytes.length; i++) {
      if (bytes[i] === 0xff && bytes[i + 1] >= 0xc0 && bytes[i + 1] <= 0xc3) {
        bytes.writeUInt16BE(height & 0xffff, i + 5);
        bytes.writeUInt16BE(width & 0xffff, i + 7);
        return;
      }
    }
    return;
  }
  if (bytes.toString('latin1', 12, 16) === 'VP8X' && bytes.length >= 30) {
    bytes.writeUIntLE((width - 1) & 0xffffff, 24, 3);
    bytes.writeUIntLE((height - 1) & 0xffffff, 27, 3);
    return;
  }
  const start = bytes.indexOf(Buffer.from([0x9d, 0x01, 0x2a]));
  if (start >= 0 && start + 7 <= bytes.length) {
    bytes.writeUInt16LE(width & 0x3fff, start + 3);
    bytes.writeUInt16LE(height & 0x3fff, start + 5);
  }
}

function mutate(base: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(base);
  for (const m of mutations) {
    if (!bytes.length) break;
    switch (m.kind) {
      case 'flip':
        bytes[m.at % bytes.length] ^= 1 << m.bit;
        break;
      case 'set':
        bytes[m.at % bytes.length] = m.value;
        break;
      case 'truncate':
        bytes = bytes.subarray(0, m.at % bytes.length);
        break;
      case 'append':
        bytes = Buffer.concat([bytes, m.bytes]);
        break;
      case 'splice': {
        const at = m.at % bytes.length;
        bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
        break;
      }
      case 'dims':
        editDimensions(bytes, m.width, m.height, m.fixCrc);
        break;
    }
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Multipart bodies, well-formed or not

interface Part {
  name: string | null;
  filename: string | null;
  type: string | null;
  data: Uint8Array | string;
}

interface MultipartSpec {
  declared: string;
  used: string;
  parts: Part[];
  newline: '\r\n' | '\n';
  preamble: string;
  closing: boolean;
  cut: number | null;
}

function buildMultipart(spec: MultipartSpec): Buffer {
  const nl = spec.newline;
  const chunks: Buffer[] = [Buffer.from(spec.preamble)];
  for (const part of spec.parts) {
    let head = `--${spec.used}${nl}`;
    if (part.name !== null || part.filename !== null) {
      head += 'Content-Disposition: form-data';
      if (part.name !== null) head += `; name="${part.name}"`;
      if (part.filename !== null) head += `; filename="${part.filename}"`;
      head += nl;
    }
    if (part.type !== null) head += `Content-Type: ${part.type}${nl}`;
    chunks.push(Buffer.from(`${head}${nl}`), Buffer.from(part.data), Buffer.from(nl));
  }
  if (spec.closing) chunks.push(Buffer.from(`--${spec.used}--${nl}`));
  const body = Buffer.concat(chunks);
  return spec.cut === null ? body : body.subarray(0, spec.cut % (body.length + 1));
}

// ---------------------------------------------------------------------------------------------

describe('fuzzing the HTTP contract', () => {
  let service: TestService;
  let fx: TrainingFixture;
  let evalRuns: EvalRuns;
  let jobs: JobManager;
  let server: Server;
  /** Whether evaluation runs are cut to two items (fuzzing), or load their real split. */
  const smallSplits = true;
  const errorLogs: string[] = [];
  let tried = 0;
  /** Statuses seen per property: the report of what the inputs reached. */
  const seen: Record<string, Record<number, number>> = {};
  let property = '';
  const images: Record<'png' | 'jpeg' | 'webp' | 'pngAlpha', Buffer> = {} as never;

  beforeAll(async () => {
    // Errors only: a 5xx's stack is what a failing property needs to show.
    const logger = capturingLogger('error', errorLogs, 50);
    service = await startTestService({
      adminToken: TOKEN,
      env: {
        MAX_NEW_TOKENS: '8',
        DEFAULT_MAX_NEW_TOKENS: '2',
        MAX_IMAGE_BYTES: String(256 * 1024),
        MAX_QUESTION_CHARS: '2000',
        MAX_QUEUE: '32',
        REQUEST_TIMEOUT_MS: '30000',
      },
      logger,
      runs: {
        concurrency: 2,
        loader: ({ config }) => {
          const real = splitLoader(config.dataDir);
          // The real loader (validation, missing data, splits) on a short prefix: fuzzed runs stay cheap.
          return async (params) => {
            if (!smallSplits) return real(params);
            const split = await real({ ...params, limit: Math.min(params.limit ?? 2, 2) });
            return { ...split, items: split.items.slice(0, 2) };
          };
        },
      },
      jobs: ({ config, engine }) => ({ fake: { FAKE_STEP_MS: '5' }, modelRoots: config.modelRoots, listModels: () => engine.listModels(), maxConcurrent: 1 }),
      recover: true,
      warmup: true,
      listen: true,
    });
    ({ fx, runs: evalRuns, jobs } = service);
    server = service.server!;
    images.png = await noiseImage(32, 32, 1, 'png');
    images.jpeg = await noiseImage(32, 32, 2, 'jpeg');
    images.webp = await noiseImage(32, 32, 3, 'webp');
    const rgba = Buffer.alloc(20 * 30 * 4, 0x80);
    images.pngAlpha = await (await import('sharp')).default(rgba, { raw: { width: 20, height: 30, channels: 4 } }).png().toBuffer();
  });

  afterAll(async () => {
    console.log(`fuzz: ${tried} inputs tried; statuses per property: ${JSON.stringify(seen)}`);
    await service.dispose();
  });

  beforeEach(() => {
    property = expect.getState().currentTestName ?? '';
  });

  async function check(send: () => request.Test, allowed: Set<number>, describeInput: () => string): Promise<request.Response> {
    tried++;
    const logsBefore = errorLogs.length;
    const res = await send().timeout(30_000);
    const counts = (seen[property] ??= {});
    counts[res.status] = (counts[res.status] ?? 0) + 1;
    const problem = contractProblem(res, allowed);
    if (problem) {
      const logs = errorLogs.slice(logsBefore).join('').slice(0, 3000);
      throw new Error(`${problem}\ninput: ${clipText(describeInput(), 1500)}\nserver errors: ${logs || '(none)'}`);
    }
    return res;
  }

  function postJson(path: string, body: Json, headers: Record<string, string> = {}) {
    const text = toJson(body);
    return check(() => request(server).post(path).set(headers).set('Content-Type', 'application/json').send(text), DOCUMENTED, () => `POST ${path} ${text}`);
  }

  const b64 = (name: keyof typeof images) => images[name].toString('base64');
  const dataUrls = () => [
    `data:image/png;base64,${b64('png')}`,
    `data:image/jpeg;base64,${b64('jpeg')}`,
    `data:image/webp;base64,${b64('webp')}`,
    `data:image/png;base64,${b64('pngAlpha')}`,
    `data:image/jpeg;base64,${b64('png')}`, // a type that lies
    `data:image/png;charset=utf-8;base64,${b64('png')}`,
    `data:;base64,${b64('png')}`,
    'data:image/gif;base64,R0lGODlhAQABAAAAACw=',
    'data:image/png;base64,',
    'data:image/png,notbase64',
  ];

  const tokens: Field = { valid: fc.integer({ min: 1, max: 8 }), edge: fc.constantFrom(0, 9, 1.5, -1) };
  const sampling: Record<string, Field> = {
    temperature: { valid: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 100, noNaN: true }), fc.constantFrom(1e-300, 5e-324, 100, 0.7)), edge: fc.constantFrom(-1e-9, 100.0001) },
    top_p: { valid: fc.oneof(fc.double({ min: 5e-324, max: 1, noNaN: true }), fc.constantFrom(1e-300, 5e-324, 1)), edge: fc.constantFrom(0, 1.0000001) },
    top_k: { valid: fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.constant(1_000_000)), edge: fc.constantFrom(-1, 0.5, 1_000_001) },
    seed: { valid: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), edge: fc.constantFrom(-1, 2 ** 53, 0.5) },
    repetition_penalty: { valid: fc.oneof(fc.double({ min: 5e-324, max: 10, noNaN: true }), fc.constantFrom(5e-324, 1e-300, 10, 1.2)), edge: fc.constantFrom(0, 10.5) },
  };
  const modelName: Field = {
    valid: fc.constant('tiny-random'),
    edge: fc.constantFrom('nope', '__proto__', 'constructor', 'hasOwnProperty', '../models/tiny-random', 'tiny-random/', 'TINY-RANDOM', '.', '..', ''),
  };
  const question = fc.oneof(
    fc.constantFrom('How many objects are there?', 'Which object is closer to the camera?', 'Q'),
    fc.string({ minLength: 1, maxLength: 60 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  );

  test('POST /generate with arbitrary JSON bodies', async () => {
    const body = bodyArb(
      {
        question: { valid: question, edge: fc.constantFrom('', '   ', 'x'.repeat(2001)) },
        image: {
          valid: fc.constantFrom(b64('png'), b64('jpeg'), b64('webp'), b64('pngAlpha'), ` ${b64('png')}\n`, ...dataUrls().slice(0, 6)),
          edge: fc.oneof(fc.constantFrom(...dataUrls().slice(6)), fc.base64String({ maxLength: 48 })),
        },
        template: { valid: fc.constantFrom('r1', 'direct', 'instruct', 'raw'), edge: fc.constantFrom('chat', 'R1', '') },
        max_new_tokens: tokens,
        stream: { valid: fc.boolean(), edge: fc.constantFrom('true', 1) },
        ignore_eos: { valid: fc.boolean(), edge: fc.constantFrom('false', 0) },
        ...sampling,
        model: modelName,
      },
      ['question'],
    );
    await fc.assert(fc.asyncProperty(body, async (b) => void (await postJson('/generate', b))), { numRuns: runs(250), seed: seedFor(1) });
  }, 180_000);

  test('POST /v1/chat/completions with arbitrary JSON bodies', async () => {
    const url = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...dataUrls().slice(0, 6)) },
      { weight: 1, arbitrary: fc.constantFrom(...dataUrls().slice(6)) },
      { weight: 1, arbitrary: fc.constantFrom('http://127.0.0.1:1/x.png', 'https://example.com/x.png', 'http://[::1]/x.png', 'http://localhost/x.png', 'ftp://example.com/x.png', 'not a url', 'file:///etc/passwd', '//example.com/x.png', 'http://10.0.0.1/x.png') },
    );
    const text = fc.oneof(question, fc.string({ maxLength: 20 }));
    const textPart = fc.record({ type: fc.constant('text'), text });
    const imagePart = fc.record({
      type: fc.constant('image_url'),
      image_url: fc.oneof(url, fc.record({ url, detail: fc.constantFrom('auto', 'low', 'high') }, { requiredKeys: ['url'] })),
    });
    const part: fc.Arbitrary<Json> = fc.oneof({ weight: 12, arbitrary: textPart }, { weight: 4, arbitrary: imagePart }, { weight: 1, arbitrary: nasty });
    const role = fc.oneof({ weight: 12, arbitrary: fc.constantFrom('user', 'system', 'assistant') }, { weight: 1, arbitrary: fc.constantFrom('tool', 'developer', '', 'USER') });
    const content = fc.oneof(text, fc.array(part, { minLength: 1, maxLength: 3 }), fc.constant([] as Json[]));
    const message = fc.record({ role, content, name: fc.string({ maxLength: 10 }) }, { requiredKeys: ['role', 'content'] });
    // Mostly what clients send (an optional system turn, then a user turn with text and an image),
    // sometimes any conversation at all.
    const userTurn = fc.record({
      role: fc.constant('user'),
      content: fc.oneof(
        question,
        fc.tuple(question, url).map(([q, u]) => [{ type: 'image_url', image_url: { url: u } }, { type: 'text', text: q }] as Json),
        fc.array(part, { minLength: 1, maxLength: 3 }),
      ),
    });
    const conversation = fc.oneof(
      { weight: 4, arbitrary: fc.tuple(fc.option(fc.record({ role: fc.constant('system'), content: text }), { nil: undefined }), userTurn).map(([sys, user]) => (sys ? [sys, user] : [user]) as Json) },
      { weight: 2, arbitrary: fc.array(message, { minLength: 1, maxLength: 5 }) },
    );
    const body = bodyArb(
      {
        model: modelName,
        messages: { valid: conversation, edge: fc.constantFrom([] as Json, [{ role: 'user' }] as Json, [{ content: 'hi' }] as Json) },
        max_tokens: tokens,
        max_completion_tokens: tokens,
        stream: { valid: fc.boolean() },
        stream_options: { valid: fc.record({ include_usage: fc.boolean() }) },
        n: { valid: fc.constant(1), edge: fc.constantFrom(2, 0) },
        template: { valid: fc.constantFrom('r1', 'direct', 'instruct', 'raw', 'chat', 'chat'), edge: fc.constantFrom('x', 'CHAT') },
        ...sampling,
      },
      ['messages'],
    );
    await fc.assert(fc.asyncProperty(body, async (b) => void (await postJson('/v1/chat/completions', b))), { numRuns: runs(250), seed: seedFor(2) });
  }, 180_000);

  test('POST /evaluate with arbitrary JSON bodies', async () => {
    const body = bodyArb(
      {
        benchmark: { valid: fc.constantFrom(...BENCHMARKS, 'spatial-synth', 'spatial-synth', 'spatial-synth'), edge: fc.constantFrom('mmlu', 'SPATIAL-SYNTH', '') },
        split: {
          valid: fc.constantFrom('test', 'val', 'test', 'test_2d', 'test_3d', 'random', 'zeroshot'),
          edge: fc.constantFrom('train', '../x', 'a/b', '.', '..', '...', 'test\u0000', 'x'.repeat(65)),
        },
        subsets: { valid: fc.array(fc.constantFrom('2D', '3D', 'Counting', 'Relative_Depth', 'a.b'), { maxLength: 3 }), edge: fc.constantFrom(['..'], [''], ['../../etc'], Array(33).fill('2D')) },
        limit: { valid: fc.integer({ min: 1, max: 4 }), edge: fc.constantFrom(0, 1_000_000, 1_000_001, 2.5) },
        template: { valid: fc.constantFrom('r1', 'direct', 'instruct'), edge: fc.constantFrom('raw', 'chat') },
        strategy: { valid: fc.constantFrom('r1', 'strict'), edge: fc.constant('loose') },
        max_new_tokens: tokens,
        model: modelName,
        samples: { valid: fc.integer({ min: 1, max: 3 }), edge: fc.constantFrom(0, 257, 1.5, -1) },
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        seed: sampling.seed,
      },
      ['benchmark'],
    );
    await fc.assert(fc.asyncProperty(body, async (b) => void (await postJson('/evaluate', b))), { numRuns: runs(150), seed: seedFor(3) });
  }, 180_000);

  test('POST /evaluate/predictions with arbitrary JSON lines and query strings', async () => {
    const ids = ['spatial-synth/test/000000', 'spatial-synth/test/000001'];
    const valid = fc.record(
      {
        id: fc.constantFrom(...ids),
        prediction: fc.oneof(fc.constantFrom('<answer>A</answer>', 'B', 'thinking</think> <answer>(c)</answer>', ''), fc.string({ maxLength: 40 })),
        sample: fc.integer({ min: 0, max: 2 }),
        completion_tokens: fc.oneof(fc.nat({ max: 100 }), fc.constant(null)),
      },
      { requiredKeys: ['id', 'prediction'] },
    ).map((line) => JSON.stringify(line));
    const edge = fc.oneof(
      fc.constantFrom('', '{', '[]', 'null', '"text"', '{"id": 1, "prediction": "A"}', '{"id": "spatial-synth/test/999999", "prediction": "A"}', '{"id": "x", "prediction": "A"}'),
      fc.constantFrom(...ids).map((id) => JSON.stringify({ id, prediction: 'A', sample: 256 })),
      fc.constantFrom(...ids).map((id) => JSON.stringify({ id, prediction: 'A', sample: -1 })),
      fc.constantFrom(...ids).map((id) => JSON.stringify({ id, prediction: 'A', completion_tokens: 1.5 })),
      fc.constantFrom(...ids).map((id) => JSON.stringify({ id, prediction: 'x'.repeat(200_001) })),
      fc.string({ maxLength: 30 }),
    );
    const lines = fc.array(fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: edge }), { maxLength: 8 });
    const query = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('benchmark=spatial-synth&limit=2', 'benchmark=spatial-synth&limit=2&strategy=strict&model=x', 'benchmark=spatial-synth&limit=2&level=easy') },
      { weight: 1, arbitrary: fc.constantFrom('', 'benchmark=mmlu', 'benchmark=cv-bench', 'benchmark=spatial-synth&limit=0', 'benchmark=spatial-synth&limit=2&limit=3', 'benchmark=spatial-synth&subsets=..', 'benchmark=vsr&level=easy', 'benchmark=spatial-synth&x=1', 'benchmark=spatial-synth&split=train') },
    );
    const type = fc.constantFrom('application/x-ndjson', 'application/x-ndjson', 'application/jsonl', 'text/plain', 'application/json');
    await fc.assert(
      fc.asyncProperty(lines, query, type, async (body, q, contentType) => {
        const text = body.join('\n');
        await check(
          () => request(server).post(`/evaluate/predictions?${q}`).set('Content-Type', contentType).send(text),
          DOCUMENTED,
          () => `POST /evaluate/predictions?${q} (${contentType}) ${text}`,
        );
      }),
      { numRuns: runs(150), seed: seedFor(7) },
    );
  }, 180_000);

  test('POST /admin/train (with the token) with arbitrary JSON bodies', async () => {
    const body = bodyArb(
      {
        base_model: {
          valid: fc.constantFrom('tiny-random', 'tiny-random/../tiny-random', join(MODELS_ROOT, 'tiny-random')),
          edge: fc.constantFrom('no-such-model', '../../etc', '/etc', '/tmp', 'models/tiny-random', '.', '..', '%2e%2e%2fetc', 'a\u0000b', '__proto__'),
        },
        dataset: {
          valid: fc.constantFrom('spatial-synth', 'spatial-synth/../spatial-synth', join(fx.dataDir, 'spatial-synth')),
          edge: fc.constantFrom('sat', '../state', '/etc/passwd', '.', '..', 'nope', '__proto__', 'constructor', 'toString'),
        },
        split: { valid: fc.constant('train'), edge: fc.constantFrom('val', '../train', 'train\n') },
        steps: { valid: fc.integer({ min: 1, max: 3 }), edge: fc.constantFrom(0, 10_000_000, 10_000_001) },
        num_generations: { valid: fc.integer({ min: 2, max: 8 }), edge: fc.constantFrom(1, 257) },
        prompts_per_step: { valid: fc.integer({ min: 1, max: 4 }), edge: fc.constant(0) },
        learning_rate: { valid: fc.double({ min: 1e-9, max: 1, noNaN: true }), edge: fc.constantFrom(0, -1e-6, 1.5) },
        beta: { valid: fc.double({ min: 0, max: 100, noNaN: true }), edge: fc.constant(-0.1) },
        temperature: { valid: fc.double({ min: 0.01, max: 10, noNaN: true }), edge: fc.constantFrom(0, 11) },
        max_completion_length: { valid: fc.integer({ min: 1, max: 65_536 }), edge: fc.constantFrom(0, 65_537) },
        max_pixels: { valid: fc.integer({ min: 3136, max: 12_845_056 }), edge: fc.constantFrom(0, 3135, 12_845_057) },
        device: { valid: fc.constantFrom('auto', 'cpu', 'cuda'), edge: fc.constant('tpu') },
        seed: { valid: fc.nat(), edge: fc.constantFrom(2 ** 32, -1) },
        save_steps: { valid: fc.integer({ min: 1, max: 3 }), edge: fc.constant(0) },
        template: { valid: fc.constantFrom('r1', 'instruct'), edge: fc.constant('chat') },
        freeze_vision: { valid: fc.boolean() },
        freeze_llm: { valid: fc.constant(false), edge: fc.constant(true) },
        nodes: { valid: fc.constant(1), edge: fc.constantFrom(2, 65) },
        gpus: { valid: fc.constant(1), edge: fc.constantFrom(2, 17) },
      },
      [],
    );
    await fc.assert(fc.asyncProperty(body, async (b) => void (await postJson('/admin/train', b, auth))), { numRuns: runs(150), seed: seedFor(4) });
  }, 180_000);

  test('POST /generate with arbitrary raw bodies under arbitrary content types', async () => {
    const printable = fc.string({ unit: 'binary-ascii', maxLength: 40 }).filter((s) => /^[\x20-\x7e]*$/.test(s));
    const boundary = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('B', 'xYz-123', '----WebKitFormBoundary7MA4YWxkTrZu0gW') },
      { weight: 1, arbitrary: fc.oneof(fc.constantFrom('a'.repeat(70), 'a'.repeat(200), ' ', '"', '--'), printable) },
    );
    const field = (name: string, data: string): Part => ({ name, filename: null, type: null, data });
    const validPart: fc.Arbitrary<Part> = fc.oneof(
      fc.constantFrom(
        field('max_new_tokens', '2'), field('stream', 'true'), field('stream', 'false'), field('template', 'direct'), field('temperature', '0.5'),
        field('seed', '3'), field('ignore_eos', '1'), field('top_k', '5'), field('model', 'tiny-random'),
      ),
      fc.constantFrom(images.png, images.jpeg, images.webp).map((data): Part => ({ name: 'image', filename: 'a.png', type: 'image/png', data })),
    );
    const randomPart: fc.Arbitrary<Part> = fc.record({
      name: fc.option(
        fc.oneof(
          fc.constantFrom('image', 'question', 'max_new_tokens', 'stream', 'template', 'picture', '', 'question[]', 'a[0]', 'a[99999999]', 'a[b][c][d][e][f]', '__proto__', 'constructor', 'question[__proto__]', 'x'.repeat(300)),
          printable,
        ),
        { freq: 8 },
      ),
      filename: fc.option(fc.constantFrom('a.png', 'x.jpg', '', '../../etc/passwd', 'a"b.png', 'n\u00e9.png'), { freq: 2 }),
      type: fc.option(fc.constantFrom('image/png', 'image/jpeg', 'text/plain', 'application/octet-stream', 'image/gif'), { freq: 2 }),
      data: fc.oneof(
        fc.constantFrom('What is closer?', '2', 'true', 'r1', '', '-1', '1e400', 'NaN'),
        fc.constant(images.png),
        fc.uint8Array({ maxLength: 256 }),
        fc.string({ maxLength: 60 }),
      ),
    });
    // Mostly a well-formed form (question first, a few valid fields and an image), then broken
    // in one or several ways: junk parts, many parts, another boundary, LF line ends, a preamble,
    // no closing delimiter, cut anywhere.
    const parts = fc
      .tuple(
        fc.oneof({ weight: 5, arbitrary: question.map((q) => [field('question', q)]) }, { weight: 1, arbitrary: fc.constant([] as Part[]) }),
        fc.array(validPart, { maxLength: 3 }),
        fc.oneof({ weight: 4, arbitrary: fc.constant([] as Part[]) }, { weight: 1, arbitrary: fc.array(randomPart, { minLength: 1, maxLength: 4 }) }),
        fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 15, max: 60 }) }),
      )
      .map(([q, valid, junk, many]) => [...q, ...valid, ...junk, ...Array.from({ length: many }, (_, i) => field(`f${i}`, 'x'))]);
    const rarely = <T>(usual: T, arb: fc.Arbitrary<T>) => fc.oneof({ weight: 5, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: arb });
    const multipart = fc
      .record({
        declared: boundary,
        mismatch: rarely(null as string | null, boundary),
        parts,
        newline: rarely('\r\n' as '\r\n' | '\n', fc.constant('\n' as const)),
        preamble: rarely('', fc.constantFrom('preamble\r\n', '\r\n', '--')),
        closing: rarely(true, fc.constant(false)),
        cut: rarely(null as number | null, fc.nat()),
        quote: fc.boolean(),
      })
      .map((m) => ({
        type: `multipart/form-data; boundary=${m.quote ? `"${m.declared}"` : m.declared}`,
        body: buildMultipart({ ...m, used: m.mismatch ?? m.declared }),
      }));
    const contentType = fc.oneof(
      fc.constantFrom(
        'application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json; charset=koi8-r',
        'application/vnd.api+json', 'multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=B',
        'multipart/form-data; boundary="B"', 'multipart/mixed; boundary=B', 'text/plain', 'application/x-www-form-urlencoded',
        'image/png', 'application/octet-stream', '*/*', 'multipart/form-data; boundary=B; charset=utf-16', 'MULTIPART/FORM-DATA; BOUNDARY=B',
      ),
      printable,
    );
    const rawBytes = fc.oneof(
      fc.uint8Array({ maxLength: 4096 }),
      fc.constant(Buffer.from('{"question": "q", "max_new_tokens": 1}')),
      fc.constant(Buffer.from('question=q&max_new_tokens=1')),
      fc.constant(images.png),
    );
    const input = fc.oneof(
      { weight: 3, arbitrary: multipart.map((m) => ({ ...m, encoding: null as string | null })) },
      { weight: 2, arbitrary: fc.record({ type: contentType, body: rawBytes, encoding: fc.constant(null as string | null) }) },
      {
        weight: 1,
        arbitrary: fc.record({
          type: fc.oneof(contentType, multipart.map((m) => m.type)),
          body: fc.oneof(rawBytes, multipart.map((m) => m.body), fc.constant(gzipSync('{"question":"q","max_new_tokens":1}'))),
          encoding: fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'compress', 'gzip, gzip', 'x-junk'),
        }),
      },
      // Larger than every limit (JSON and image).
      // (a size, filled in below: a counter-example stays readable)
      { weight: 1, arbitrary: fc.constantFrom('application/json', 'multipart/form-data; boundary=B').map((type) => ({ type, body: 1_600_000 as Uint8Array | number, encoding: null as string | null })) },
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ type, body, encoding }) => {
        const bytes = typeof body === 'number' ? Buffer.alloc(body, 0x41) : Buffer.from(body);
        await check(
          () => {
            const req = request(server).post('/generate').set('Content-Type', type);
            if (encoding) req.set('Content-Encoding', encoding);
            return req.send(bytes);
          },
          DOCUMENTED,
          () => `Content-Type: ${type}${encoding ? `, Content-Encoding: ${encoding}` : ''}\n${JSON.stringify(bytes.toString('latin1').slice(0, 1200))}`,
        );
      }),
      { numRuns: runs(250), seed: seedFor(5) },
    );
  }, 180_000);

  test('image bytes: valid images mutated, and random bytes, as a file and as base64', async () => {
    const mutated = fc
      .record({ base: fc.constantFrom('png', 'jpeg', 'webp', 'pngAlpha') as fc.Arbitrary<keyof typeof images>, mutations: fc.array(mutationArb, { maxLength: 4 }) })
      .map(({ base, mutations }) => mutate(images[base], mutations));
    const magic = fc.constantFrom(PNG_SIGNATURE, Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('RIFF\x00\x01\x00\x00WEBPVP8 ', 'latin1'), Buffer.from('GIF89a'), Buffer.from('II*\x00', 'latin1'));
    const bytes = fc.oneof(
      { weight: 6, arbitrary: mutated },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)) },
      { weight: 1, arbitrary: fc.tuple(magic, fc.uint8Array({ maxLength: 2048 })).map(([m, rest]) => Buffer.concat([m, rest])) },
    );
    const asDataUrl = fc.constantFrom(null, 'image/png', 'image/jpeg', 'image/webp');
    await fc.assert(
      fc.asyncProperty(bytes, asDataUrl, async (image, type) => {
        const hex = () => `${image.length} bytes: ${image.subarray(0, 96).toString('hex')}`;
        await check(
          () => request(server).post('/generate').attach('image', image, 'image.bin').field('question', 'What is it?').field('max_new_tokens', '1'),
          IMAGE_STATUSES,
          () => `multipart ${hex()}`,
        );
        const encoded = image.toString('base64');
        await check(
          () => request(server).post('/generate').send({ question: 'What is it?', max_new_tokens: 1, image: type ? `data:${type};base64,${encoded}` : encoded }),
          IMAGE_STATUSES,
          () => `JSON (${type ?? 'plain base64'}) ${hex()}`,
        );
      }),
      { numRuns: runs(200), seed: seedFor(6) },
    );
  }, 180_000);

  test('after all of that the process serves, the engine decodes and nothing is left running', async () => {
    // Fuzzed evaluation runs and training jobs are ended first: they share the engine and slots.
    for (const run of evalRuns.list()) await evalRuns.wait(run.id);
    for (const job of jobs.list()) {
      if (job.status === 'queued' || job.status === 'running') jobs.cancel(job.id);
    }
    for (const job of jobs.list()) await jobs.wait(job.id);

    await request(server).get('/healthz').expect(200, { status: 'ok' });
    const res = await request(server).post('/generate').attach('image', images.png, 'a.png').field('question', 'How many objects?').field('max_new_tokens', '3').expect(200);
    expect(res.body.usage.completion_tokens).toBeGreaterThan(0);
    const chat = await request(server)
      .post('/v1/chat/completions')
      .send({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${b64('png')}` } }] }], max_tokens: 2 })
      .expect(200);
    expect(chat.body.choices[0].finish_reason).toBeDefined();

    const metrics = (await request(server).get('/metrics').expect(200)).text;
    expect(metrics).toMatch(/^vlm_requests_running\{model="tiny-random"\} 0$/m);
    expect(metrics).toMatch(/^vlm_requests_waiting\{model="tiny-random"\} 0$/m);
    // No request of the whole file was answered 500 (503 is the documented overload answer).
    expect(metrics).not.toMatch(/^vlm_requests_total\{[^}]*status="5(?!03)\d\d"[^}]*\} /m);
    expect(tried).toBeGreaterThan(1000 * Math.min(1, RUN_FACTOR));
  }, 120_000);
});
