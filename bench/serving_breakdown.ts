// Where serving time goes: the same HTTP workload as bench/generation.ts, with the engine's own
// step reports (Engine.observe) summed, so each row says how much of the wall time the model
// worker spent in prefill (vision included) and decode runs, how much the step round trips added
// (thread hops, a busy main thread), and how long no step was in flight at all (the main thread
// preparing requests, the HTTP layer, the clients). Prints two markdown tables
// (docs/performance.md, "Where the time goes").
//
//   npx tsx bench/serving_breakdown.ts [--model DIR]... [--clients 1,16] [--tokens 64] [--rounds 3] [--distinct]
//
// --distinct gives every request its own picture (no feature-cache hits), as an evaluation does;
// without it all clients send one 224x224 picture, as bench/generation.ts does.
// The clients run in this process, as in bench/generation.ts: their share of the main thread is
// part of "no step in flight".
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { basename, resolve } from 'node:path';
import { Agent, fetch } from 'undici';
import { loadConfig } from '../src/config';
import { engineFromConfig } from '../src/engine/from_config';
import { imageProcessorConfig, preprocessImage } from '../src/engine/qwen2_vl/image_processing';
import { readModelFolder } from '../src/engine/model_folder';
import { createApp } from '../src/server/app';
import { flag, flags, hasFlag, median, noisePng, QUESTION } from './common';

const TOKENS = Number(flag('tokens', '64'));
const ROUNDS = Number(flag('rounds', '3'));
const CLIENTS = flag('clients', '1,16').split(',').map(Number);
const DISTINCT = hasFlag('distinct');
const models = flags('model').map((dir) => resolve(dir));
if (!models.length) models.push(resolve('models/nano-r1zero'), resolve('models/tiny-random'));

const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });
const image = noisePng;

interface Totals {
  steps: number;
  callMs: number;
  prefillMs: number;
  visionMs: number;
  decodeMs: number;
  decodeRuns: number;
  rowRuns: number;
  prefilled: number;
}

const zero = (): Totals => ({ steps: 0, callMs: 0, prefillMs: 0, visionMs: 0, decodeMs: 0, decodeRuns: 0, rowRuns: 0, prefilled: 0 });

async function measure(dir: string) {
  const config = loadConfig({
    ...process.env, MODEL_DIR: dir, MODEL_DTYPE: 'fp32', MAX_BATCH_SIZE: '16', MAX_QUEUE: '256',
    MAX_NEW_TOKENS: String(Math.max(TOKENS, 64)), LOG_LEVEL: 'silent', REQUEST_TIMEOUT_MS: '3600000',
  });
  const engine = engineFromConfig(config);
  let totals = zero();
  let firstTokenMs: number[] = [];
  engine.observe({
    onStep: (_model, result, _waiting, _running, callMs) => {
      totals.steps += 1;
      totals.callMs += callMs;
      totals.prefillMs += result.prefillMs;
      totals.visionMs += result.visionMs;
      totals.decodeMs += result.decodeMs;
      totals.decodeRuns += result.decodeSteps;
      totals.rowRuns += result.batchSize * result.decodeSteps;
      totals.prefilled += result.prefilled.length;
    },
    onRequestDone: (_model, stats) => {
      if (stats.firstTokenMs !== null) firstTokenMs.push(stats.firstTokenMs);
    },
  });
  const { app } = createApp({ config, engine, state: { draining: false, warmed: true } });
  const server = createServer(app);
  server.requestTimeout = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const generate = async (png: Buffer, tokens: number, stream: boolean) => {
    const started = performance.now();
    const res = await fetch(`${base}/generate`, {
      dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question: QUESTION, image: png.toString('base64'), max_new_tokens: tokens, ignore_eos: true, stream }),
    });
    if (!res.ok) throw new Error(`generate answered ${res.status}: ${await res.text()}`);
    if (!stream) return { tokens: ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, firstMs: NaN };
    let firstMs = NaN;
    const chunks = (res.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    for (let c = await chunks.next(); !c.done; c = await chunks.next()) if (Number.isNaN(firstMs)) firstMs = performance.now() - started;
    return { tokens, firstMs };
  };
  try {
    await generate(await image(448, 1), 2, false); // load + warm
    // Time to first token of a 448x448 picture, split: preprocessing alone (timed apart on the
    // same bytes), the worker's prefill (vision encoder included), the engine's first token, HTTP's.
    const folder = readModelFolder(dir);
    const imageConfig = imageProcessorConfig(folder.preprocessor, { maxPixels: config.maxPixels, minPixels: config.minPixels });
    const ttft = { http: [] as number[], engine: [] as number[], preprocess: [] as number[], prefill: [] as number[], vision: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      const png = await image(448, 100 + r);
      const t = performance.now();
      await preprocessImage(png, imageConfig, { maxInputPixels: config.maxInputPixels });
      ttft.preprocess.push(performance.now() - t);
      totals = zero();
      firstTokenMs = [];
      const png2 = await image(448, 500 + r);
      ttft.http.push((await generate(png2, 2, true)).firstMs);
      ttft.engine.push(firstTokenMs[0]);
      ttft.prefill.push(totals.prefillMs);
      ttft.vision.push(totals.visionMs);
    }
    const loads = [];
    const small = await image(224, 7);
    let seed = 1000;
    for (const clients of CLIENTS) {
      const pictures = DISTINCT ? await Promise.all(Array.from({ length: clients * ROUNDS }, () => image(224, seed++))) : [];
      totals = zero();
      const started = performance.now();
      const produced = await Promise.all(
        Array.from({ length: clients }, async (_, c) => {
          let n = 0;
          for (let r = 0; r < ROUNDS; r++) n += (await generate(DISTINCT ? pictures[c * ROUNDS + r] : small, TOKENS, false)).tokens;
          return n;
        }),
      );
      const wall = performance.now() - started;
      loads.push({ clients, wall, tokens: produced.reduce((a, b) => a + b, 0), totals: { ...totals } });
    }
    return {
      name: basename(dir),
      ttft: Object.fromEntries(Object.entries(ttft).map(([k, v]) => [k, median(v)])) as Record<keyof typeof ttft, number>,
      loads,
    };
  } finally {
    server.close();
    server.closeAllConnections();
    await engine.dispose();
  }
}

const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)}%`;

async function main() {
  const results = [];
  for (const dir of models) {
    console.error(`[breakdown] ${basename(dir)}`);
    results.push(await measure(dir));
  }
  console.log(`\nTime to first token, 448x448 picture, one client, median of ${ROUNDS} (ms)\n`);
  console.log('| model | HTTP TTFT | engine first token | preprocessing (main thread) | worker prefill | of which vision | rest of the engine | before the engine (HTTP, JSON, base64) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const t = r.ttft;
    console.log(`| ${r.name} | ${f(t.http)} | ${f(t.engine)} | ${f(t.preprocess)} | ${f(t.prefill)} | ${f(t.vision)} | ${f(t.engine - t.preprocess - t.prefill)} | ${f(t.http - t.engine)} |`);
  }
  console.log(`\nWhere the wall time of a load goes: ${TOKENS} tokens per request, ${ROUNDS} requests per client, ${DISTINCT ? 'a new' : 'one shared'} 224x224 picture per request\n`);
  console.log('| model | clients | tok/s | wall (ms) | worker prefill (vision) | worker decode | step round trips beyond the runs | no step in flight | decode runs | mean rows per run | ms per decode run | ms per prefilled sequence |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    for (const l of r.loads) {
      const t = l.totals;
      const runs = t.prefillMs + t.decodeMs;
      console.log(
        `| ${r.name} | ${l.clients} | ${f(l.tokens / (l.wall / 1000))} | ${f(l.wall)} | ${pct(t.prefillMs, l.wall)} (${pct(t.visionMs, l.wall)}) | ${pct(t.decodeMs, l.wall)} | ${pct(t.callMs - runs, l.wall)} | ${pct(l.wall - t.callMs, l.wall)} | ${t.decodeRuns} | ${f(t.rowRuns / Math.max(1, t.decodeRuns), 1)} | ${f(t.decodeMs / Math.max(1, t.decodeRuns), 2)} | ${f(t.prefillMs / Math.max(1, t.prefilled), 1)} |`,
      );
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
