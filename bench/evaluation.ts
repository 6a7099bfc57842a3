// Evaluation throughput on spatial-synth: our batched run (the engine's scheduler, many items in
// flight) against a one-item-at-a-time loop over the same engine and against a transformers.js
// loop, on the same items in the same run. Prints a markdown table (docs/performance.md).
//
//   npx tsx bench/evaluation.ts [--model models/tiny-random] [--items 64] [--tokens 32]
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

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const MODEL_DIR = resolve(flag('model', 'models/tiny-random'));
const ITEMS = Number(flag('items', '64'));
const TOKENS = Number(flag('tokens', '32'));
const BATCH = Number(flag('batch', '16'));

const items = syntheticSplit('test', ITEMS, 1);

async function ourRun(engine: Engine, concurrency: number): Promise<{ seconds: number; accuracy: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-eval-'));
  const db = openDatabase(dir);
  const runs = new EvalRuns(new RunStore(db), engine, async () => ({ benchmark: 'spatial-synth', split: 'test', items }), { concurrency });
  const params: EvaluateParams = { benchmark: 'spatial-synth', limit: ITEMS, template: 'r1', strategy: 'r1', maxNewTokens: TOKENS, model: basename(MODEL_DIR) };
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

async function main() {
  const config = loadConfig({ ...process.env, MODEL_DIR, MAX_BATCH_SIZE: String(BATCH), MAX_QUEUE: '1024', LOG_LEVEL: 'silent' });
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
  } finally {
    await engine.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
