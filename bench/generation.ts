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
//
// The single-stream rows are measured interleaved: every contender (the loop's shapes, ours over
// HTTP, ours in process, transformers.js) is open at once, and each round runs one generation of
// each on a 448x448 picture of its own, in an order rotated from round to round. This machine's speed drifts
// by 10-30% within minutes, so rows measured one after the other compare the minutes as much as
// the engines. Below the table, the per-round ratios: their median and range.
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
import { batchedCeiling, openCeiling, LoopShape, TIGHTEST } from './ceiling';
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

/** One generation: ms to its first token, ms in all, tokens generated. */
interface Generation {
  firstMs: number;
  totalMs: number;
  tokens: number;
}

async function generate(base: string, png: Buffer, tokens: number, stream: boolean): Promise<Generation> {
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

/** A single-stream contender: one generation of `tokens` tokens on a picture. */
interface Contender {
  engine: string;
  run(png: Buffer, tokens: number): Promise<Generation>;
}

const decodeRate = (g: Generation) => (g.tokens - 1) / ((g.totalMs - g.firstMs) / 1000);

/**
 * The same single-stream request through the engine API in-process, as transformers.js is
 * measured. The first token's time is when its step reached the scheduler (the engine's observer),
 * whether or not its text is empty.
 */
function inProcess(engine: Engine): Contender {
  let stepped: (() => void) | null = null;
  engine.observe({ onStep: () => stepped?.() });
  return {
    engine: 'ours (engine API, in-process)',
    async run(png, tokens) {
      const started = performance.now();
      let firstMs = NaN;
      stepped = () => {
        firstMs = performance.now() - started;
        stepped = null;
      };
      let count = 0;
      for await (const event of engine.generate({ prompt: { template: 'chat', messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] }] }, images: [png], maxNewTokens: tokens, ignoreEos: true })) {
        if (event.type === 'done') count = event.result.usage.completionTokens;
      }
      return { firstMs, totalMs: performance.now() - started, tokens: count };
    },
  };
}

/** Tokens/s of `c` clients, each sending ROUNDS requests one after another. */
async function aggregate(c: number, request: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: c }, async () => {
      let produced = 0;
      for (let r = 0; r < ROUNDS; r++) produced += await request();
      return produced;
    }),
  );
  return results.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
}

async function openTransformersJs(v: Variant) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const T = require('@huggingface/transformers');
  T.env.allowRemoteModels = false;
  T.env.localModelPath = resolve(v.dir, '..');
  const name = basename(v.dir);
  const processor = await T.AutoProcessor.from_pretrained(name);
  const model = await T.Qwen2VLForConditionalGeneration.from_pretrained(name, { dtype: v.dtype });
  const text = processor.apply_chat_template([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTION }] }], { add_generation_prompt: true });
  const run = async (png: Buffer, tokens: number): Promise<Generation> => {
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
  return { contender: { engine: 'transformers.js', run } as Contender, dispose: () => model.dispose() };
}

/** Median and range of `values`, as "m (lo-hi)". */
function spread(values: number[]): string {
  return `${fmt(median(values), 2)} (${fmt(Math.min(...values), 2)}-${fmt(Math.max(...values), 2)})`;
}

function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

async function main() {
  const threads = loadConfig({}).threads;
  const bandwidth = memoryBandwidth(threads);
  console.error(`memory bandwidth (onnxruntime reduction, ${threads} threads): ${(bandwidth / 1e9).toFixed(1)} GB/s`);
  const rows: Row[] = [];
  const notes: string[] = [];
  // Which outputs are faster, preallocated or the runtime's, depends on the model (the present KV
  // tensors written into views of large buffers, or allocated per run): the ceiling is the faster.
  const ceilings: LoopShape[] = [TIGHTEST, { ...TIGHTEST, preallocated: false }];
  const shapes: LoopShape[] = LADDER
    ? [...ceilings, { ...TIGHTEST, preallocated: false, table: false }, { table: false, preallocated: false, argmax: false }]
    : ceilings;
  const outputs = (s: LoopShape) => (s.preallocated ? 'preallocated outputs' : 'runtime-allocated outputs');
  const shapeName = (s: LoopShape) => `loop: ${[outputs(s), s.table ? 'embedding table' : 'embed graph per token', s.argmax ? 'argmax' : 'our sampler'].join(', ')}`;
  const roofline = (v: Variant, tps: number) => decoderBytes(v) / bandwidth / (1 / tps);
  for (const v of variants) {
    const model = basename(v.dir);
    console.error(`[bench] ${model} ${v.dtype}: the runtime's batched rates`);
    const small = await image(224, 7); // concurrency runs: one 224x224 picture, 64 image tokens
    const loop = await openCeiling(v.dir, v.dtype, threads, QUESTION);
    const batched = await batchedCeiling(loop, small, TOKENS, CONCURRENCY);

    console.error(`[bench] ${model} ${v.dtype}: single stream, ${ROUNDS} interleaved rounds`);
    const server = await startServer(v);
    const tjs = WITH_TJS ? await openTransformersJs(v) : null;
    try {
      const contenders: (Contender & { shape?: LoopShape })[] = [
        ...shapes.map((shape) => ({
          engine: shapeName(shape),
          shape,
          async run(png: Buffer, tokens: number): Promise<Generation> {
            const { firstMs, restMs } = await loop.run(png, tokens, shape);
            return { firstMs, totalMs: firstMs + restMs, tokens };
          },
        })),
        { engine: 'ours (HTTP)', run: (png, tokens) => generate(server.base, png, tokens, true) },
        inProcess(server.engine),
        ...(tjs ? [tjs.contender] : []),
      ];
      // One untimed generation of full length each: JIT, sessions and buffers warm up.
      const warm = await image(448, 1);
      for (const c of contenders) await c.run(Buffer.from(warm), TOKENS);
      const runs = new Map<Contender, Generation[]>(contenders.map((c) => [c, []]));
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < contenders.length; k++) {
          const i = (r + k) % contenders.length;
          // Each contender its own picture of the same size: the same prompt length and cost, and
          // no vision features cached by our HTTP generation for the in-process one (or back).
          runs.get(contenders[i])!.push(await contenders[i].run(await image(448, 100 + r * contenders.length + i), TOKENS));
        }
      }
      const rate = (c: Contender) => median(runs.get(c)!.map(decodeRate));
      const best = contenders.filter((c) => c.shape && ceilings.includes(c.shape)).reduce((a, b) => (rate(b) > rate(a) ? b : a));
      for (const c of contenders) {
        if (c.shape && c !== best && !LADDER) continue;
        const engine = c === best ? `ceiling (onnxruntime-node loop, ${outputs(c.shape!)})` : c.engine;
        const decodeTps = rate(c);
        const row: Row = { model, dtype: v.dtype, engine, ttftMs: median(runs.get(c)!.map((g) => g.firstMs)), decodeTps, aggregate: c === best ? batched : {}, rooflineFraction: roofline(v, decodeTps) };
        rows.push(row);
        console.error(`[bench] ${JSON.stringify(row)}`);
      }
      // Ratios round by round: the generations of one round ran back to back.
      const perRound = (a: Contender, b: Contender) => runs.get(a)!.map((g, r) => decodeRate(g) / decodeRate(runs.get(b)![r]));
      const local = contenders.find((c) => c.engine.startsWith('ours (engine API'))!;
      notes.push(`${model} ${v.dtype}, ours in process per round: ${spread(perRound(local, best))} of the ceiling` + (tjs ? `, ${spread(perRound(local, tjs.contender))}x transformers.js` : ''));

      console.error(`[bench] ${model} ${v.dtype}: concurrency`);
      const ours: Row = rows.find((r) => r.model === model && r.dtype === v.dtype && r.engine === 'ours (HTTP)')!;
      for (const c of CONCURRENCY) ours.aggregate[c] = await aggregate(c, async () => (await generate(server.base, small, TOKENS, false)).tokens);
      if (tjs) {
        const theirs = rows.find((r) => r.model === model && r.dtype === v.dtype && r.engine === 'transformers.js')!;
        for (const c of CONCURRENCY) theirs.aggregate[c] = await aggregate(c, async () => (await tjs.contender.run(small, TOKENS)).tokens);
      }
    } finally {
      await server.dispose();
      await tjs?.dispose();
      await loop.dispose();
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
  console.log(`\nSingle-stream decode ratios computed round by round (median, range over ${ROUNDS} rounds):\n`);
  for (const note of notes) console.log(`- ${note}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
