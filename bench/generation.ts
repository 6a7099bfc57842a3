// Generation benchmark: our HTTP server against transformers.js on the same model folder, in the
// same run. Prints a markdown table (docs/performance.md).
//
//   npx tsx bench/generation.ts [--model DIR[:dtype,...]]... [--tokens 32] [--rounds 2] [--no-transformersjs] [--ladder]
//
// Per model variant: single-stream time to first token for a 448x448 image and decode tokens/s,
// aggregate tokens/s at concurrency 1, 4 and 16 through HTTP (each client sends requests one after
// another; fixed lengths via ignore_eos), the same single-stream and concurrent workload through
// transformers.js (concurrent generate() calls on one model), the ratios, and the decode roofline:
// bytes read per token (decoder weights + KV cache) over this machine's measured memory bandwidth.
// The ceiling row is the tightest loop onnxruntime-node allows on the same folder (bench/ceiling.ts);
// "of ceiling" is each row's single-stream decode rate over it. The ceiling's c=N columns are the
// runtime's own decode rate for N rows at once (one decoder run over N rows, no prefill, no
// sampling): what N clients could get at most, and so the bound of c=16/c=1. --ladder adds the loop's rungs
// between the ceiling and our engine (one thing the engine does added back at a time).
import { statSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { createServer, Server } from 'node:http';
import { basename, join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Agent, fetch } from 'undici';
import { loadConfig } from '../src/config';
import { DTYPE_SUFFIX, Dtype } from '../src/engine/model_folder';
import { createApp } from '../src/server/app';
import { engineFromConfig } from '../src/engine/from_config';
import { Engine } from '../src/engine/engine';
import { batchedCeiling, ceiling, LoopShape, TIGHTEST } from './ceiling';
import { flag, flags, hasFlag, median, noisePng, QUESTION } from './common';

interface Variant {
  dir: string;
  dtype: Dtype;
}

interface Row {
  model: string;
  dtype: string;
  engine: string;
  ttftMs: number;
  decodeTps: number;
  aggregate: Record<number, number>;
  rooflineFraction?: number;
}

const TOKENS = Number(flag('tokens', '32'));
const ROUNDS = Number(flag('rounds', '2'));
const CONCURRENCY = flag('concurrency', '1,4,16').split(',').map(Number);
const WITH_TJS = !hasFlag('no-transformersjs');
const LADDER = hasFlag('ladder');
const variants: Variant[] = [];
for (const value of flags('model')) {
  const [dir, dtypes = 'fp32'] = value.split(':');
  for (const dtype of dtypes.split(',')) variants.push({ dir: resolve(dir), dtype: dtype as Dtype });
}
if (!variants.length) variants.push({ dir: resolve('models/tiny-random'), dtype: 'fp32' }, { dir: resolve('models/tiny-random'), dtype: 'q4' });

const image = noisePng;

/** The read bandwidth onnxruntime reaches here (bench/membw.py sums a 1 GiB tensor), in bytes/s. */
function memoryBandwidth(threads: number): number {
  const out = execFileSync(join(__dirname, '..', '.venv', 'bin', 'python'), [join(__dirname, 'membw.py'), '--threads', String(threads)], { encoding: 'utf8' });
  return Number(out.trim()) * 1e9;
}

function decoderBytes(v: Variant): number {
  const file = join(v.dir, 'onnx', `decoder_model_merged${DTYPE_SUFFIX[v.dtype]}.onnx`);
  const size = (p: string) => { try { return statSync(p).size; } catch { return 0; } };
  return size(file) + size(`${file}_data`);
}

async function startServer(v: Variant): Promise<{ base: string; server: Server; engine: Engine; dispose: () => Promise<void> }> {
  const config = loadConfig({
    ...process.env,
    MODEL_DIR: v.dir,
    MODEL_DTYPE: v.dtype,
    MAX_BATCH_SIZE: '16',
    MAX_QUEUE: '256',
    MAX_NEW_TOKENS: String(Math.max(TOKENS, 64)),
    // The concurrent clients all send one picture and question: with the prompt and image caches
    // on, only the first request would be preprocessed and prefilled. Batching is what is measured
    // here (bench/serving_breakdown.ts and bench/evaluation.ts --samples show the caches).
    PROMPT_CACHE_MB: '0',
    IMAGE_CACHE_MB: '0',
    LOG_LEVEL: 'silent',
    REQUEST_TIMEOUT_MS: String(3_600_000),
  });
  const engine = engineFromConfig(config);
  const { app } = createApp({ config, engine, state: { draining: false, warmed: true } });
  const server = createServer(app);
  server.requestTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, server, engine, dispose: async () => { server.close(); server.closeAllConnections(); await engine.dispose(); } };
}

// A 2B model on a CPU can take minutes to answer the first request: no client-side timeouts.
const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });

async function generate(base: string, png: Buffer, tokens: number, stream: boolean): Promise<{ firstMs: number; totalMs: number; tokens: number }> {
  const started = performance.now();
  const res = await fetch(`${base}/generate`, {
    dispatcher: agent,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ question: QUESTION, image: png.toString('base64'), max_new_tokens: tokens, ignore_eos: true, stream }),
  });
  if (!res.ok) throw new Error(`generate answered ${res.status}: ${await res.text()}`);
  if (!stream) {
    const body = (await res.json()) as { usage: { completion_tokens: number } };
    return { firstMs: NaN, totalMs: performance.now() - started, tokens: body.usage.completion_tokens };
  }
  let firstMs = NaN;
  let count = 0;
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (Number.isNaN(firstMs)) firstMs = performance.now() - started;
    buffer += decoder.decode(chunk, { stream: true });
    const done = /event: done\ndata: (.*)\n/.exec(buffer);
    if (done) count = JSON.parse(done[1]).usage.completion_tokens;
  }
  return { firstMs, totalMs: performance.now() - started, tokens: count };
}

/** The same single-stream request through the engine API in-process, as transformers.js is measured. */
async function inProcess(engine: Engine, png: Buffer, tokens: number): Promise<{ firstMs: number; totalMs: number; tokens: number }> {
  const started = performance.now();
  let firstMs = NaN;
  let count = 0;
  for await (const event of engine.generate({ prompt: { template: 'chat', messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] }] }, images: [png], maxNewTokens: tokens, ignoreEos: true })) {
    if (Number.isNaN(firstMs)) firstMs = performance.now() - started;
    if (event.type === 'done') count = event.result.usage.completionTokens;
  }
  return { firstMs, totalMs: performance.now() - started, tokens: count };
}

async function ours(v: Variant): Promise<Row[]> {
  const { base, engine, dispose } = await startServer(v);
  try {
    const img448 = await image(448, 1);
    await generate(base, img448, 2, false); // load + warm
    const singles = [];
    for (let r = 0; r < ROUNDS; r++) singles.push(await generate(base, await image(448, 100 + r), TOKENS, true));
    const ttftMs = median(singles.map((s) => s.firstMs));
    const decodeTps = median(singles.map((s) => (s.tokens - 1) / ((s.totalMs - s.firstMs) / 1000)));
    const local = [];
    for (let r = 0; r < ROUNDS; r++) local.push(await inProcess(engine, await image(448, 200 + r), TOKENS));
    const engineRow: Row = {
      model: basename(v.dir), dtype: v.dtype, engine: 'ours (engine API, in-process)',
      ttftMs: median(local.map((s) => s.firstMs)),
      decodeTps: median(local.map((s) => (s.tokens - 1) / ((s.totalMs - s.firstMs) / 1000))),
      aggregate: {},
    };
    const aggregate: Record<number, number> = {};
    const small = await image(224, 7); // concurrency runs: 64 image tokens each, features cached after the first
    for (const c of CONCURRENCY) {
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: c }, async () => {
          let produced = 0;
          for (let r = 0; r < ROUNDS; r++) produced += (await generate(base, small, TOKENS, false)).tokens;
          return produced;
        }),
      );
      aggregate[c] = results.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
    }
    return [{ model: basename(v.dir), dtype: v.dtype, engine: 'ours (HTTP)', ttftMs, decodeTps, aggregate }, engineRow];
  } finally {
    await dispose();
  }
}

async function transformersJs(v: Variant): Promise<Row> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const T = require('@huggingface/transformers');
  T.env.allowRemoteModels = false;
  T.env.localModelPath = resolve(v.dir, '..');
  const name = basename(v.dir);
  const processor = await T.AutoProcessor.from_pretrained(name);
  const model = await T.Qwen2VLForConditionalGeneration.from_pretrained(name, { dtype: v.dtype });
  const text = processor.apply_chat_template([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] }], { add_generation_prompt: true });
  const run = async (png: Buffer, tokens: number) => {
    const started = performance.now();
    let firstMs = NaN;
    const inputs = await processor(text, await T.RawImage.fromBlob(new Blob([png])));
    // transformers.js puts the prompt ids first, then each generated token.
    let puts = 0;
    const streamer = {
      put: () => {
        puts += 1;
        if (puts === 2) firstMs = performance.now() - started;
      },
      end: () => undefined,
    };
    // min_new_tokens keeps the length fixed, as ignore_eos does for ours.
    const out = await model.generate({ ...inputs, max_new_tokens: tokens, min_new_tokens: tokens, do_sample: false, streamer });
    return { firstMs, totalMs: performance.now() - started, tokens: out.dims[1] - inputs.input_ids.dims[1] };
  };
  try {
    await run(await image(448, 1), 2);
    const singles = [];
    for (let r = 0; r < ROUNDS; r++) singles.push(await run(await image(448, 100 + r), TOKENS));
    const ttftMs = median(singles.map((s) => s.firstMs));
    const decodeTps = median(singles.map((s) => (s.tokens - 1) / ((s.totalMs - s.firstMs) / 1000)));
    const aggregate: Record<number, number> = {};
    const small = await image(224, 7);
    for (const c of CONCURRENCY) {
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: c }, async () => {
          let produced = 0;
          for (let r = 0; r < ROUNDS; r++) produced += (await run(small, TOKENS)).tokens;
          return produced;
        }),
      );
      aggregate[c] = results.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
    }
    return { model: name, dtype: v.dtype, engine: 'transformers.js', ttftMs, decodeTps, aggregate };
  } finally {
    await model.dispose();
  }
}

function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

async function main() {
  const threads = loadConfig({}).threads;
  const bandwidth = memoryBandwidth(threads);
  console.error(`memory bandwidth (onnxruntime reduction, ${threads} threads): ${(bandwidth / 1e9).toFixed(1)} GB/s`);
  const rows: Row[] = [];
  // Which outputs are faster, preallocated or the runtime's, depends on the model (the present KV
  // tensors written into views of large buffers, or allocated per run): the ceiling is the faster.
  const ceilings: LoopShape[] = [TIGHTEST, { ...TIGHTEST, preallocated: false }];
  const shapes: LoopShape[] = LADDER
    ? [...ceilings, { ...TIGHTEST, preallocated: false, table: false }, { table: false, preallocated: false, argmax: false }]
    : ceilings;
  const outputs = (s: LoopShape) => (s.preallocated ? 'preallocated outputs' : 'runtime-allocated outputs');
  const shapeName = (s: LoopShape) => `loop: ${[outputs(s), s.table ? 'embedding table' : 'embed graph per token', s.argmax ? 'argmax' : 'our sampler'].join(', ')}`;
  for (const v of variants) {
    console.error(`[bench] ${basename(v.dir)} ${v.dtype}: ceiling`);
    const images = [await image(448, 1), ...(await Promise.all(Array.from({ length: ROUNDS }, (_, r) => image(448, 300 + r))))];
    const small = { tokens: TOKENS, rounds: ROUNDS, threads, question: QUESTION, images: [await image(224, 7)] };
    const batched = await batchedCeiling(v.dir, v.dtype, small, CONCURRENCY);
    const results = await ceiling(v.dir, v.dtype, { tokens: TOKENS, rounds: ROUNDS, threads, question: QUESTION, images }, shapes);
    const best = results.filter((r) => ceilings.includes(r.shape)).reduce((a, b) => (b.decodeTps > a.decodeTps ? b : a));
    for (const result of results) {
      if (result !== best && !LADDER) continue;
      const engine = result === best ? `ceiling (onnxruntime-node loop, ${outputs(result.shape)})` : shapeName(result.shape);
      const row: Row = { model: basename(v.dir), dtype: v.dtype, engine, ttftMs: result.ttftMs, decodeTps: result.decodeTps, aggregate: result === best ? batched : {} };
      row.rooflineFraction = decoderBytes(v) / bandwidth / (1 / row.decodeTps);
      rows.push(row);
      console.error(`[bench] ${JSON.stringify(row)}`);
    }
    console.error(`[bench] ${basename(v.dir)} ${v.dtype}: ours`);
    const mine = await ours(v);
    // Roofline: every decode step reads all decoder weights once; the KV cache is small here.
    for (const row of mine) {
      row.rooflineFraction = decoderBytes(v) / bandwidth / (1 / row.decodeTps);
      rows.push(row);
      console.error(`[bench] ${JSON.stringify(row)}`);
    }
    if (WITH_TJS) {
      console.error(`[bench] ${basename(v.dir)} ${v.dtype}: transformers.js`);
      const theirs = await transformersJs(v);
      rows.push(theirs);
      console.error(`[bench] ${JSON.stringify(theirs)}`);
    }
  }
  const cs = CONCURRENCY;
  console.log(`\nGeneration benchmark: ${TOKENS} new tokens per request, ${ROUNDS} rounds, CPU threads ${threads}, memory bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s (onnxruntime reading a 1 GiB tensor)\n`);
  console.log(`| model | dtype | engine | TTFT 448x448 (ms) | decode tok/s (1 stream) | of ceiling | ${cs.map((c) => `tok/s c=${c}`).join(' | ')} | c=${cs.at(-1)}/c=${cs[0]} | ours/transformers.js (1 stream) | roofline fraction |`);
  console.log(`|${'---|'.repeat(9 + cs.length)}`);
  for (const r of rows) {
    const same = (p: Row) => p.model === r.model && p.dtype === r.dtype;
    const peer = rows.find((p) => same(p) && p.engine === 'transformers.js');
    const top = rows.find((p) => same(p) && p.engine.startsWith('ceiling'));
    const ratio = r.engine.startsWith('ours') && peer ? fmt(r.decodeTps / peer.decodeTps, 2) : '';
    const agg = (c: number) => (r.aggregate[c] === undefined ? '' : fmt(r.aggregate[c]));
    console.log(
      `| ${r.model} | ${r.dtype} | ${r.engine} | ${fmt(r.ttftMs, 0)} | ${fmt(r.decodeTps)} | ${top ? fmt(r.decodeTps / top.decodeTps, 2) : ''} | ${cs.map(agg).join(' | ')} | ${r.aggregate[cs[0]] === undefined ? '' : fmt(r.aggregate[cs.at(-1)!] / r.aggregate[cs[0]], 2)} | ${ratio} | ${r.rooflineFraction === undefined ? '' : fmt(r.rooflineFraction, 2)} |`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
