// Evaluation runs: scoring through the engine, storage, resume after an interruption without
// re-scoring or losing items (or samples), several samples per item, response statistics, cancel,
// overload back-off, unusable items, and the migration to per-sample storage.
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EvalRuns, EvaluateParams, Generator } from '../../src/benchmarks/runs';
import { passAtK } from '../../src/benchmarks/scoring';
import { splitLoader } from '../../src/benchmarks/splits';
import { PredictionRow, RunStore } from '../../src/benchmarks/store';
import { Engine, GenerateResult } from '../../src/engine/engine';
import { EngineError } from '../../src/engine/errors';
import { hasReflection } from '../../src/engine/rewards';
import { Db, MIGRATIONS, openDatabase } from '../../src/storage/database';
import { writeCvBenchJsonl } from '../helpers/benchmark_fixtures';
import { testEngine } from '../helpers/service';

const PARAMS: EvaluateParams = { benchmark: 'spatial-synth', limit: 12, template: 'r1', strategy: 'r1', maxNewTokens: 6, model: 'tiny-random' };

describe('evaluation runs', () => {
  let engine: Engine;
  let dir: string;
  let db: Db;
  const runsWith = (generator: Generator = engine, concurrency = 4) =>
    new EvalRuns(new RunStore(db), generator, splitLoader(join(dir, 'data')), { concurrency });

  beforeAll(() => {
    engine = testEngine();
  });
  afterAll(() => engine.dispose());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'runs-'));
    db = openDatabase(join(dir, 'state'));
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a run scores every item through the engine and stores a labelled result', async () => {
    const runs = runsWith();
    const created = await runs.create(PARAMS);
    expect(created).toMatchObject({ status: 'queued', progress: { done: 0, total: 12 } });
    const run = await runs.wait(created.id);
    expect(run).toMatchObject({ status: 'succeeded', progress: { done: 12, total: 12 } });
    const stats = {
      completion_tokens: { mean: expect.any(Number), min: expect.any(Number), p25: expect.any(Number), p50: expect.any(Number), p75: expect.any(Number), p90: expect.any(Number), max: expect.any(Number) },
      reflection_rate: expect.any(Number),
      off_option_rate: expect.any(Number),
    };
    const taskScore = { n: 3, accuracy: expect.any(Number), format_rate: expect.any(Number), pass_at_k: { '1': expect.any(Number) }, majority_accuracy: expect.any(Number), stats };
    expect(run!.result).toEqual({
      n: 12,
      samples: 1,
      responses: 12,
      accuracy: expect.any(Number),
      format_rate: expect.any(Number),
      pass_at_k: { '1': expect.any(Number) },
      majority_accuracy: expect.any(Number),
      stats,
      by_task: { Count: taskScore, Depth: taskScore, Distance: taskScore, Relation: taskScore },
      official: { name: 'accuracy', score: expect.any(Number) },
      strategy: 'r1',
      template: 'r1',
    });
    const predictions = [...runs.predictions(created.id)];
    expect(predictions.map((p) => p.item_index)).toEqual([...Array(12).keys()]);
    expect(predictions[0]).toMatchObject({ item_id: 'spatial-synth/test/000000', sample: 0, gold: expect.stringMatching(/^[A-D]$/) });
    // The response statistics are those of the stored responses (tokens as the engine counted them).
    const result = run!.result as { accuracy: number; pass_at_k: Record<string, number>; stats: { completion_tokens: { mean: number; max: number }; reflection_rate: number } };
    const tokens = predictions.map((p) => p.completion_tokens as number);
    expect(tokens.every((t) => t >= 1 && t <= PARAMS.maxNewTokens)).toBe(true);
    expect(result.stats.completion_tokens.mean).toBeCloseTo(tokens.reduce((a, b) => a + b, 0) / 12, 12);
    expect(result.stats.completion_tokens.max).toBe(Math.max(...tokens));
    expect(result.stats.reflection_rate).toBe(predictions.filter((p) => hasReflection(p.prediction)).length / 12);
    // With one greedy response per item, pass@1 is the accuracy.
    expect(result.pass_at_k['1']).toBeCloseTo(result.accuracy, 12);
  });

  test('several samples per item: every response stored, pass@k and majority vote from them, reproducible by seed', async () => {
    const runs = runsWith();
    const params: EvaluateParams = { ...PARAMS, limit: 4, samples: 3, temperature: 1, seed: 7 };
    const created = await runs.create(params);
    expect(created.progress.total).toBe(12); // responses: 4 items x 3 samples
    const run = await runs.wait(created.id);
    expect(run).toMatchObject({ status: 'succeeded', progress: { done: 12, total: 12 }, result: { n: 4, samples: 3, responses: 12 } });
    const predictions = [...runs.predictions(created.id)];
    expect(predictions.map((p) => [p.item_index, p.sample])).toEqual([0, 1, 2, 3].flatMap((i) => [0, 1, 2].map((s) => [i, s])));
    const result = run!.result as { pass_at_k: Record<string, number>; majority_accuracy: number };
    expect(Object.keys(result.pass_at_k)).toEqual(['1', '2', '3']);
    let expected3 = 0;
    for (let i = 0; i < 4; i++) {
      const c = predictions.filter((p) => p.item_index === i && p.correct === 1).length;
      expected3 += passAtK(3, c, 3) / 4;
    }
    expect(result.pass_at_k['3']).toBeCloseTo(expected3, 12);
    expect(result.pass_at_k['1']).toBeLessThanOrEqual(result.pass_at_k['2']);
    expect(result.pass_at_k['2']).toBeLessThanOrEqual(result.pass_at_k['3']);
    // The same seed draws the same responses.
    const again = await runs.wait((await runs.create(params)).id);
    expect([...runs.predictions(again!.id)].map((p) => p.prediction)).toEqual(predictions.map((p) => p.prediction));
  });

  test('an interrupted multi-sample run resumes each sample exactly once and ends as the uninterrupted run', async () => {
    const params: EvaluateParams = { ...PARAMS, limit: 6, samples: 3, temperature: 1, seed: 11 };
    const first = runsWith(engine, 2);
    const { id } = await first.create(params);
    while ((first.get(id)?.progress.done ?? 0) < 5) await new Promise((r) => setTimeout(r, 5));
    await first.close();
    expect(first.get(id)!.progress.done).toBeLessThan(18);
    const before = [...first.predictions(id)];

    const second = runsWith(engine, 4);
    expect(second.resumeInterrupted()).toEqual([id]);
    const run = await second.wait(id);
    expect(run).toMatchObject({ status: 'succeeded', progress: { done: 18, total: 18 }, result: { n: 6, samples: 3, responses: 18 } });
    const after = [...second.predictions(id)];
    expect(new Set(after.map((p) => `${p.item_id}#${p.sample}`)).size).toBe(18);
    for (const p of before) expect(after.find((q) => q.item_id === p.item_id && q.sample === p.sample)).toEqual(p);
    // Per-response seeds make the resumed run's responses those of a run never interrupted.
    const whole = await second.wait((await second.create(params)).id);
    expect(after.map((p) => p.prediction)).toEqual([...second.predictions(whole!.id)].map((p) => p.prediction));
    expect(run!.result).toEqual(whole!.result);
  });

  test('an interrupted run resumes without re-scoring or losing items', async () => {
    const first = runsWith(engine, 2);
    const { id } = await first.create({ ...PARAMS, limit: 20 });
    // Stop as soon as a few items are stored, as a shutdown would.
    while ((first.get(id)?.progress.done ?? 0) < 5) await new Promise((r) => setTimeout(r, 5));
    await first.close();
    const stopped = first.get(id)!;
    expect(stopped.status).toBe('running');
    expect(stopped.progress.done).toBeLessThan(20);
    const before = [...first.predictions(id)];

    const second = runsWith(engine, 4); // a new process on the same database
    expect(second.resumeInterrupted()).toEqual([id]);
    const run = await second.wait(id);
    expect(run).toMatchObject({ status: 'succeeded', progress: { done: 20, total: 20 } });
    const after = [...second.predictions(id)];
    expect(new Set(after.map((p) => p.item_id)).size).toBe(20);
    // The items stored before the interruption are untouched.
    for (const p of before) expect(after.find((q) => q.item_id === p.item_id)).toEqual(p);
  });

  test('cancel stops a run and keeps its predictions; cancelling again is a conflict', async () => {
    const slow: Generator = {
      generateText: async (request) => {
        await new Promise((r) => setTimeout(r, 30));
        return engine.generateText(request);
      },
    };
    const runs = runsWith(slow, 1);
    const { id } = await runs.create({ ...PARAMS, limit: 50 });
    while ((runs.get(id)?.progress.done ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
    const cancelled = await runs.cancel(id);
    expect(cancelled?.status).toBe('cancelled');
    const kept = [...runs.predictions(id)].length;
    expect(kept).toBeGreaterThanOrEqual(2);
    expect(kept).toBeLessThan(50);
    await expect(runs.cancel(id)).rejects.toMatchObject({ status: 409 });
    expect(await runs.cancel('eval_nope')).toBeUndefined();
  });

  test('overload backs off and retries; unusable items count as unanswered', async () => {
    let calls = 0;
    const flaky: Generator = {
      generateText: async (request): Promise<GenerateResult> => {
        calls += 1;
        if (calls <= 2) throw new EngineError('overloaded', 'queue_full', 'busy', { retryAfterSeconds: 1 });
        if (calls === 3) throw new EngineError('unprocessable', 'invalid_image', 'broken image');
        return engine.generateText(request);
      },
    };
    const runs = runsWith(flaky, 1);
    const run = await runs.wait((await runs.create({ ...PARAMS, limit: 3 })).id);
    expect(run).toMatchObject({ status: 'succeeded', progress: { done: 3, total: 3 } });
    const first = [...runs.predictions(run!.id)][0];
    expect(first).toMatchObject({ prediction: '', extracted: null, correct: 0 });
  });

  test('a model error fails the run with its message', async () => {
    const broken: Generator = { generateText: async () => { throw new EngineError('model_error', 'inference_failed', 'the decoder crashed'); } };
    const runs = runsWith(broken, 1);
    const run = await runs.wait((await runs.create(PARAMS)).id);
    expect(run).toMatchObject({ status: 'failed', error: 'the decoder crashed' });
  });

  test('uploaded predictions for CV-Bench: pass@k, majority vote with its tie rule, the official score and the statistics, by hand', async () => {
    await writeCvBenchJsonl(join(dir, 'data'));
    const runs = runsWith();
    // [item, [response of sample 0, response of sample 1]]; gold: 2d/0 C (text "1"), 2d/1 B, 2d/2 A, 3d/3 A, 3d/4 B.
    const responses: [string, string[]][] = [
      ['cv-bench/test_2d/0', ['I count.</think> <answer>C</answer>', '<answer>1</answer>']], // both option C: correct; format ok once
      ['cv-bench/test_2d/1', ['Wait, <answer>left</answer>', '<answer>right</answer>']], // A then B: a tie, the first (wrong) wins
      ['cv-bench/test_2d/2', ['<answer>maybe seven</answer>', '<answer>(a)</answer>']], // off the options, then correct: tie, wrong
      ['cv-bench/test_3d/3', ['', '<answer>lamp</answer>']], // nothing extracted (no vote), then correct: majority correct
      ['cv-bench/test_3d/4', ['<answer>A</answer>', '<answer>A</answer>']], // wrong twice
    ];
    const uploaded = responses.flatMap(([id, texts], i) => texts.map((prediction, sample) => ({ line: 2 * i + sample + 1, id, sample, prediction, completionTokens: 10 * (2 * i + sample) })));
    const run = await runs.importPredictions({ origin: 'uploaded', benchmark: 'cv-bench', template: 'r1', strategy: 'r1', model: 'elsewhere' }, uploaded);
    expect(run).toMatchObject({ status: 'succeeded', split: 'test', progress: { done: 10, total: 10 } });
    const result = run.result as Record<string, unknown>;
    expect(result).toMatchObject({
      n: 5,
      samples: 2,
      responses: 10,
      accuracy: 0.5,
      format_rate: 0.1,
      pass_at_k: { '1': 0.5, '2': 0.8 },
      majority_accuracy: 0.4,
      // ((acc_ADE20K + acc_COCO)/2 + acc_Omni3D)/2 over responses: ((2/2 + 2/4)/2 + 1/4)/2
      official: { score: 0.5 },
      stats: { completion_tokens: { mean: 45, min: 0, p50: 45, max: 90 }, reflection_rate: 0.1, off_option_rate: 0.2 },
    });
    expect((result.by_task as Record<string, unknown>).Count).toMatchObject({ n: 2, accuracy: 0.75, pass_at_k: { '1': 0.75, '2': 1 }, majority_accuracy: 0.5, stats: { off_option_rate: 0.25 } });
    expect((result.by_task as Record<string, unknown>).Relation).toMatchObject({ n: 1, accuracy: 0.5, pass_at_k: { '2': 1 }, majority_accuracy: 0 });
    expect([...runs.predictions(run.id)].map((p) => p.extracted)).toEqual(['C', '1', 'left', 'right', 'maybe seven', '(a)', '', 'lamp', 'A', 'A']);
  });

  test('a run from predictions is stored whole or not at all', () => {
    const store = new RunStore(db);
    const prediction = {
      item_index: 0, item_id: 'spatial-synth/test/000000', sample: 0, task: 'Count', source: 'spatial-synth', gold: 'A', gold_text: '1',
      prediction: 'A', extracted: 'A', correct: 1, format_ok: 0, completion_tokens: null,
    };
    const run = { id: 'eval_upload', benchmark: 'spatial-synth', split: 'test', model: 'elsewhere', template: 'r1', strategy: 'r1', params: '{}', total: 2 };
    // The second row repeats the first: the run row already inserted in the transaction is rolled back.
    expect(() => store.insertFinishedRun(run, [prediction, prediction], {})).toThrow(/duplicate prediction/);
    expect(store.getRun('eval_upload')).toBeUndefined();
    expect(store.predictions('eval_upload')).toEqual([]);
    const stored = store.insertFinishedRun(run, [prediction, { ...prediction, sample: 1 }], { n: 1 });
    expect(stored).toMatchObject({ status: 'succeeded', done: 2, total: 2, result: '{"n":1}' });
    expect(store.predictions('eval_upload').map((p) => [p.sample, p.completion_tokens])).toEqual([[0, null], [1, null]]);
  });

  test('missing benchmark data is refused at creation with where to put which files', async () => {
    const runs = runsWith();
    await expect(runs.create({ ...PARAMS, benchmark: 'cv-bench' })).rejects.toMatchObject({ status: 404, message: expect.stringMatching(/test_2d\.parquet/) });
    await expect(runs.create({ ...PARAMS, split: 'train' })).rejects.toMatchObject({ status: 404, message: expect.stringMatching(/npm run synth/) });
    await expect(runs.create({ ...PARAMS, split: 'dev' })).rejects.toMatchObject({ status: 400 });
    expect(runs.list()).toEqual([]);
  });
});

describe('the samples migration', () => {
  test('a database written before samples keeps its runs and predictions, each as sample 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runs-migrate-'));
    try {
      const old = new Database(join(dir, 'service.db'));
      old.exec(MIGRATIONS[0]);
      old.exec(MIGRATIONS[1]);
      old.pragma('user_version = 2');
      old.prepare(`INSERT INTO eval_runs (id, benchmark, split, model, template, strategy, params, status, total, done, created_at)
                   VALUES ('eval_old', 'spatial-synth', 'test', 'tiny-random', 'r1', 'r1', '{}', 'succeeded', 1, 1, 't')`).run();
      old.prepare(`INSERT INTO eval_predictions (run_id, item_index, item_id, task, source, gold, gold_text, prediction, extracted, correct, format_ok, completion_tokens, created_at)
                   VALUES ('eval_old', 0, 'spatial-synth/test/000000', 'Count', 'spatial-synth', 'B', '3', '<answer>B</answer>', 'B', 1, 0, 5, 't')`).run();
      old.close();
      const db = openDatabase(dir);
      try {
        expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
        const store = new RunStore(db);
        expect(store.predictions('eval_old')).toEqual([
          expect.objectContaining({ item_id: 'spatial-synth/test/000000', sample: 0, prediction: '<answer>B</answer>', correct: 1, completion_tokens: 5 }),
        ]);
        expect(store.getRun('eval_old')).toMatchObject({ status: 'succeeded', done: 1 });
        // The new key: another sample of the same item is a new row, the same sample a duplicate.
        const row = { ...store.predictions('eval_old')[0], sample: 1 } as Partial<PredictionRow>;
        delete row.created_at;
        expect(store.addPrediction(row as Omit<PredictionRow, 'created_at'>)).toBe(true);
        expect(store.addPrediction(row as Omit<PredictionRow, 'created_at'>)).toBe(false);
        expect(store.getRun('eval_old')!.done).toBe(2);
      } finally {
        db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
