// Evaluation runs: scoring through the engine, storage, resume after an interruption without
// re-scoring or losing items, cancel, overload back-off, unusable items.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EvalRuns, EvaluateParams, Generator } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { RunStore } from '../../src/benchmarks/store';
import { Engine, GenerateResult } from '../../src/engine/engine';
import { EngineError } from '../../src/engine/errors';
import { Db, openDatabase } from '../../src/storage/database';
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
    expect(run!.result).toEqual({
      n: 12,
      accuracy: expect.any(Number),
      format_rate: expect.any(Number),
      by_task: { Count: { n: 3, accuracy: expect.any(Number) }, Depth: expect.any(Object), Distance: expect.any(Object), Relation: expect.any(Object) },
      official: { name: 'accuracy', score: expect.any(Number) },
      strategy: 'r1',
      template: 'r1',
    });
    const predictions = [...runs.predictions(created.id)];
    expect(predictions.map((p) => p.item_index)).toEqual([...Array(12).keys()]);
    expect(predictions[0]).toMatchObject({ item_id: 'spatial-synth/test/000000', gold: expect.stringMatching(/^[A-D]$/) });
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
    await expect(runs.cancel(id)).rejects.toMatchObject({ kind: 'conflict' });
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

  test('missing benchmark data is refused at creation with where to put which files', async () => {
    const runs = runsWith();
    await expect(runs.create({ ...PARAMS, benchmark: 'cv-bench' })).rejects.toMatchObject({ kind: 'not_found', message: expect.stringMatching(/test_2d\.parquet/) });
    await expect(runs.create({ ...PARAMS, split: 'train' })).rejects.toMatchObject({ kind: 'not_found', message: expect.stringMatching(/npm run synth/) });
    await expect(runs.create({ ...PARAMS, split: 'dev' })).rejects.toMatchObject({ kind: 'invalid_input' });
    expect(runs.list()).toEqual([]);
  });
});
