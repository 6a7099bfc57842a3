// The admin routes over HTTP (docs/api.md, "Admin: training jobs and models") with the fake trainer: the token
// (503 without one configured, 401, never logged), job creation and validation, status, list,
// per-step events as SSE and JSON lines, cancel, model loading, and the Prometheus gauges.
import { join } from 'node:path';
import request from 'supertest';
import { Engine } from '../../src/engine/engine';
import { createApp } from '../../src/server/app';
import { JobManager } from '../../src/training/manager';
import { capturingLogger, startTestService, TestService } from '../helpers/app';
import { testConfig } from '../helpers/service';
import { MODELS_ROOT, readJson, TrainingFixture } from '../helpers/training';

const TOKEN = 'test-admin-token-5f1d2c';
const WRONG = 'wrong-token-9a8b7c';
const auth = { Authorization: `Bearer ${TOKEN}` };

const METRIC_FIELDS = [
  'step', 'reward', 'reward_std', 'rewards/accuracy', 'rewards/format', 'completion_length', 'kl', 'loss',
  'learning_rate', 'reflection_rate', 'seconds', 'grad_norm', 'total_steps', 'rollout_tokens_per_second',
  'answer_top_share',
];

/** Server-sent events of a whole response body. */
function parseSse(text: string): { event: string; data: Record<string, unknown> }[] {
  return text
    .split('\n\n')
    .filter((block) => block.includes('data:'))
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      return { event, data: JSON.parse(data) };
    });
}

describe('admin API', () => {
  let service: TestService<undefined>;
  let fx: TrainingFixture;
  let engine: Engine;
  let jobs: JobManager;
  let app: TestService['app'];
  const logs: string[] = [];
  const savedToken = process.env.ADMIN_TOKEN;

  beforeAll(async () => {
    // The service's own environment holds the token: the trainer must not inherit it.
    process.env.ADMIN_TOKEN = TOKEN;
    const logger = capturingLogger('trace', logs);
    service = await startTestService({
      adminToken: TOKEN,
      env: { LOG_LEVEL: 'trace' },
      logger,
      jobs: ({ config, engine }) => ({
        fake: { FAKE_STEP_MS: '40', FAKE_EXPORT_FROM: join(MODELS_ROOT, 'tiny-random') },
        modelRoots: config.modelRoots,
        listModels: () => engine.listModels(),
        maxConcurrent: 4,
      }),
      runs: false,
      recover: true,
    });
    ({ fx, engine, jobs, app } = service);
  });
  afterAll(async () => {
    await service.dispose();
    if (savedToken === undefined) delete process.env.ADMIN_TOKEN;
    else process.env.ADMIN_TOKEN = savedToken;
  });

  describe('authentication', () => {
    test('without ADMIN_TOKEN configured every admin route is 503 admin_disabled, whatever the request carries', async () => {
      const off = createApp({ config: testConfig({ STATE_DIR: fx.stateDir }), engine, jobs, state: { draining: false, warmed: true } });
      try {
        for (const req of [request(off.app).get('/admin/train'), request(off.app).get('/admin/train').set(auth), request(off.app).post('/admin/models/tiny-random/load').set(auth)]) {
          const res = await req;
          expect(res.status).toBe(503);
          expect(res.body).toEqual({ error: { code: 'admin_disabled', message: expect.stringContaining('ADMIN_TOKEN') } });
        }
      } finally {
        off.dispose();
      }
    });

    test.each([
      ['no Authorization header', {}],
      ['a wrong token', { Authorization: `Bearer ${WRONG}` }],
      ['another scheme', { Authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
      ['a prefix of the token', { Authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ])('%s is 401 with WWW-Authenticate: Bearer', async (_name, headers) => {
      for (const path of ['/admin/train', '/admin/train/train_missing', '/admin/nothing-here']) {
        const res = await request(app).get(path).set(headers);
        expect(res.status).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.body.error.code).toBe('unauthorized');
      }
      const post = await request(app).post('/admin/train').set(headers).send({});
      expect(post.status).toBe(401);
    });

    test('the right token is accepted (any case of "Bearer")', async () => {
      await request(app).get('/admin/train').set(auth).expect(200);
      await request(app).get('/admin/train').set({ Authorization: `bearer ${TOKEN}` }).expect(200);
    });
  });

  test('a job: 202 + Location, status with progress, metrics, checkpoints and model; list; events as SSE and JSON lines', async () => {
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 3, save_steps: 2, num_generations: 4, temperature: 0.9 }).expect(202);
    expect(res.body).toEqual({ id: expect.stringMatching(/^train_[0-9a-f]{20}$/), status: 'queued' });
    expect(res.headers.location).toBe(`/admin/train/${res.body.id}`);
    const id = res.body.id as string;
    await jobs.wait(id);

    const job = (await request(app).get(res.headers.location).set(auth).expect(200)).body;
    expect(job).toMatchObject({
      id,
      status: 'succeeded',
      backend: 'local',
      progress: { step: 3, total_steps: 3 },
      metrics: { step: 3, reward: 0.3, completion_length: 103 },
      model_name: `grpo-${id.slice(6, 14)}`,
      request: { base_model: 'tiny-random', dataset: 'spatial-synth', steps: 3, save_steps: 2, num_generations: 4, temperature: 0.9 },
      cancel_requested: false,
    });
    expect(job.checkpoints).toEqual([{ step: 2, path: join(fx.stateDir, 'jobs', id, 'checkpoints', 'checkpoint-2') }]);
    expect(job).not.toHaveProperty('error');

    const list = (await request(app).get('/admin/train').set(auth).expect(200)).body;
    expect(list.object).toBe('list');
    expect(list.data.map((j: { id: string }) => j.id)).toContain(id);

    const sse = await request(app).get(`/admin/train/${id}/events`).set(auth).buffer(true).expect(200);
    expect(sse.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseSse(sse.text);
    expect(events.map((e) => e.event)).toEqual(['metrics', 'metrics', 'metrics', 'done']);
    for (const e of events.slice(0, 3)) expect(Object.keys(e.data).sort()).toEqual([...METRIC_FIELDS].sort());
    expect(events.slice(0, 3).map((e) => e.data.step)).toEqual([1, 2, 3]);
    expect(events[3].data).toMatchObject({ status: 'succeeded', job: { id, status: 'succeeded', model_name: job.model_name } });

    const jsonl = await request(app).get(`/admin/train/${id}/events?format=jsonl`).set(auth).buffer(true).expect(200);
    expect(jsonl.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = jsonl.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.slice(0, 3)).toEqual(events.slice(0, 3).map((e) => e.data));
    expect(lines[3]).toMatchObject({ event: 'done', status: 'succeeded', job: { id } });
    expect(lines).toHaveLength(4);

    // The exported model folder is servable.
    const loaded = await request(app).post(`/admin/models/${job.model_name}/load`).set(auth).expect(200);
    expect(loaded.body).toMatchObject({ id: job.model_name, object: 'model', loaded: true });
    const models = (await request(app).get('/v1/models').expect(200)).body.data;
    expect(models).toContainEqual(expect.objectContaining({ id: job.model_name, loaded: true }));
  });

  test('events of a running job: stored steps, then live ones, then done when it ends', async () => {
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 6 }).expect(202);
    const [sse, jsonl] = await Promise.all([
      request(app).get(`/admin/train/${res.body.id}/events`).set(auth).buffer(true).expect(200),
      request(app).get(`/admin/train/${res.body.id}/events?format=jsonl`).set(auth).buffer(true).expect(200),
    ]);
    const events = parseSse(sse.text);
    expect(events.filter((e) => e.event === 'metrics').map((e) => e.data.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.at(-1)).toMatchObject({ event: 'done', data: { status: 'succeeded' } });
    const lines = jsonl.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step ?? l.event)).toEqual([1, 2, 3, 4, 5, 6, 'done']);
  });

  test('cancel: 200 with the job at once, cancelled once the trainer stopped (?wait=true), 409 after', async () => {
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 1000, save_steps: 1 }).expect(202);
    const id = res.body.id;
    const deadline = Date.now() + 10_000;
    while ((await request(app).get(`/admin/train/${id}`).set(auth)).body.progress.step < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const cancelled = await request(app).post(`/admin/train/${id}/cancel?wait=true`).set(auth).expect(200);
    expect(cancelled.body).toMatchObject({ id, status: 'cancelled', cancel_requested: true, model_name: null });
    expect(cancelled.body.checkpoints.length).toBeGreaterThan(0);
    const again = await request(app).post(`/admin/train/${id}/cancel`).set(auth).expect(409);
    expect(again.body.error.code).toBe('job_finished');
    const done = parseSse((await request(app).get(`/admin/train/${id}/events`).set(auth).buffer(true).expect(200)).text).at(-1);
    expect(done).toMatchObject({ event: 'done', data: { status: 'cancelled' } });
  });

  test('cancel without waiting answers with the job still stopping', async () => {
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 1000 }).expect(202);
    const deadline = Date.now() + 10_000;
    while ((await request(app).get(`/admin/train/${res.body.id}`).set(auth)).body.status !== 'running' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const answer = await request(app).post(`/admin/train/${res.body.id}/cancel`).set(auth).expect(200);
    expect(answer.body).toMatchObject({ id: res.body.id, cancel_requested: true });
    expect(['running', 'cancelled']).toContain(answer.body.status);
    expect((await jobs.wait(res.body.id))!.status).toBe('cancelled');
  });

  test.each([
    ['an unknown field', { steps: 3, stepz: 4 }, 400, 'invalid_request'],
    ['steps 0', { steps: 0 }, 400, 'invalid_request'],
    ['a fractional step count', { steps: 2.5 }, 400, 'invalid_request'],
    ['a negative learning rate', { learning_rate: -1e-6 }, 400, 'invalid_request'],
    ['temperature 0', { temperature: 0 }, 400, 'invalid_request'],
    ['one generation per prompt', { num_generations: 1 }, 400, 'invalid_request'],
    ['max_pixels below one patch group', { max_pixels: 100 }, 400, 'invalid_request'],
    ['an unknown device', { device: 'tpu' }, 400, 'invalid_request'],
    ['an unknown template', { template: 'chat' }, 400, 'invalid_request'],
    ['a string step count', { steps: '10' }, 400, 'invalid_request'],
    ['a control character in a path', { dataset: 'spatial\u0000synth' }, 400, 'invalid_request'],
    ['a split with a path', { split: '../train' }, 400, 'invalid_request'],
    ['a base model outside the model roots (..)', { base_model: '../../../etc' }, 400, 'path_outside_roots'],
    ['a base model by absolute path elsewhere', { base_model: '/etc' }, 400, 'path_outside_roots'],
    ['a data set outside DATA_DIR (..)', { dataset: '../state/jobs' }, 400, 'path_outside_roots'],
    ['a data set by absolute path elsewhere', { dataset: '/etc/passwd' }, 400, 'path_outside_roots'],
    ['several machines on the local backend', { nodes: 2 }, 400, 'backend_unsupported'],
    ['an unknown base model', { base_model: 'no-such-model' }, 404, 'model_not_found'],
    ['a missing data set', { dataset: 'not-there' }, 404, 'dataset_not_found'],
    ['an unknown level', { level: 'hard' }, 400, 'invalid_request'],
    ['a level for a data set other than spatial-synth', { dataset: 'sat', level: 'easy' }, 400, 'level_unsupported'],
    ['a split spatial-synth does not have', { dataset: 'spatial-synth', split: 'dev' }, 400, 'unknown_split'],
  ])('%s is refused', async (_name, body, status, code) => {
    const before = (await request(app).get('/admin/train').set(auth)).body.data.length;
    const res = await request(app).post('/admin/train').set(auth).send(body);
    expect(res.status).toBe(status);
    expect(res.body.error).toEqual({ code, message: expect.any(String) });
    expect((await request(app).get('/admin/train').set(auth)).body.data.length).toBe(before);
  });

  test('a body that is not JSON is 415; broken JSON is 400', async () => {
    await request(app).post('/admin/train').set(auth).type('form').send('steps=3').expect(415);
    await request(app).post('/admin/train').set(auth).type('json').send('{"steps":').expect(400);
  });

  test('unknown jobs are 404', async () => {
    for (const res of [
      await request(app).get('/admin/train/train_missing').set(auth),
      await request(app).get('/admin/train/train_missing/events').set(auth),
      await request(app).get('/admin/train/train_missing/events?format=jsonl').set(auth),
      await request(app).post('/admin/train/train_missing/cancel').set(auth),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('job_not_found');
    }
  });

  test('POST /admin/models/<name>/load loads a model folder without generating; unknown names are 404', async () => {
    const generated: string[] = [];
    const stop = engine.observe({ onStep: (model) => generated.push(model), onRequestDone: (model) => generated.push(model) });
    const res = await request(app).post('/admin/models/tiny-random/load').set(auth).expect(200);
    stop();
    expect(res.body).toMatchObject({ id: 'tiny-random', object: 'model', loaded: true, load_ms: expect.any(Number) });
    expect(generated).toEqual([]);
    const models = (await request(app).get('/v1/models').expect(200)).body.data;
    expect(models).toContainEqual(expect.objectContaining({ id: 'tiny-random', loaded: true }));
    for (const name of ['no-such-model', '..', '%2E%2E%2Fmodels%2Ftiny-random']) {
      const missing = await request(app).post(`/admin/models/${name}/load`).set(auth);
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe('model_not_found');
    }
  });

  test('the Prometheus gauges: jobs per status, reward and completion length per job', async () => {
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 2 }).expect(202);
    await jobs.wait(res.body.id);
    const text = (await request(app).get('/metrics').expect(200)).text;
    const counts = jobs.counts();
    for (const status of ['queued', 'preparing', 'running', 'succeeded', 'failed', 'cancelled'] as const) {
      expect(text).toContain(`vlm_train_jobs{status="${status}"} ${counts[status]}`);
    }
    expect(counts.succeeded).toBeGreaterThan(0);
    expect(text).toContain(`vlm_train_reward{job="${res.body.id}"} 0.2`);
    expect(text).toContain(`vlm_train_completion_length{job="${res.body.id}"} 102`);
  });

  test('the admin token appears in no log line, nor in the trainer\'s environment', async () => {
    await request(app).get('/admin/train').set(auth).expect(200);
    await request(app).get('/admin/train').set({ Authorization: `Bearer ${WRONG}` }).expect(401);
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 1 }).expect(202);
    await jobs.wait(res.body.id);
    const text = logs.join('');
    expect(text).toContain('"route":"/admin/train"');
    expect(text).toContain('training job succeeded');
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(WRONG);
    const seen = readJson<{ env: string[]; values: Record<string, string> }>(join(fx.stateDir, 'jobs', res.body.id, 'fake_env.json'));
    expect(seen.env).not.toContain('ADMIN_TOKEN');
    expect(JSON.stringify(seen)).not.toContain(TOKEN);
  });
});
