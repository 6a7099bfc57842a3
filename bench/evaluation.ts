// Evaluation throughput on spatial-synth: our batched run (the engine's scheduler, many items in
// flight) against a one-item-at-a-time loop over the same engine and against a transformers.js
// loop, on the same items in the same run. Then the same run through 1, 2, ... `--replicas`
// replicas: service processes on loopback serving the same model folder, reached by a coordinating
// engine as one remote model (REMOTE_MODELS, docs/remote-models.md). Each replica row is paired
// with a local batched run made just before it, so a shared machine's drifting load hits both
// sides of the ratio alike. Prints markdown tables (docs/performance.md).
//
//   npx tsx bench/evaluation.ts [--model models/tiny-random] [--items 64] [--tokens 32] [--batch 16] [--replicas 3] [--samples 4]
//
// No cache anywhere (FEATURE_CACHE_MB, PROMPT_CACHE_MB and IMAGE_CACHE_MB are 0): every run
// preprocesses, encodes and prefills every item, whichever run or replica saw it before. With
// --samples K, one more table: a batched run of K sampled responses per item, with the caches off
// and on (each run on a fresh engine), which is what the prompt and image caches are for.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { EvalRuns, EvaluateParams } from '../src/benchmarks/runs';
import { RunStore } from '../src/benchmarks/store';
import { syntheticSplit } from '../src/benchmarks/spatial_synth';
import { loadConfig } from '../src/config';
import { Engine } from '../src/engine/engine';
import { engineFromConfig } from '../src/engine/from_config';
import { openDatabase } from '../src/storage/database';
import { freePort, ServiceProcess, serviceReady, startServiceProcess, stopServiceProcess } from '../test/helpers/service_process';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const MODEL_DIR = resolve(flag('model', 'models/tiny-random'));
const ITEMS = Number(flag('items', '64'));
const TOKENS = Number(flag('tokens', '32'));
const BATCH = Number(flag('batch', '16'));
const REPLICAS = Number(flag('replicas', '3'));
const SAMPLES = Number(flag('samples', '1'));

const items = syntheticSplit('test', ITEMS, 1);

async function ourRun(engine: Engine, concurrency: number, model = basename(MODEL_DIR), runItems = items, sampling: Partial<EvaluateParams> = {}): Promise<{ seconds: number; accuracy: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-eval-'));
  const db = openDatabase(dir);
  const runs = new EvalRuns(new RunStore(db), engine, async () => ({ benchmark: 'spatial-synth', split: 'test', items: runItems }), { concurrency });
  const params: EvaluateParams = { benchmark: 'spatial-synth', limit: runItems.length, template: 'r1', strategy: 'r1', maxNewTokens: TOKENS, model, ...sampling };
  const started = performance.now();
  const run = await runs.wait((await runs.create(params)).id);
  const seconds = (performance.now() - started) / 1000;
  db.close();
  rmSync(dir, { recursive: true, force: true });
  if (run?.status !== 'succeeded') throw new Error(`run ${run?.status}: ${run?.error}`);
  return { seconds, accuracy: (run.result as { accuracy: number }).accuracy };
}

async function transformersJsLoop(): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const T = require('@huggingface/transformers');
  T.env.allowRemoteModels = false;
  T.env.localModelPath = resolve(MODEL_DIR, '..');
  const name = basename(MODEL_DIR);
  const processor = await T.AutoProcessor.from_pretrained(name);
  const model = await T.Qwen2VLForConditionalGeneration.from_pretrained(name, { dtype: 'fp32' });
  try {
    const started = performance.now();
    for (const item of items) {
      // The r1 prompt as our engine renders it (text), with the image in front.
      const text = `<|vision_start|><|image_pad|><|vision_end|><image>A conversation between User and Assistant. The user asks a question about the image, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\nUser: ${item.record.prompt} \nAssistant: Let me solve this step by step.\n<think>`;
      const [png] = await item.loadImages();
      const inputs = await processor(text, await T.RawImage.fromBlob(new Blob([png])));
      await model.generate({ ...inputs, max_new_tokens: TOKENS, do_sample: false });
    }
    return (performance.now() - started) / 1000;
  } finally {
    await model.dispose();
  }
}

/** The environment every engine of the bench shares: in-process (local, coordinator) or a replica process. */
const NO_CACHES = { FEATURE_CACHE_MB: '0', PROMPT_CACHE_MB: '0', IMAGE_CACHE_MB: '0' };
const COMMON_ENV = { MAX_BATCH_SIZE: String(BATCH), MAX_QUEUE: '1024', ...NO_CACHES, MAX_NEW_TOKENS: String(Math.max(TOKENS, 64)) };

/** K sampled responses per item, batched, on a fresh engine with the caches off or at their defaults. */
async function samplesRun(cachesOn: boolean): Promise<{ seconds: number; accuracy: number }> {
  const env: Record<string, string | undefined> = { ...process.env, ...COMMON_ENV, MODEL_DIR, LOG_LEVEL: 'silent' };
  if (cachesOn) for (const name of Object.keys(NO_CACHES)) delete env[name];
  const engine = engineFromConfig(loadConfig(env));
  try {
    await engine.warmup();
    return await ourRun(engine, BATCH, basename(MODEL_DIR), items, { samples: SAMPLES, temperature: 1, seed: 1 });
  } finally {
    await engine.dispose();
  }
}

interface ReplicaRow {
  replicas: number;
  seconds: number;
  accuracy: number;
  /** The local batched run made just before, on the same items. */
  local: { seconds: number; accuracy: number };
}

/**
 * The same run through 1..REPLICAS replica processes. The coordinator is an engine in this process
 * whose only model is remote ("replicas", the replicas' model folder under its own name);
 * REMOTE_MAX_IN_FLIGHT is the batch size, so one replica gets as many items in flight as the
 * local run, and n replicas share them (the run's concurrency stays BATCH).
 */
async function replicaRuns(local: Engine, threads: number): Promise<ReplicaRow[]> {
  const processes: ServiceProcess[] = [];
  const state = mkdtempSync(join(tmpdir(), 'bench-eval-replicas-'));
  try {
    for (let i = 0; i < REPLICAS; i++) {
      const port = await freePort();
      processes.push(
        startServiceProcess(
          { ...COMMON_ENV, MODEL_DIR, THREADS: String(threads), STATE_DIR: join(state, `replica-${i}`), DATA_DIR: join(state, 'data'), LOG_LEVEL: 'warn', REQUEST_TIMEOUT_MS: '600000' },
          port,
        ),
      );
    }
    await Promise.all(processes.map((p) => serviceReady(p, '/readyz', 180_000)));
    const coordinator = (n: number) =>
      engineFromConfig(
        loadConfig({
          ...process.env,
          ...COMMON_ENV,
          WARMUP: 'false',
          LOG_LEVEL: 'silent',
          REQUEST_TIMEOUT_MS: '600000',
          REMOTE_MAX_IN_FLIGHT: String(BATCH),
          REMOTE_MODELS: `replicas=${processes
            .slice(0, n)
            .map((p) => `${p.base}/v1#${basename(MODEL_DIR)}`)
            .join('|')}`,
        }),
      );
    // Untimed: every replica's first requests (JIT, first batches) on items of another seed.
    const warmItems = syntheticSplit('test', BATCH * REPLICAS, 2);
    const warm = coordinator(REPLICAS);
    try {
      const problems = await warm.checkRemotes();
      if (problems.length) throw new Error(problems.join('\n'));
      await ourRun(warm, BATCH, 'replicas', warmItems);
    } finally {
      await warm.dispose();
    }
    const rows: ReplicaRow[] = [];
    for (let n = 1; n <= REPLICAS; n++) {
      const localRun = await ourRun(local, BATCH);
      const engine = coordinator(n);
      try {
        rows.push({ replicas: n, ...(await ourRun(engine, BATCH, 'replicas')), local: localRun });
      } finally {
        await engine.dispose();
      }
    }
    return rows;
  } finally {
    await Promise.all(processes.map(stopServiceProcess));
    rmSync(state, { recursive: true, force: true });
  }
}

async function main() {
  const config = loadConfig({ ...process.env, ...COMMON_ENV, MODEL_DIR, LOG_LEVEL: 'silent' });
  const engine = engineFromConfig(config);
  try {
    await engine.warmup();
    // Render the images once so both engines pay the same (nothing) for them.
    const pngs = await Promise.all(items.map((i) => i.loadImages()));
    items.forEach((item, k) => (item.loadImages = async () => pngs[k]));
    const one = await ourRun(engine, 1);
    const batched = await ourRun(engine, BATCH);
    const tjs = args.includes('--no-transformersjs') ? NaN : await transformersJsLoop();
    const rate = (s: number) => (Number.isFinite(s) ? (ITEMS / s).toFixed(1) : '-');
    console.log(`\nEvaluation benchmark: spatial-synth test, ${ITEMS} items, template r1, ${TOKENS} new tokens max, model ${basename(MODEL_DIR)}, CPU threads ${config.threads}\n`);
    console.log('| loop | items/s | seconds | vs one-at-a-time |');
    console.log('|---|---|---|---|');
    console.log(`| ours, batched (${BATCH} in flight, continuous batching) | ${rate(batched.seconds)} | ${batched.seconds.toFixed(1)} | ${(one.seconds / batched.seconds).toFixed(2)}x |`);
    console.log(`| ours, one item at a time | ${rate(one.seconds)} | ${one.seconds.toFixed(1)} | 1.00x |`);
    console.log(`| transformers.js, one item at a time | ${rate(tjs)} | ${Number.isFinite(tjs) ? tjs.toFixed(1) : '-'} | ${Number.isFinite(tjs) ? (one.seconds / tjs).toFixed(2) + 'x' : '-'} |`);
    console.log(`\naccuracy batched ${batched.accuracy.toFixed(3)}, one-at-a-time ${one.accuracy.toFixed(3)} (greedy: equal)`);
    if (SAMPLES > 1) {
      const off = await samplesRun(false);
      const on = await samplesRun(true);
      const responses = ITEMS * SAMPLES;
      console.log(`\n${SAMPLES} sampled responses per item (temperature 1, seed 1), ${BATCH} in flight: the prompt and image caches off and on\n`);
      console.log('| caches | responses/s | seconds | vs caches off |');
      console.log('|---|---|---|---|');
      console.log(`| off (FEATURE_CACHE_MB, PROMPT_CACHE_MB, IMAGE_CACHE_MB = 0) | ${(responses / off.seconds).toFixed(1)} | ${off.seconds.toFixed(1)} | 1.00x |`);
      console.log(`| on (defaults) | ${(responses / on.seconds).toFixed(1)} | ${on.seconds.toFixed(1)} | ${(off.seconds / on.seconds).toFixed(2)}x |`);
      console.log(`\naccuracy (mean over responses): off ${off.accuracy.toFixed(3)}, on ${on.accuracy.toFixed(3)}`);
    }
    if (REPLICAS > 0) {
      const rows = await replicaRuns(engine, config.threads);
      console.log(
        `\nThrough replicas: the same ${ITEMS} items, ${BATCH} in flight, from a coordinating engine in this process to service processes on loopback` +
          ` (each: ${basename(MODEL_DIR)}, MAX_BATCH_SIZE ${BATCH}, THREADS ${config.threads}), each against a local batched run made just before it\n`,
      );
      console.log('| run | items/s | seconds | local batched just before: items/s | items/s vs local | coordinator overhead (time vs local) | accuracy (local) |');
      console.log('|---|---|---|---|---|---|---|');
      for (const row of rows) {
        const overhead = (row.seconds / row.local.seconds - 1) * 100;
        console.log(
          `| ${row.replicas} replica${row.replicas > 1 ? 's' : ''} | ${rate(row.seconds)} | ${row.seconds.toFixed(1)} | ${rate(row.local.seconds)} | ` +
            `${(row.local.seconds / row.seconds).toFixed(2)}x | ${overhead >= 0 ? '+' : ''}${overhead.toFixed(0)}% | ${row.accuracy.toFixed(3)} (${row.local.accuracy.toFixed(3)}) |`,
        );
      }
    }
  } finally {
    await engine.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
