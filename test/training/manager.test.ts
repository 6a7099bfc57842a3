// The job manager with the fake trainer (test/helpers/fake_trainer.js) as a local process: the
// job lifecycle, metrics following, cancellation, queueing and recovery after a restart.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceError } from '../../src/errors';
import { LocalBackend } from '../../src/training/backends/local';
import { JobEvent, JobManager, modelNameFor } from '../../src/training/manager';
import { JobStore } from '../../src/training/store';
import { deadPid, fakeBackend, MODELS_ROOT, readJson, TrainingFixture, trainingFixture, until } from '../helpers/training';

const METRIC_FIELDS = [
  'step', 'reward', 'reward_std', 'rewards/accuracy', 'rewards/format', 'completion_length', 'kl', 'loss',
  'learning_rate', 'reflection_rate', 'seconds', 'grad_norm', 'total_steps', 'rollout_tokens_per_second',
  'answer_top_share',
];

/** A job row left `running` by a previous service process, with its folder and job.json. */
function orphanedJob(fx: TrainingFixture, id: string, ref: string | null, request: Record<string, unknown> = {}) {
  const jobDir = join(fx.stateDir, 'jobs', id);
  mkdirSync(jobDir, { recursive: true });
  writeFileSync(
    join(jobDir, 'job.json'),
    JSON.stringify({ job_id: id, base_model: join(MODELS_ROOT, 'tiny-random'), dataset: join(fx.dataDir, 'spatial-synth'), output_dir: jobDir, export_dir: join(fx.stateDir, 'models', modelNameFor(id)), ...request }),
  );
  fx.store.insert({ id, request: JSON.stringify({ base_model: 'tiny-random', dataset: 'spatial-synth', ...request }), job_dir: jobDir, backend: 'local', total_steps: null });
  fx.store.markRunning(id);
  if (ref) fx.store.setBackendRef(id, ref);
  return jobDir;
}

function steps(manager: JobManager, id: string): number[] {
  return [...manager.history(id)].map((m) => m.step);
}

describe('JobManager with a local trainer process', () => {
  let fx: TrainingFixture;
  beforeEach(() => {
    fx = trainingFixture();
  });
  afterEach(async () => {
    await fx.cleanup();
  });

  test('a job goes queued -> running -> succeeded; job.json, metrics, events and the model name are right', async () => {
    const manager = fx.manager({ fake: { FAKE_STEP_MS: '10' } });
    const events: JobEvent[] = [];
    manager.onEvent((e) => events.push(e));
    const job = manager.create({ steps: 4, save_steps: 2, learning_rate: 1e-6, seed: 3, num_generations: 4 });
    expect(job).toMatchObject({ status: 'queued', backend: 'local', progress: { step: 0, total_steps: 4 }, model_name: null, attempts: 0 });
    expect(job.id).toMatch(/^train_[0-9a-f]{20}$/);

    // job.json: the contract's keys only, absolute resolved paths, the request's values.
    const config = readJson(join(job.job_dir, 'job.json'));
    expect(config).toEqual({
      job_id: job.id,
      base_model: join(MODELS_ROOT, 'tiny-random'),
      dataset: join(fx.dataDir, 'spatial-synth'),
      output_dir: join(fx.stateDir, 'jobs', job.id),
      export_dir: join(fx.stateDir, 'models', modelNameFor(job.id)),
      steps: 4,
      save_steps: 2,
      learning_rate: 1e-6,
      seed: 3,
      num_generations: 4,
    });

    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'succeeded', model_name: `grpo-${job.id.slice(6, 14)}`, progress: { step: 4, total_steps: 4 }, attempts: 1 });
    expect(done!.error).toBeUndefined();
    expect(done!.metrics).toMatchObject({ step: 4, reward: 0.4, completion_length: 104 });
    expect(done!.checkpoints.map((c) => c.step)).toEqual([2, 4]);
    expect(done!.started_at).not.toBeNull();
    expect(done!.finished_at).not.toBeNull();
    expect(steps(manager, job.id)).toEqual([1, 2, 3, 4]);
    for (const line of manager.history(job.id)) expect(Object.keys(line).sort()).toEqual([...METRIC_FIELDS].sort());

    const statuses = events.filter((e) => e.type === 'status').map((e) => (e as { status: string }).status);
    expect(statuses).toEqual(['queued', 'running', 'succeeded']);
    const live = events.filter((e) => e.type === 'metrics').map((e) => (e as { metrics: { step: number } }).metrics.step);
    expect(live).toEqual([1, 2, 3, 4]);
    // Metrics come before the final status.
    expect(events.findIndex((e) => e.type === 'status' && e.status === 'succeeded')).toBe(events.length - 1);
    expect(readFileSync(join(job.job_dir, 'trainer.log'), 'utf8')).toMatch(/\[grpo\] step 4\/4/);
  });

  test('lines written in parts are stored whole, once each', async () => {
    const manager = fx.manager({ fake: { FAKE_STEP_MS: '30', FAKE_SPLIT_WRITES: '1' }, pollMs: 5 });
    const announced: number[] = [];
    manager.onEvent((e) => e.type === 'metrics' && announced.push(e.metrics.step));
    const job = manager.create({ steps: 5 });
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('succeeded');
    expect(steps(manager, job.id)).toEqual([1, 2, 3, 4, 5]);
    expect(announced).toEqual([1, 2, 3, 4, 5]);
  });

  test('a checkpoint folder without trainer_state.json (cut short) is not a checkpoint', async () => {
    const manager = fx.manager();
    const job = manager.create({ steps: 1 });
    await manager.wait(job.id);
    mkdirSync(join(job.job_dir, 'checkpoints', 'checkpoint-7'), { recursive: true });
    mkdirSync(join(job.job_dir, 'checkpoints', 'checkpoint-9'), { recursive: true });
    writeFileSync(join(job.job_dir, 'checkpoints', 'checkpoint-9', 'trainer_state.json'), '{}');
    expect(manager.get(job.id)!.checkpoints).toEqual([{ step: 9, path: join(job.job_dir, 'checkpoints', 'checkpoint-9') }]);
  });

  test('the trainer gets a minimal environment: no service secrets, Hugging Face offline, GPU selection passed on', async () => {
    const parentEnv = { PATH: process.env.PATH, HOME: '/home/x', ADMIN_TOKEN: 'super-secret-token', AWS_SECRET_ACCESS_KEY: 'k', CUDA_VISIBLE_DEVICES: '1', NODE_OPTIONS: '--inspect' };
    const manager = fx.manager({ backend: fakeBackend({}, parentEnv) });
    const job = manager.create({ steps: 1 });
    expect((await manager.wait(job.id))!.status).toBe('succeeded');
    const seen = readJson<{ env: string[]; values: Record<string, string>; argv: string[]; cwd: string }>(join(job.job_dir, 'fake_env.json'));
    expect(seen.env).toEqual(['CUDA_VISIBLE_DEVICES', 'HF_DATASETS_OFFLINE', 'HF_HUB_OFFLINE', 'HOME', 'PATH', 'PYTHONUNBUFFERED', 'TRANSFORMERS_OFFLINE']);
    expect(seen.values).toMatchObject({ CUDA_VISIBLE_DEVICES: '1', HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1' });
    expect(JSON.stringify(seen)).not.toContain('super-secret-token');
    expect(seen.argv).toEqual(['--config', join(job.job_dir, 'job.json')]);
  });

  test('a crashing trainer fails the job with the tail of its stderr', async () => {
    const manager = fx.manager({ fake: { FAKE_TRAINER: 'crash', FAKE_CRASH_AFTER: '2' } });
    const job = manager.create({ steps: 5 });
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toMatch(/^the trainer exited with code 1; last lines of trainer.log:/);
    expect(done!.error).toContain('RuntimeError: fake trainer crashed at step 2');
    expect(done!.error).toContain('Traceback (most recent call last):');
    expect(done!.error!.split('\n').length).toBeLessThanOrEqual(21);
    expect(steps(manager, job.id)).toEqual([1, 2]);
    expect(done!.model_name).toBeNull();
  });

  test('a trainer that cannot be started fails the job with the reason', async () => {
    const manager = fx.manager({ backend: new LocalBackend({ command: [join(fx.root, 'no-such-python')], cwd: fx.root }) });
    const job = manager.create({});
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toMatch(/cannot start the trainer .*no-such-python.*ENOENT/);
  });

  test('cancel: SIGTERM, the trainer checkpoints and exits 143, the job is cancelled with its checkpoints', async () => {
    const manager = fx.manager({ fake: { FAKE_TRAINER: 'hang', FAKE_HANG_AFTER: '2' } });
    const job = manager.create({ steps: 10 });
    await until(() => manager.get(job.id)!.progress.step === 2, 10_000, 'two steps');
    const answer = manager.cancel(job.id)!;
    expect(answer).toMatchObject({ status: 'running', cancel_requested: true });
    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'cancelled', cancel_requested: true, model_name: null });
    expect(done!.checkpoints.map((c) => c.step)).toEqual([2]);
    expect(readFileSync(join(job.job_dir, 'trainer.log'), 'utf8')).toContain('SIGTERM: checkpoint saved at step 2');
    expect(() => manager.cancel(job.id)).toThrow(expect.objectContaining({ status: 409, code: 'job_finished' }));
  });

  test('cancel: a trainer that ignores SIGTERM is killed after the grace period', async () => {
    const manager = fx.manager({ fake: { FAKE_TRAINER: 'ignore-term' }, cancelGraceMs: 300 });
    const job = manager.create({ steps: 10 });
    await until(() => manager.get(job.id)!.progress.step === 1, 10_000, 'one step');
    await until(() => existsSync(join(job.job_dir, 'metrics.jsonl')));
    const started = Date.now();
    manager.cancel(job.id);
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('cancelled');
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(readFileSync(join(job.job_dir, 'trainer.log'), 'utf8')).toContain('SIGTERM ignored');
  });

  test('TRAIN_MAX_CONCURRENT=1 runs one job at a time, in order; a queued job cancels at once', async () => {
    const manager = fx.manager({ fake: { FAKE_STEP_MS: '30' }, maxConcurrent: 1 });
    let running = 0;
    let most = 0;
    manager.onEvent((e) => {
      if (e.type !== 'status') return;
      if (e.status === 'running') most = Math.max(most, ++running);
      if (e.status === 'succeeded' || e.status === 'failed') running--;
    });
    const a = manager.create({ steps: 3 });
    const b = manager.create({ steps: 3 });
    const c = manager.create({ steps: 3 });
    await until(() => manager.get(a.id)!.status === 'running');
    expect(manager.get(b.id)!.status).toBe('queued');
    expect(manager.cancel(c.id)).toMatchObject({ status: 'cancelled' });
    const [doneA, doneB] = await Promise.all([manager.wait(a.id), manager.wait(b.id)]);
    expect(doneA!.status).toBe('succeeded');
    expect(doneB!.status).toBe('succeeded');
    expect(most).toBe(1);
    expect(doneB!.started_at! >= doneA!.finished_at!).toBe(true);
    expect(manager.get(c.id)!.attempts).toBe(0);
    expect(manager.counts()).toEqual({ queued: 0, preparing: 0, running: 0, succeeded: 2, failed: 0, cancelled: 1 });
  });

  test('TRAIN_MAX_CONCURRENT=2 runs two at once', async () => {
    const manager = fx.manager({ fake: { FAKE_STEP_MS: '50' }, maxConcurrent: 2 });
    const jobs = [manager.create({ steps: 3 }), manager.create({ steps: 3 }), manager.create({ steps: 3 })];
    await until(() => manager.counts().running === 2);
    expect(manager.get(jobs[2].id)!.status).toBe('queued');
    const done = await Promise.all(jobs.map((j) => manager.wait(j.id)));
    expect(done.map((j) => j!.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  describe('requests are checked and paths confined to their roots', () => {
    test.each([
      ['a base model path escaping the roots', { base_model: '../../etc' }, 'path_outside_roots'],
      ['an absolute base model path elsewhere', { base_model: '/etc' }, 'path_outside_roots'],
      ['a data set path escaping DATA_DIR', { dataset: '../state' }, 'path_outside_roots'],
      ['an absolute data set path elsewhere', { dataset: '/tmp' }, 'path_outside_roots'],
      ['an unknown base model', { base_model: 'no-such-model' }, 'model_not_found'],
      ['a data set folder that is not there', { dataset: 'not-there' }, 'dataset_not_found'],
      ['a split spatial-synth does not have', { dataset: 'spatial-synth', split: 'dev' }, 'unknown_split'],
      ['SAT not prepared yet', { dataset: 'sat' }, 'dataset_not_found'],
      ['several machines on the local backend', { nodes: 2 }, 'backend_unsupported'],
      ['several GPUs on the local backend', { gpus: 2 }, 'backend_unsupported'],
      ['both halves frozen', { freeze_vision: true, freeze_llm: true }, 'invalid_request'],
    ])('%s is refused', (_name, request, code) => {
      const manager = fx.manager();
      expect(() => manager.create(request)).toThrow(expect.objectContaining({ code }));
      expect(fx.store.list()).toHaveLength(0);
    });

    test('the missing-data message says how to make the data set', () => {
      const manager = fx.manager();
      try {
        manager.create({ dataset: 'sat' });
        throw new Error('accepted');
      } catch (error) {
        expect(error).toBeInstanceOf(ServiceError);
        expect((error as Error).message).toContain(`npm run prepare-data -- --benchmark sat --split train --out ${join(fx.dataDir, 'sat-train')}`);
      }
    });

    test('paths inside the roots, named folders and absolute paths within are accepted', async () => {
      const manager = fx.manager({ fake: { FAKE_STEP_MS: '1' } });
      mkdirSync(join(fx.dataDir, 'mine', 'sub'), { recursive: true });
      writeFileSync(join(fx.dataDir, 'mine', 'sub', 'train.jsonl'), '{}\n');
      const a = manager.create({ base_model: join(MODELS_ROOT, 'tiny-random'), dataset: 'mine/sub', steps: 1 });
      expect(readJson(join(a.job_dir, 'job.json')).dataset).toBe(join(fx.dataDir, 'mine', 'sub'));
      const b = manager.create({ base_model: 'tiny-random', dataset: join(fx.dataDir, 'mine', 'sub'), steps: 1 });
      expect(readJson(join(b.job_dir, 'job.json')).base_model).toBe(join(MODELS_ROOT, 'tiny-random'));
      await Promise.all([manager.wait(a.id), manager.wait(b.id)]);
    });

    test('a model folder without safetensors is not trainable', () => {
      const root = join(fx.root, 'models');
      mkdirSync(join(root, 'onnx-only', 'onnx'), { recursive: true });
      writeFileSync(join(root, 'onnx-only', 'config.json'), '{}');
      const manager = fx.manager({ modelRoots: [root] });
      expect(() => manager.create({ base_model: 'onnx-only' })).toThrow(expect.objectContaining({ code: 'base_model_not_trainable' }));
    });
  });

  describe('recover() after a restart of the service', () => {
    test('a trainer lost with the service resumes from its newest checkpoint and continues the step count', async () => {
      // Step 3 is written but not checkpointed: the resumed trainer drops its line and redoes it.
      const first = fx.manager({ fake: { FAKE_TRAINER: 'hang', FAKE_HANG_AFTER: '3' } });
      const job = first.create({ steps: 5, save_steps: 2 });
      await until(() => first.get(job.id)!.progress.step === 3 && first.get(job.id)!.checkpoints.length === 1, 10_000, 'three steps');
      const pid = Number(fx.store.get(job.id)!.backend_ref);
      // The service stops (the trainer is left alone), then the machine loses the trainer too.
      await first.close();
      process.kill(-pid, 'SIGKILL');
      await until(() => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      });
      expect(fx.store.get(job.id)!.status).toBe('running');

      const second = fx.manager({ fake: { FAKE_TRAINER: 'succeed', FAKE_VARIANT: '0.5' } });
      const announced: [number, unknown][] = [];
      second.onEvent((e) => e.type === 'metrics' && announced.push([e.metrics.step, e.metrics.reward_std]));
      await second.recover();
      const done = await second.wait(job.id);
      expect(done).toMatchObject({ status: 'succeeded', attempts: 2, progress: { step: 5, total_steps: 5 } });
      // Steps 1-2 are the first run's; 3 was redone; only the resumed run's steps were announced.
      expect([...second.history(job.id)].map((m) => [m.step, m.reward_std])).toEqual([[1, 0.25], [2, 0.25], [3, 0.5], [4, 0.5], [5, 0.5]]);
      expect(announced).toEqual([[3, 0.5], [4, 0.5], [5, 0.5]]);
      const log = readFileSync(join(job.job_dir, 'trainer.log'), 'utf8');
      expect(log).toContain('resuming from checkpoints/checkpoint-2');
      expect(log).toContain('attempt 2:');
    });

    test('a lost trainer without a checkpoint fails the job as interrupted', async () => {
      const id = 'train_00000000000000000001';
      orphanedJob(fx, id, String(await deadPid()));
      const manager = fx.manager();
      await manager.recover();
      const job = manager.get(id)!;
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/^interrupted: the service stopped before the first checkpoint/);
    });

    test('a live pid that is not this job\'s trainer (reused) is not attached', async () => {
      const id = 'train_00000000000000000002';
      orphanedJob(fx, id, String(process.pid));
      const manager = fx.manager();
      await manager.recover();
      expect(manager.get(id)!.status).toBe('failed');
    });

    test('a trainer still running is re-attached: its metrics are followed and result.json decides', async () => {
      const first = fx.manager({ fake: { FAKE_STEP_MS: '150' } });
      const job = first.create({ steps: 4 });
      await until(() => first.get(job.id)!.progress.step >= 1, 10_000, 'first step');
      await first.close();
      const logs: string[] = [];
      const second = fx.manager({ log: (_level, message) => logs.push(message) });
      await second.recover();
      expect(logs).toContain('training job re-attached');
      expect(second.get(job.id)!.status).toBe('running');
      const done = await second.wait(job.id);
      expect(done).toMatchObject({ status: 'succeeded', attempts: 1, progress: { step: 4 } });
      expect(steps(second, job.id)).toEqual([1, 2, 3, 4]);
    });

    test('a re-attached trainer can be cancelled', async () => {
      const first = fx.manager({ fake: { FAKE_TRAINER: 'hang' } });
      const job = first.create({ steps: 5 });
      await until(() => first.get(job.id)!.progress.step === 1, 10_000, 'first step');
      await first.close();
      const second = fx.manager();
      await second.recover();
      second.cancel(job.id);
      const done = await second.wait(job.id);
      expect(done!.status).toBe('cancelled');
      expect(done!.checkpoints.map((c) => c.step)).toEqual([1]);
    });

    test('a trainer that finished while the service was down: succeeded from result.json, metrics caught up', async () => {
      const id = 'train_00000000000000000003';
      const jobDir = orphanedJob(fx, id, String(await deadPid()));
      writeFileSync(join(jobDir, 'metrics.jsonl'), `${JSON.stringify({ step: 1, reward: 0.5 })}\n${JSON.stringify({ step: 2, reward: 0.75 })}\n`);
      writeFileSync(join(jobDir, 'result.json'), JSON.stringify({ status: 'succeeded', steps: 2 }));
      const manager = fx.manager();
      await manager.recover();
      expect(manager.get(id)).toMatchObject({ status: 'succeeded', model_name: modelNameFor(id), progress: { step: 2 }, metrics: { step: 2, reward: 0.75 } });
    });

    test('a job whose cancel was asked for before the restart ends cancelled', async () => {
      const id = 'train_00000000000000000004';
      const jobDir = orphanedJob(fx, id, String(await deadPid()));
      mkdirSync(join(jobDir, 'checkpoints', 'checkpoint-3'), { recursive: true });
      writeFileSync(join(jobDir, 'checkpoints', 'checkpoint-3', 'trainer_state.json'), '{}');
      fx.store.requestCancel(id);
      const manager = fx.manager();
      await manager.recover();
      expect(manager.get(id)!.status).toBe('cancelled');
    });

    test('queued jobs left by the previous process start', async () => {
      const first = fx.manager({ fake: { FAKE_TRAINER: 'hang' } });
      first.create({ steps: 2 });
      const queued = first.create({ steps: 2 });
      await first.close();
      // The first job's trainer dies with the service, before any checkpoint.
      const running = fx.store.withStatus('running')[0];
      if (running?.backend_ref) process.kill(-Number(running.backend_ref), 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      const second = fx.manager();
      await second.recover();
      expect((await second.wait(queued.id))!.status).toBe('succeeded');
    });
  });
});

describe('JobStore', () => {
  test('a repeated step replaces the earlier line; forgotten steps go; the latest line is the job\'s', async () => {
    const fx = trainingFixture();
    try {
      const store = new JobStore(fx.db);
      store.insert({ id: 'train_x', request: '{}', job_dir: '/x', backend: 'local', total_steps: null });
      const lines = [{ step: 1, reward: 0.1 }, { step: 2, reward: 0.2 }, { step: 3, reward: 0.3, total_steps: 9 }];
      store.syncMetrics('train_x', { changed: lines, latest: lines[2] });
      expect(store.get('train_x')).toMatchObject({ step: 3, total_steps: 9 });
      store.syncMetrics('train_x', { changed: [{ step: 2, reward: 0.5 }], latest: { step: 2, reward: 0.5 }, forgetAfter: 2 });
      expect([...store.iterateMetrics('train_x')]).toEqual([{ step: 1, reward: 0.1 }, { step: 2, reward: 0.5 }]);
      expect(store.storedMetrics('train_x')).toEqual(new Map([[1, JSON.stringify({ step: 1, reward: 0.1 })], [2, JSON.stringify({ step: 2, reward: 0.5 })]]));
      expect(store.get('train_x')).toMatchObject({ step: 2, total_steps: 9, metrics: JSON.stringify({ step: 2, reward: 0.5 }) });
    } finally {
      await fx.cleanup();
    }
  });
});
