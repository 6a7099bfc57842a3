// The README's training example on a fresh start (DATA_DIR empty): POST /admin/train
// {"dataset": "spatial-synth", "steps": 500} is accepted, the job is `preparing` while the train
// split is generated into STATE_DIR/datasets (its progress in GET /admin/train/<id> and in the SSE
// `status` events), then runs (the fake trainer); the next job reuses the split.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import type { JobEvent } from '../../src/training/manager';
import { startTestService, TestService } from '../helpers/app';
import { readJson } from '../helpers/training';

const TOKEN = 'fresh-start-admin-token';
const auth = { Authorization: `Bearer ${TOKEN}` };

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

describe('POST /admin/train on a fresh start', () => {
  let service: TestService<undefined>;
  let app: TestService['app'];

  beforeAll(async () => {
    service = await startTestService({
      adminToken: TOKEN,
      dataset: false,
      jobs: { fake: { FAKE_STEP_MS: '2' }, synthItems: { train: 24 }, synthConcurrency: 1 },
      runs: false,
    });
    ({ app } = service);
  });
  afterAll(() => service.dispose());

  test("the README's example is accepted, prepares its data set, runs, and the next job reuses the split", async () => {
    const { fx, jobs } = service;
    const dir = join(fx.stateDir, 'datasets', 'spatial-synth-standard');
    expect(existsSync(join(fx.dataDir, 'spatial-synth'))).toBe(false);
    const statuses: string[] = [];
    jobs.onEvent((e: JobEvent) => e.type === 'status' && statuses.push(e.status));

    const res = await request(app).post('/admin/train').set(auth).send({ dataset: 'spatial-synth', steps: 500 }).expect(202);
    expect(res.body).toEqual({ id: expect.stringMatching(/^train_[0-9a-f]{20}$/), status: 'queued' });
    const id = res.body.id as string;
    const [sse, jsonl] = await Promise.all([
      request(app).get(`/admin/train/${id}/events`).set(auth).buffer(true).expect(200),
      request(app).get(`/admin/train/${id}/events?format=jsonl`).set(auth).buffer(true).expect(200),
    ]);
    expect(statuses).toEqual(['queued', 'preparing', 'running', 'succeeded']);

    // SSE: `status` events while the job is not finished: preparing (with its progress), then running.
    const events = parseSse(sse.text);
    const status = events.filter((e) => e.event === 'status').map((e) => e.data);
    expect(status[0]).toMatchObject({ status: 'preparing', preparing: { stage: 'dataset', total: 24, done: expect.any(Number) } });
    expect(status.at(-1)).toEqual({ status: 'running', preparing: null });
    expect(events.filter((e) => e.event === 'metrics')).toHaveLength(500);
    expect(events.at(-1)).toMatchObject({ event: 'done', data: { status: 'succeeded' } });
    // JSON lines keep their shape: the metrics lines, then the final line.
    const lines = jsonl.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(501);
    expect(lines.slice(0, 500).every((l) => typeof l.step === 'number' && l.event === undefined)).toBe(true);

    const job = (await request(app).get(`/admin/train/${id}`).set(auth).expect(200)).body;
    expect(job).toMatchObject({ status: 'succeeded', preparing: null, request: { dataset: 'spatial-synth', level: 'standard', steps: 500 }, progress: { step: 500 } });
    expect(readJson(join(job.job_dir, 'job.json'))).toMatchObject({ dataset: dir });
    expect(readFileSync(join(dir, 'train.jsonl'), 'utf8').trim().split('\n')).toHaveLength(24);

    statuses.length = 0;
    const again = await request(app).post('/admin/train').set(auth).send({ dataset: 'spatial-synth', steps: 2 }).expect(202);
    expect((await jobs.wait(again.body.id))!.status).toBe('succeeded');
    expect(statuses).toEqual(['queued', 'running', 'succeeded']);
  });

  test('while preparing, GET /admin/train/<id> shows the progress', async () => {
    const { jobs } = service;
    const res = await request(app).post('/admin/train').set(auth).send({ level: 'easy', steps: 1 }).expect(202);
    const seen: unknown[] = [];
    const off = jobs.onEvent((e: JobEvent) => {
      if (e.jobId === res.body.id && e.type === 'preparing') seen.push(e.preparing);
    });
    try {
      const deadline = Date.now() + 20_000;
      let body: { status: string; preparing: unknown } | undefined;
      while (Date.now() < deadline) {
        body = (await request(app).get(`/admin/train/${res.body.id}`).set(auth).expect(200)).body;
        if (body!.status !== 'queued') break;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(body).toMatchObject({ status: 'preparing', preparing: { stage: 'dataset', message: expect.stringContaining('level easy'), total: 24 } });
      expect((await jobs.wait(res.body.id))!.status).toBe('succeeded');
      expect(seen.length).toBeGreaterThan(0);
    } finally {
      off();
    }
  });
});
