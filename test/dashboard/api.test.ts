// The routes the dashboard added to the API: a training job's sampled rollouts of a step
// (GET /admin/train/<id>/rollouts, admin-only) and an evaluation run's items with their images
// (GET /evaluate/<id>/items/<item>[/images/<n>]), which reach only the run's own items and only
// files inside their data set folder.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { imageType } from '../../src/server/routes/evaluate';
import { JobManager } from '../../src/training/manager';
import { readRollouts } from '../../src/training/rollouts';
import { startTestService, TestService } from '../helpers/app';
import { noiseImage } from '../helpers/service';
import type { TrainingFixture } from '../helpers/training';

const TOKEN = 'dashboard-api-token-41c7';
const auth = { Authorization: `Bearer ${TOKEN}` };
const itemPath = (run: string, item: string) => `/evaluate/${run}/items/${encodeURIComponent(item)}`;

describe('dashboard API routes', () => {
  let service: TestService;
  let fx: TrainingFixture;
  let jobs: JobManager;
  let app: TestService['app'];

  beforeAll(async () => {
    service = await startTestService({
      adminToken: TOKEN,
      jobs: { fake: { FAKE_STEP_MS: '10', FAKE_ROLLOUTS: '3' }, maxConcurrent: 2 },
      runs: { concurrency: 4 },
    });
    ({ fx, jobs, app } = service);
  });
  afterAll(() => service.dispose());

  describe('GET /admin/train/<id>/rollouts', () => {
    let id: string;

    beforeAll(async () => {
      const created = await request(app).post('/admin/train').set(auth).send({ steps: 3 }).expect(202);
      id = created.body.id;
      expect((await jobs.wait(id))?.status).toBe('succeeded');
    });

    test('the newest step by default, every step listed', async () => {
      const res = await request(app).get(`/admin/train/${id}/rollouts`).set(auth).expect(200);
      expect(res.body).toMatchObject({ object: 'list', job_id: id, step: 3, steps: [1, 2, 3], total: 3 });
      expect(res.body.data).toHaveLength(3);
      expect(res.body.data[0]).toEqual({
        step: 3,
        item_id: 'spatial-synth/train/000030',
        prompt: expect.stringContaining('How many red cubes'),
        completion: expect.any(String),
        answer: expect.any(String),
        gold: '3',
        rewards: { accuracy: expect.any(Number), format: expect.any(Number) },
        reflection: expect.any(Boolean),
      });
    });

    test('a chosen step, a limit, and a step with none', async () => {
      const one = await request(app).get(`/admin/train/${id}/rollouts?step=1&limit=2`).set(auth).expect(200);
      expect(one.body).toMatchObject({ step: 1, total: 3 });
      expect(one.body.data.map((r: { step: number }) => r.step)).toEqual([1, 1]);
      const none = await request(app).get(`/admin/train/${id}/rollouts?step=99`).set(auth).expect(200);
      expect(none.body).toMatchObject({ step: 99, steps: [1, 2, 3], data: [], total: 0 });
    });

    test.each(['step=-1', 'step=x', 'step=1.5', 'limit=0', 'limit=1000', 'steps=1'])('?%s is a 400', async (query) => {
      const res = await request(app).get(`/admin/train/${id}/rollouts?${query}`).set(auth).expect(400);
      expect(res.body.error.code).toEqual(expect.any(String));
    });

    test('admin-only, and 404 for an unknown job', async () => {
      await request(app).get(`/admin/train/${id}/rollouts`).expect(401);
      await request(app).get(`/admin/train/${id}/rollouts`).set({ Authorization: 'Bearer wrong-token' }).expect(401);
      const res = await request(app).get('/admin/train/train_nope/rollouts').set(auth).expect(404);
      expect(res.body.error.code).toBe('job_not_found');
    });

    test('a file with no rollouts yet, or with malformed lines', async () => {
      const dir = join(fx.root, 'rollouts-unit');
      mkdirSync(dir, { recursive: true });
      expect(await readRollouts(join(dir, 'missing.jsonl'), { limit: 5 })).toEqual({ step: null, steps: [], data: [], total: 0 });
      const file = join(dir, 'rollouts.jsonl');
      writeFileSync(file, ['{"step": 2, "completion": "a"}', 'not json', '[1]', '{"step": -1}', '{"step": "3"}', '{"step": 1, "completion": "b"}', '{"step": 2, "completion": "c"', ''].join('\n'));
      expect(await readRollouts(file, { limit: 5 })).toEqual({ step: 2, steps: [1, 2], data: [{ step: 2, completion: 'a' }], total: 1 });
      expect(await readRollouts(file, { step: 1, limit: 5 })).toEqual({ step: 1, steps: [1, 2], data: [{ step: 1, completion: 'b' }], total: 1 });
    });
  });

  describe('GET /evaluate/<id>/items/<item> and its images', () => {
    let run: string;

    beforeAll(async () => {
      // No DATA_DIR/spatial-synth/test.jsonl: the split is generated in memory.
      const res = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 3, max_new_tokens: 2 }).expect(200);
      run = res.body.id;
    });

    test('an item of the run: question, choices, gold and image URLs', async () => {
      const res = await request(app).get(itemPath(run, 'spatial-synth/test/000001')).expect(200);
      expect(res.body).toEqual({
        id: 'spatial-synth/test/000001',
        task: expect.any(String),
        source: 'spatial-synth',
        question: expect.any(String),
        prompt: expect.stringContaining('Select from the following choices.'),
        choices: expect.any(Array),
        answer: expect.stringMatching(/^[A-Z]$/),
        answer_text: expect.any(String),
        images: [`/evaluate/${run}/items/spatial-synth%2Ftest%2F000001/images/0`],
      });
      const image = await request(app).get(res.body.images[0]).expect(200);
      expect(image.headers['content-type']).toBe('image/png');
      expect(image.headers['x-content-type-options']).toBe('nosniff');
      expect(imageType(image.body)).toBe('image/png');
    });

    test('items outside the run, images past the last, and bad numbers are refused', async () => {
      // Item 5 exists in the generated split but not in this run's first 3.
      expect((await request(app).get(itemPath(run, 'spatial-synth/test/000005')).expect(404)).body.error.code).toBe('item_not_found');
      await request(app).get(itemPath(run, '../../etc/passwd')).expect(404);
      await request(app).get(`${itemPath(run, 'spatial-synth/test/000000')}/images/1`).expect(404);
      await request(app).get(`${itemPath(run, 'spatial-synth/test/000000')}/images/x`).expect(400);
      await request(app).get(`${itemPath(run, 'spatial-synth/test/000000')}/images/-1`).expect(400);
      expect((await request(app).get(itemPath('eval_nope', 'spatial-synth/test/000000')).expect(404)).body.error.code).toBe('run_not_found');
    });

    test('images of a data set on disk are served; paths leaving its folder are not', async () => {
      const dir = join(fx.dataDir, 'spatial-synth');
      mkdirSync(join(dir, 'images'), { recursive: true });
      const png = await noiseImage(32, 32, 7);
      writeFileSync(join(dir, 'images', 'a.png'), png);
      const secret = await noiseImage(16, 16, 9);
      writeFileSync(join(fx.root, 'outside.png'), secret);
      const record = (id: string, image: string) =>
        JSON.stringify({ id, images: [image], question: 'q?', choices: ['x', 'y'], answer: 'A', answer_text: 'x', prompt: 'q? Select from the following choices.\n(A) x\n(B) y', task: 'Count', source: 'spatial-synth', meta: {} });
      writeFileSync(join(dir, 'test.jsonl'), [record('disk/0', 'images/a.png'), record('disk/1', '../../outside.png'), record('disk/2', join(fx.root, 'outside.png'))].join('\n') + '\n');
      try {
        const res = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', max_new_tokens: 2 }).expect(200);
        const image = await request(app).get(`${itemPath(res.body.id, 'disk/0')}/images/0`).expect(200);
        expect(Buffer.compare(image.body, png)).toBe(0);
        for (const item of ['disk/1', 'disk/2']) {
          const refused = await request(app).get(`${itemPath(res.body.id, item)}/images/0`);
          expect(refused.status).toBe(422);
          expect(refused.body.error.code).toBe('benchmark_data_malformed');
          expect(refused.headers['content-type']).toMatch(/^application\/json/);
        }
      } finally {
        rmSync(join(dir, 'test.jsonl'), { force: true });
      }
    });
  });

  test('imageType reads signatures', () => {
    expect(imageType(Buffer.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('image/jpeg');
    expect(imageType(Buffer.from('RIFF0000WEBPVP8 ', 'latin1'))).toBe('image/webp');
    expect(imageType(Buffer.from('GIF89a', 'latin1'))).toBe('image/gif');
    expect(imageType(Buffer.from('<svg></svg>'))).toBe('application/octet-stream');
  });
});
