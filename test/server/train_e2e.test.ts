// Acceptance of the training path with the REAL trainer (python -m trainer.grpo on the tiny
// model, CPU): a GRPO job of a few steps through POST /admin/train succeeds, its events carry
// every documented metric with rewards in [0, 2], and the exported model loads through the admin
// route and answers /generate.
import { join } from 'node:path';
import request from 'supertest';
import { writeDataset as writeSynth } from '../../src/benchmarks/spatial_synth';
import { LocalBackend } from '../../src/training/backends/local';
import { startTestService, TestService } from '../helpers/app';
import { REPO_ROOT } from '../helpers/vectors';

const TOKEN = 'e2e-admin-token';
const auth = { Authorization: `Bearer ${TOKEN}` };

describe('training end to end with the real trainer', () => {
  let service: TestService<undefined>;
  let app: TestService['app'];

  beforeAll(async () => {
    service = await startTestService({
      adminToken: TOKEN,
      jobs: ({ config, engine }) => ({
        backend: new LocalBackend({ command: [join(REPO_ROOT, '.venv', 'bin', 'python'), '-m', 'trainer.grpo'], cwd: REPO_ROOT, env: {}, pollMs: 100 }),
        modelRoots: config.modelRoots,
        listModels: () => engine.listModels(),
        pollMs: 100,
      }),
      runs: false,
    });
    ({ app } = service);
    await writeSynth(join(service.fx.dataDir, 'spatial-synth'), { train: 16, val: 0, test: 0, seed: 3, size: 112 });
  });
  afterAll(() => service.dispose());

  test('a few GRPO steps on tiny-random succeed, stream their metrics and yield a servable model', async () => {
    const created = await request(app)
      .post('/admin/train')
      .set(auth)
      .send({ base_model: 'tiny-random', dataset: 'spatial-synth', steps: 2, num_generations: 4, prompts_per_step: 2, max_completion_length: 12, learning_rate: 1e-4, device: 'cpu', save_steps: 1 })
      .expect(202);
    const id = created.body.id;

    const events = await request(app).get(`/admin/train/${id}/events?format=jsonl`).set(auth).expect(200);
    const lines = events.text.trim().split('\n').map((l) => JSON.parse(l));
    const done = lines.at(-1);
    expect(done).toMatchObject({ event: 'done', status: 'succeeded' });
    const steps = lines.filter((l) => l.event !== 'done');
    expect(steps.map((s) => s.step)).toEqual([1, 2]);
    for (const s of steps) {
      for (const key of ['reward', 'reward_std', 'rewards/accuracy', 'rewards/format', 'completion_length', 'kl', 'loss', 'learning_rate', 'reflection_rate', 'seconds']) {
        expect(typeof s[key]).toBe('number');
      }
      expect(s.reward).toBeGreaterThanOrEqual(0);
      expect(s.reward).toBeLessThanOrEqual(2);
    }

    const job = (await request(app).get(`/admin/train/${id}`).set(auth).expect(200)).body;
    expect(job).toMatchObject({ status: 'succeeded', progress: { step: 2, total_steps: 2 } });
    const name = job.model_name;
    expect(name).toMatch(/^grpo-/);

    await request(app).post(`/admin/models/${name}/load`).set(auth).expect(200);
    const models = await request(app).get('/v1/models').expect(200);
    expect(models.body.data).toContainEqual(expect.objectContaining({ id: name, loaded: true }));
    const answer = await request(app).post('/generate').send({ model: name, question: 'How many cubes?', max_new_tokens: 4 }).expect(200);
    expect(answer.body).toMatchObject({ model: name, usage: { completion_tokens: expect.any(Number) } });
  }, 300_000);
});
