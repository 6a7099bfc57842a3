// POST /evaluate and friends over HTTP (api.md): 202 + Location, ?wait=true, status, predictions
// as JSON lines, cancel, and 4xx for bad requests and missing benchmark data.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { EvalRuns } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { RunStore } from '../../src/benchmarks/store';
import { Engine } from '../../src/engine/engine';
import { createApp } from '../../src/server/app';
import { Db, openDatabase } from '../../src/storage/database';
import { engineFor, testConfig } from '../helpers/service';

describe('evaluation API', () => {
  let dir: string;
  let db: Db;
  let engine: Engine;
  let runs: EvalRuns;
  let app: ReturnType<typeof createApp>['app'];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'eval-api-'));
    const config = testConfig({ DATA_DIR: join(dir, 'data'), STATE_DIR: join(dir, 'state') });
    engine = engineFor(config);
    db = openDatabase(config.stateDir);
    runs = new EvalRuns(new RunStore(db), engine, splitLoader(config.dataDir), { concurrency: 8 });
    ({ app } = createApp({ config, engine, runs, state: { draining: false, warmed: true } }));
  });
  afterAll(async () => {
    await runs.close();
    await engine.dispose();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('202 with Location, then the run finishes with a labelled result', async () => {
    const res = await request(app).post('/evaluate').send({ benchmark: 'spatial-synth', limit: 8, max_new_tokens: 4 }).expect(202);
    expect(res.body).toEqual({ id: expect.stringMatching(/^eval_/), status: 'queued' });
    expect(res.headers.location).toBe(`/evaluate/${res.body.id}`);
    await runs.wait(res.body.id);
    const run = await request(app).get(res.headers.location).expect(200);
    expect(run.body).toMatchObject({
      id: res.body.id,
      benchmark: 'spatial-synth',
      status: 'succeeded',
      progress: { done: 8, total: 8 },
      result: { n: 8, accuracy: expect.any(Number), format_rate: expect.any(Number), by_task: expect.any(Object), official: { name: 'accuracy' }, strategy: 'r1', template: 'r1' },
    });
    const lines = (await request(app).get(`/evaluate/${res.body.id}/predictions`).expect(200)).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(8);
    expect(lines[0]).toEqual({
      id: 'spatial-synth/test/000000', task: 'Count', source: 'spatial-synth', gold: expect.any(String), gold_text: expect.any(String),
      prediction: expect.any(String), extracted: expect.anything(), correct: expect.any(Boolean), format_ok: expect.any(Boolean),
    });
    await request(app).post(`/evaluate/${res.body.id}/cancel`).expect(409);
    const list = await request(app).get('/evaluate').expect(200);
    expect(list.body.data.map((r: { id: string }) => r.id)).toContain(res.body.id);
  });

  test('?wait=true answers with the finished run; strict extraction and another template are labelled', async () => {
    const res = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 4, strategy: 'strict', template: 'direct', max_new_tokens: 3 }).expect(200);
    expect(res.body.status).toBe('succeeded');
    expect(res.body.result).toMatchObject({ strategy: 'strict', template: 'direct', n: 4 });
  });

  test.each([
    ['an unknown benchmark', { benchmark: 'mmlu' }, 400],
    ['an unknown field', { benchmark: 'spatial-synth', limt: 3 }, 400],
    ['a bad limit', { benchmark: 'spatial-synth', limit: 0 }, 400],
    ['a split name with a path in it', { benchmark: 'spatial-synth', split: '../etc' }, 400],
    ['an unknown model', { benchmark: 'spatial-synth', model: 'nope' }, 404],
    ['a benchmark whose data is missing', { benchmark: 'cv-bench' }, 404],
    ['BLINK test (hidden answers)', { benchmark: 'blink', split: 'test' }, 400],
  ])('%s is refused', async (_name, body, status) => {
    const res = await request(app).post('/evaluate').send(body);
    expect(res.status).toBe(status);
    expect(res.body.error).toEqual({ code: expect.any(String), message: expect.any(String) });
  });

  test('the missing-data message says which files to place where', async () => {
    const res = await request(app).post('/evaluate').send({ benchmark: 'cv-bench' }).expect(404);
    expect(res.body.error.code).toBe('benchmark_data_missing');
    expect(res.body.error.message).toContain(join(dir, 'data', 'cv-bench'));
    expect(res.body.error.message).toMatch(/test_2d\.parquet/);
  });

  test('unknown runs are 404', async () => {
    await request(app).get('/evaluate/eval_missing').expect(404);
    await request(app).get('/evaluate/eval_missing/predictions').expect(404);
    await request(app).post('/evaluate/eval_missing/cancel').expect(404);
  });

  test('scored items are counted in the metrics', async () => {
    const metrics = await request(app).get('/metrics');
    expect(metrics.text).toMatch(/vlm_eval_items_total\{benchmark="spatial-synth"\} \d+/);
  });
});
