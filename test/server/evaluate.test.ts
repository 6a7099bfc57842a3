// POST /evaluate and friends over HTTP (docs/api.md, "Evaluation"): 202 + Location, ?wait=true, status, predictions
// as JSON lines, cancel, and 4xx for bad requests and missing benchmark data.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import request from 'supertest';
import { EvalRuns } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { generateItems, writeDataset } from '../../src/benchmarks/spatial_synth';
import { RunStore } from '../../src/benchmarks/store';
import { main as evaluateMain } from '../../src/cli/evaluate';
import { Engine } from '../../src/engine/engine';
import { createApp } from '../../src/server/app';
import { MAX_PREDICTIONS_BYTES } from '../../src/server/routes/evaluate';
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
      id: 'spatial-synth/test/000000', sample: 0, completion_tokens: expect.any(Number), task: 'Count', source: 'spatial-synth', gold: expect.any(String), gold_text: expect.any(String),
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

  test('several samples per item: pass@k, majority vote and statistics in the result, every response in the predictions', async () => {
    const res = await request(app)
      .post('/evaluate?wait=true')
      .send({ benchmark: 'spatial-synth', limit: 3, samples: 4, temperature: 1, top_p: 0.9, seed: 5, max_new_tokens: 4 })
      .expect(200);
    expect(res.body).toMatchObject({
      status: 'succeeded',
      progress: { done: 12, total: 12 },
      params: { samples: 4, temperature: 1, topP: 0.9, seed: 5 },
      result: { n: 3, samples: 4, responses: 12, majority_accuracy: expect.any(Number), stats: { reflection_rate: expect.any(Number), off_option_rate: expect.any(Number) } },
    });
    expect(Object.keys(res.body.result.pass_at_k)).toEqual(['1', '2', '4']);
    expect(res.body.result.by_task.Count).toMatchObject({ n: 1, pass_at_k: { '4': expect.any(Number) }, stats: { completion_tokens: { mean: expect.any(Number) } } });
    const lines = (await request(app).get(`/evaluate/${res.body.id}/predictions`).expect(200)).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.id, l.sample])).toEqual([0, 1, 2].flatMap((i) => [0, 1, 2, 3].map((s) => [`spatial-synth/test/00000${i}`, s])));
    expect(lines.every((l) => Number.isInteger(l.completion_tokens) && l.completion_tokens <= 4)).toBe(true);
  });

  test.each([
    ['samples above 1 without a temperature', { samples: 2 }, /^samples: above 1 needs a temperature/],
    ['samples above 1 at temperature 0', { samples: 2, temperature: 0 }, /^samples: /],
    ['no samples', { samples: 0 }, /^samples: /],
    ['too many samples', { samples: 257, temperature: 1 }, /^samples: /],
    ['top_p 0', { top_p: 0 }, /^top_p: /],
    ['a negative seed', { seed: -1 }, /^seed: /],
    ['a temperature over 100', { temperature: 101 }, /^temperature: /],
  ])('%s is a 400 naming the field', async (_name, fields, message) => {
    const res = await request(app).post('/evaluate').send({ benchmark: 'spatial-synth', limit: 2, ...fields }).expect(400);
    expect(res.body.error).toEqual({ code: 'invalid_request', message: expect.stringMatching(message) });
  });

  describe('runs scored from uploaded predictions', () => {
    const upload = (query: string, body: string, type = 'application/x-ndjson') => request(app).post(`/evaluate/predictions?${query}`).set('Content-Type', type).send(body);
    let source: { id: string; result: unknown };
    let exported: string;

    beforeAll(async () => {
      source = (await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 4, samples: 2, temperature: 1, seed: 9, max_new_tokens: 5 }).expect(200)).body;
      exported = (await request(app).get(`/evaluate/${source.id}/predictions`).expect(200)).text;
    });

    test('re-uploading a run\'s predictions gives the same result and the same predictions, in any line order', async () => {
      const res = await upload('benchmark=spatial-synth&limit=4&model=elsewhere', exported).expect(201);
      expect(res.headers.location).toBe(`/evaluate/${res.body.id}`);
      expect(res.body).toMatchObject({ status: 'succeeded', model: 'elsewhere', progress: { done: 8, total: 8 }, params: { origin: 'uploaded', samples: 2 } });
      expect(res.body.result).toEqual(source.result);
      const lines = (await request(app).get(`/evaluate/${res.body.id}/predictions`).expect(200)).text;
      expect(lines).toBe(exported);
      // Listed and browsable like any other run.
      expect((await request(app).get('/evaluate').expect(200)).body.data.map((r: { id: string }) => r.id)).toContain(res.body.id);
      await request(app).get(`/evaluate/${res.body.id}/items/${encodeURIComponent('spatial-synth/test/000002')}`).expect(200);
      const shuffled = exported.trim().split('\n').reverse().join('\r\n');
      expect((await upload('benchmark=spatial-synth&limit=4', shuffled).expect(201)).body.result).toEqual(source.result);
    });

    test('one response per item needs only id and prediction; another strategy and template are applied', async () => {
      const ids = [0, 1].map((i) => `spatial-synth/test/00000${i}`);
      const body = `{"id": "${ids[0]}", "prediction": "thinking</think> <answer>A</answer>"}\n{"id": "${ids[1]}", "prediction": "B"}\n`;
      const res = await upload('benchmark=spatial-synth&limit=2&strategy=strict&template=r1', body).expect(201);
      expect(res.body.result).toMatchObject({ n: 2, samples: 1, format_rate: 0.5, strategy: 'strict', template: 'r1' });
      expect(res.body.result.stats.completion_tokens).toBeNull();
      const lines = (await request(app).get(`/evaluate/${res.body.id}/predictions`).expect(200)).text.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.map((l) => l.extracted)).toEqual(['A', null]);
    });

    const runCount = async () => (await request(app).get('/evaluate').expect(200)).body.data.length;
    const item = (i: number, sample?: number, text = '<answer>A</answer>') => JSON.stringify({ id: `spatial-synth/test/00000${i}`, prediction: text, ...(sample === undefined ? {} : { sample }) });

    test.each([
      ['an unknown item', [item(0), JSON.stringify({ id: 'spatial-synth/test/999999', prediction: 'A' }), item(1)].join('\n'), 400, 'prediction_unknown_item', /^line 2: item "spatial-synth\/test\/999999" is not in spatial-synth test as selected/],
      ['a repeated item', [item(0), item(1), item(0)].join('\n'), 400, 'prediction_duplicate', /^line 3: .*sample 0 was already given on line 1/],
      ['a repeated sample', [item(0, 0), item(0, 1), item(1, 0), item(1, 1), item(0, 1)].join('\n'), 400, 'prediction_duplicate', /^line 5: /],
      ['a missing item', item(0), 400, 'predictions_incomplete', /^item "spatial-synth\/test\/000001" has no response for sample 0/],
      ['a missing sample', [item(0, 0), item(0, 1), item(1, 0)].join('\n'), 400, 'predictions_incomplete', /^item "spatial-synth\/test\/000001" has no response for sample 1/],
      ['a line that is not JSON', `${item(0)}\n{"id": oops\n${item(1)}`, 400, 'invalid_predictions', /^line 2: not valid JSON/],
      ['a line without a prediction', `${item(0)}\n${JSON.stringify({ id: 'spatial-synth/test/000001' })}`, 400, 'invalid_predictions', /^line 2: "prediction" must be/],
      ['a bad sample number', `${item(0, -1)}\n${item(1)}`, 400, 'invalid_predictions', /^line 1: "sample" must be an integer/],
      ['an over-long prediction', `${item(0)}\n${item(1, 0, 'x'.repeat(200_001))}`, 413, 'prediction_too_long', /^line 2: the prediction has 200001 characters/],
      ['nothing', '\n\n', 400, 'predictions_empty', /no predictions/],
    ])('%s is refused naming where, and nothing is stored', async (_name, body, status, code, message) => {
      const before = await runCount();
      const res = await upload('benchmark=spatial-synth&limit=2', body).expect(status);
      expect(res.body.error).toEqual({ code, message: expect.stringMatching(message) });
      expect(await runCount()).toBe(before);
    });

    test('bad settings, another content type and an oversized upload are refused', async () => {
      const before = await runCount();
      const body = `${item(0)}\n${item(1)}`;
      expect((await upload('benchmark=mmlu', body).expect(400)).body.error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^benchmark: /) });
      expect((await upload('benchmark=spatial-synth&limt=2', body).expect(400)).body.error.code).toBe('invalid_request');
      expect((await upload('benchmark=spatial-synth&limit=zero', body).expect(400)).body.error.message).toMatch(/^limit: /);
      expect((await upload('benchmark=vsr&level=easy', body).expect(400)).body.error.message).toMatch(/^level: applies to spatial-synth only/);
      expect((await upload('benchmark=cv-bench', body).expect(404)).body.error.code).toBe('benchmark_data_missing');
      expect((await upload('benchmark=spatial-synth&limit=2', body, 'text/csv').expect(415)).body.error.code).toBe('unsupported_content_type');
      const huge = `${item(0)}\n${' '.repeat(MAX_PREDICTIONS_BYTES)}`;
      expect((await upload('benchmark=spatial-synth&limit=2', huge).expect(413)).body.error.code).toBe('predictions_too_large');
      expect(await runCount()).toBe(before);
    });
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

  test('spatial-synth levels: easy is generated at its level, stored with the run and shown in its result and listing', async () => {
    const easy = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', level: 'easy', limit: 4, max_new_tokens: 3 }).expect(200);
    expect(easy.body).toMatchObject({ status: 'succeeded', params: { level: 'easy' }, result: { n: 4, level: 'easy' } });
    const item = await request(app).get(`/evaluate/${easy.body.id}/items/${encodeURIComponent('spatial-synth/test/000001')}`).expect(200);
    const expected = generateItems('test', 2, 1, { level: 'easy' })[1].record;
    expect(item.body).toMatchObject({ id: expected.id, question: expected.question, choices: expected.choices, answer: expected.answer });
    const png = await request(app).get(item.body.images[0]).buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    }).expect(200);
    expect(await sharp(png.body as Buffer).metadata()).toMatchObject({ width: 168, height: 168 });
    // Without a level, a spatial-synth run is the standard level, and says so.
    const standard = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 2, max_new_tokens: 3 }).expect(200);
    expect(standard.body).toMatchObject({ params: { level: 'standard' }, result: { level: 'standard' } });
    const list = (await request(app).get('/evaluate').expect(200)).body.data as { id: string; params: { level?: string } }[];
    expect(list.find((r) => r.id === easy.body.id)?.params.level).toBe('easy');
    expect(list.find((r) => r.id === standard.body.id)?.params.level).toBe('standard');
  });

  test.each([
    ['an unknown level', { benchmark: 'spatial-synth', level: 'hard' }, /^level: /],
    ['a level with another benchmark', { benchmark: 'cv-bench', level: 'easy' }, /^level: applies to spatial-synth only/],
    ['a level of the wrong type', { benchmark: 'spatial-synth', level: 1 }, /^level: /],
  ])('%s is a 400 naming the field', async (_name, body, message) => {
    const res = await request(app).post('/evaluate').send(body).expect(400);
    expect(res.body.error).toEqual({ code: 'invalid_request', message: expect.stringMatching(message) });
  });
});

describe('spatial-synth levels in the split loader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eval-levels-'));
    // A folder written at the easy level: its test split is read for level easy only.
    await writeDataset(join(dir, 'spatial-synth'), { train: 0, val: 0, test: 3, seed: 1, level: 'easy', size: 96 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const params = { benchmark: 'spatial-synth' as const, template: 'r1' as const, strategy: 'r1' as const, maxNewTokens: 4, model: 'tiny-random' };

  test('a folder is read at its own level; another level is generated in memory; train must be written', async () => {
    const load = splitLoader(dir);
    const fromFolder = await load({ ...params, level: 'easy' });
    expect(fromFolder.items.map((i) => i.record)).toEqual(generateItems('test', 3, 1, { level: 'easy', size: 96 }).map((i) => i.record));
    const standard = await load({ ...params, limit: 3 });
    expect(standard.items.map((i) => i.record)).toEqual(generateItems('test', 3, 1).map((i) => i.record));
    const generated = await load({ ...params, level: 'easy', split: 'val', limit: 2 });
    expect(generated.items.map((i) => i.record.meta)).toEqual(generateItems('val', 2, 1, { level: 'easy' }).map((i) => i.record.meta));
    await expect(load({ ...params, level: 'easy', split: 'train' })).rejects.toMatchObject({ code: 'benchmark_data_missing', message: expect.stringContaining('--level easy') });
    await expect(load({ ...params, benchmark: 'vsr', level: 'easy' })).rejects.toMatchObject({ status: 400, code: 'level_unsupported' });
  });
});

/**
 * Runs the enclosing describe's CLI calls in a temporary DATA_DIR and STATE_DIR on the tiny model,
 * restoring the environment afterwards; the folder is read through the returned function.
 */
function cliEnvironment(prefix: string): () => string {
  let dir = '';
  const saved = { ...process.env };
  const values = () => ({ DATA_DIR: join(dir, 'data'), STATE_DIR: join(dir, 'state'), DEFAULT_MODEL: 'tiny-random', THREADS: '1', MAX_BATCH_SIZE: '8' });
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    Object.assign(process.env, values());
  });
  afterAll(() => {
    for (const key of Object.keys(values())) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return () => dir;
}

/** console.log and console.error lines, and stderr silenced, until restore(). */
function captureConsole(): { out: string[]; err: string[]; restore: () => void } {
  const out: string[] = [];
  const err: string[] = [];
  const spies = [
    jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' '))),
    jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' '))),
    jest.spyOn(process.stderr, 'write').mockImplementation(() => true),
  ];
  return { out, err, restore: () => spies.forEach((spy) => spy.mockRestore()) };
}

describe('npm run evaluate --level', () => {
  const cliDir = cliEnvironment('eval-cli-');

  test('evaluates the easy level and labels the table; bad levels exit 2 naming the flag', async () => {
    const dir = cliDir();
    const { out, err, restore } = captureConsole();
    try {
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--level', 'easy', '--limit', '4', '--max-new-tokens', '3'])).toBe(0);
      expect(out.join('\n')).toMatch(/^spatial-synth test, level easy, model tiny-random/m);
      const db = openDatabase(join(dir, 'state'));
      try {
        const stored = new RunStore(db).listRuns().map((r) => JSON.parse(r.params) as { level?: string });
        expect(stored).toEqual([expect.objectContaining({ level: 'easy', limit: 4 })]);
      } finally {
        db.close();
      }
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--level', 'hard'])).toBe(2);
      expect(err.join('\n')).toMatch(/--level must be standard or easy/);
      expect(await evaluateMain(['--benchmark', 'vsr', '--level', 'easy'])).toBe(2);
      expect(err.join('\n')).toMatch(/--level applies to --benchmark spatial-synth only/);
    } finally {
      restore();
    }
  });
});

describe('npm run evaluate --samples and --predictions', () => {
  const cliDir = cliEnvironment('eval-cli-samples-');

  test('samples give pass@k and majority columns; the same responses given as --predictions score the same', async () => {
    const dir = cliDir();
    const { out, err, restore } = captureConsole();
    try {
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--limit', '3', '--samples', '2', '--temperature', '1', '--seed', '4', '--max-new-tokens', '3'])).toBe(0);
      expect(out.join('\n')).toMatch(/2 samples per item/);
      expect(out.join('\n')).toMatch(/^\| task \| n \| accuracy \| pass@1 \| pass@2 \| majority@2 \| format \| tokens mean \/ p50 \/ p90 \| reflection \| off-option \|$/m);
      const db = openDatabase(join(dir, 'state'));
      let generated;
      try {
        const store = new RunStore(db);
        generated = store.listRuns()[0];
        const lines = store.predictions(generated.id).map((p) => JSON.stringify({ id: p.item_id, sample: p.sample, prediction: p.prediction, completion_tokens: p.completion_tokens }));
        expect(lines).toHaveLength(6);
        writeFileSync(join(dir, 'answers.jsonl'), `${lines.join('\n')}\n`);
      } finally {
        db.close();
      }
      out.length = 0;
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--limit', '3', '--predictions', join(dir, 'answers.jsonl'), '--model', 'elsewhere'])).toBe(0);
      expect(out.join('\n')).toMatch(/model elsewhere, uploaded predictions/);
      const check = openDatabase(join(dir, 'state'));
      try {
        const uploaded = new RunStore(check).listRuns().find((r) => r.model === 'elsewhere')!;
        expect(JSON.parse(uploaded.result!)).toEqual(JSON.parse(generated.result!));
      } finally {
        check.close();
      }
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--samples', '2'])).toBe(2);
      expect(err.join('\n')).toMatch(/--samples above 1 needs --temperature above 0/);
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--predictions', join(dir, 'answers.jsonl'), '--samples', '2', '--temperature', '1'])).toBe(2);
      expect(err.join('\n')).toMatch(/--predictions scores given responses/);
      // An upload that misses items fails with the line's or item's message, and stores nothing.
      writeFileSync(join(dir, 'partial.jsonl'), '{"id": "spatial-synth/test/000000", "prediction": "A"}\n');
      expect(await evaluateMain(['--benchmark', 'spatial-synth', '--limit', '3', '--predictions', join(dir, 'partial.jsonl')])).toBe(1);
      expect(err.join('\n')).toMatch(/item "spatial-synth\/test\/000001" has no response for sample 0/);
    } finally {
      restore();
    }
  });
});
