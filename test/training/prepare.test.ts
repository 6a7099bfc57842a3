// A job's `preparing` phase (src/training/manager.ts, datasets.ts, prepare.ts): a spatial-synth
// split missing on a fresh start is generated into STATE_DIR while the job is preparing, with its
// progress in the job's status and events, and reused by later jobs; the local trainer's Python
// environment is made when its check says so; cancels, restarts and failures while preparing.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as datasets from '../../src/training/datasets';
import { LocalBackend, defaultSetup, setupEnvironment } from '../../src/training/backends/local';
import { JobEvent, JobManager, JobView } from '../../src/training/manager';
import { expectServiceError } from '../helpers/errors';
import { FAKE_TRAINER, readJson, TrainingFixture, trainingFixture, until, writeDataset } from '../helpers/training';
import { REPO_ROOT } from '../helpers/vectors';

type Seen = { statuses: string[]; preparing: JobEvent[]; views: JobView[] };

/** Status changes and preparing events of one job, and its view at each preparing event. */
function watch(manager: JobManager, id: () => string | undefined): Seen {
  const seen: Seen = { statuses: [], preparing: [], views: [] };
  manager.onEvent((e) => {
    if (e.jobId !== id()) return;
    if (e.type === 'status') seen.statuses.push(e.status);
    if (e.type === 'preparing') {
      seen.preparing.push(e);
      seen.views.push(manager.get(e.jobId)!);
    }
  });
  return seen;
}

function lines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

/** Width and height of a PNG file (its IHDR chunk). */
function pngSize(file: string): [number, number] {
  const bytes = readFileSync(file);
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

describe('a spatial-synth job on a fresh start (no DATA_DIR/spatial-synth)', () => {
  let fx: TrainingFixture;
  beforeEach(() => {
    fx = trainingFixture({ dataset: false });
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await fx.cleanup();
  });

  test('the train split is generated into STATE_DIR/datasets while the job is preparing, then reused', async () => {
    const manager = fx.manager({ synthItems: { train: 6 }, synthConcurrency: 2, fake: { FAKE_STEP_MS: '5' } });
    let id: string | undefined;
    const seen = watch(manager, () => id);
    const job = manager.create({ dataset: 'spatial-synth', steps: 2 });
    id = job.id;
    const dir = join(fx.stateDir, 'datasets', 'spatial-synth-standard');
    expect(job).toMatchObject({ status: 'queued', preparing: null, request: { dataset: 'spatial-synth', level: 'standard', steps: 2 } });
    expect(readJson(join(job.job_dir, 'job.json'))).toMatchObject({ dataset: dir });
    expect(existsSync(join(dir, 'train.jsonl'))).toBe(false);

    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'succeeded', preparing: null, progress: { step: 2 } });
    expect(seen.statuses).toEqual(['preparing', 'running', 'succeeded']);
    // Progress while preparing: in the events and in the job's view, up to every item.
    expect(seen.preparing.length).toBeGreaterThan(0);
    expect(seen.views.every((v) => v.status === 'preparing' && v.preparing?.stage === 'dataset')).toBe(true);
    const last = seen.preparing.at(-1) as Extract<JobEvent, { type: 'preparing' }>;
    expect(last.preparing).toMatchObject({ stage: 'dataset', done: 6, total: 6 });

    // The split as `npm run synth` writes it (seed 1, standard level, 448 px), complete and alone.
    const records = lines(join(dir, 'train.jsonl'));
    expect(records.map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5].map((i) => `spatial-synth/train/00000${i}`));
    expect(records[0]).toMatchObject({ source: 'spatial-synth', meta: { level: 'standard', seed: 1, split: 'train' } });
    expect(pngSize(join(dir, 'images', 'train', '000005.png'))).toEqual([448, 448]);
    expect(readJson(join(dir, 'dataset.json'))).toMatchObject({ counts: { train: 6 }, generator: { level: 'standard', seed: 1 } });
    expect(readdirSync(dir).sort()).toEqual(['dataset.json', 'images', 'train.jsonl']);
    expect(readFileSync(join(job.job_dir, 'trainer.log'), 'utf8')).toMatch(/preparing: generating spatial-synth train split, level standard, 6 items[\s\S]*wrote .*train\.jsonl \(6 items/);

    // The next job finds the split: no preparing, nothing written again.
    const before = statSync(join(dir, 'train.jsonl')).mtimeMs;
    const generate = jest.spyOn(datasets, 'generateSynthSplit');
    const again = manager.create({ dataset: 'spatial-synth', steps: 1 });
    id = again.id;
    seen.statuses.length = 0;
    expect((await manager.wait(again.id))!.status).toBe('succeeded');
    expect(seen.statuses).toEqual(['running', 'succeeded']);
    expect(generate).not.toHaveBeenCalled();
    expect(statSync(join(dir, 'train.jsonl')).mtimeMs).toBe(before);
    expect(readJson(join(again.job_dir, 'job.json'))).toMatchObject({ dataset: dir });
  });

  test('the easy level has its own folder (168 px images); another split is added beside the first', async () => {
    const manager = fx.manager({ synthItems: { train: 3, val: 2 }, synthConcurrency: 2, fake: { FAKE_STEP_MS: '5' } });
    const easy = manager.create({ level: 'easy', steps: 1 });
    expect(easy.request).toMatchObject({ dataset: 'spatial-synth', level: 'easy' });
    expect((await manager.wait(easy.id))!.status).toBe('succeeded');
    const dir = join(fx.stateDir, 'datasets', 'spatial-synth-easy');
    expect(lines(join(dir, 'train.jsonl')).map((r) => (r.meta as { level: string }).level)).toEqual(['easy', 'easy', 'easy']);
    expect(pngSize(join(dir, 'images', 'train', '000000.png'))).toEqual([168, 168]);

    const val = manager.create({ level: 'easy', split: 'val', steps: 1 });
    expect((await manager.wait(val.id))!.status).toBe('succeeded');
    expect(lines(join(dir, 'val.jsonl'))).toHaveLength(2);
    expect(existsSync(join(dir, 'images', 'train', '000002.png'))).toBe(true);
    expect(readJson(join(dir, 'dataset.json'))).toMatchObject({ counts: { train: 3, val: 2 }, files: { train: 'train.jsonl', val: 'val.jsonl' } });
    expect(existsSync(join(fx.stateDir, 'datasets', 'spatial-synth-standard'))).toBe(false);
  });

  test('two jobs needing the same split wait for one generation', async () => {
    const manager = fx.manager({ synthItems: { train: 8 }, synthConcurrency: 2, maxConcurrent: 2, fake: { FAKE_STEP_MS: '5' } });
    const generate = jest.spyOn(datasets, 'generateSynthSplit');
    const a = manager.create({ steps: 1 });
    const b = manager.create({ steps: 1 });
    await until(() => manager.get(a.id)!.status === 'preparing' && manager.get(b.id)!.status === 'preparing', 10_000, 'both preparing');
    const [da, db] = await Promise.all([manager.wait(a.id), manager.wait(b.id)]);
    expect([da!.status, db!.status]).toEqual(['succeeded', 'succeeded']);
    expect(generate).toHaveBeenCalledTimes(1);
  });

  test('a preparing job holds its slot; a cancel ends it at once, the generation goes on for the next job; close() stops it and leaves no partial split', async () => {
    const manager = fx.manager({ synthItems: { train: 5000 }, synthConcurrency: 1, maxConcurrent: 1 });
    const job = manager.create({ steps: 1 });
    const next = manager.create({ steps: 1 });
    await until(() => (manager.get(job.id)!.preparing?.done ?? 0) > 0, 20_000, 'generation under way');
    expect(manager.get(next.id)!.status).toBe('queued');
    const answer = manager.cancel(job.id)!;
    expect(answer).toMatchObject({ cancel_requested: true });
    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'cancelled', preparing: null, attempts: 0 });
    // The next job joins the generation under way: its progress does not start again from 0.
    await until(() => manager.get(next.id)!.status === 'preparing', 10_000, 'next job preparing');
    expect(manager.get(next.id)!.preparing!.done).toBeGreaterThan(0);
    const dir = join(fx.stateDir, 'datasets', 'spatial-synth-standard');
    expect(existsSync(join(dir, '.partial-train'))).toBe(true);
    await manager.close();
    expect(existsSync(join(dir, '.partial-train'))).toBe(false);
    expect(existsSync(join(dir, 'train.jsonl'))).toBe(false);
    expect(fx.store.get(next.id)!.status).toBe('preparing');
  });

  test('a job preparing when the service stops is queued again at the next start and prepared again', async () => {
    const first = fx.manager({ synthItems: { train: 5000 }, synthConcurrency: 1 });
    const job = first.create({ steps: 1 });
    await until(() => first.get(job.id)!.status === 'preparing', 10_000, 'preparing');
    await first.close();
    expect(fx.store.get(job.id)!.status).toBe('preparing');

    const second = fx.manager({ synthItems: { train: 3 }, synthConcurrency: 2, fake: { FAKE_STEP_MS: '5' } });
    await second.recover();
    const done = await second.wait(job.id);
    expect(done).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(lines(join(fx.stateDir, 'datasets', 'spatial-synth-standard', 'train.jsonl'))).toHaveLength(3);
  });

  test('a failed generation fails the job with the reason', async () => {
    const manager = fx.manager({ synthItems: { train: 2 } });
    jest.spyOn(datasets, 'generateSynthSplit').mockRejectedValueOnce(new Error('ENOSPC: no space left on device'));
    const job = manager.create({ steps: 1 });
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toMatch(/^preparing failed: generating spatial-synth train split \(level standard\) into .*: ENOSPC/);
    expect(done!.attempts).toBe(0);
  });

  test('what the request names is checked: level only for spatial-synth, spatial-synth splits only', () => {
    const manager = fx.manager();
    writeDataset(join(fx.dataDir, 'mine'));
    expectServiceError(() => manager.create({ dataset: 'mine', level: 'easy' }), 400, 'level_unsupported');
    expectServiceError(() => manager.create({ dataset: 'spatial-synth', split: 'dev' }), 400, 'unknown_split');
    expect(manager.create({ dataset: 'mine' }).request).not.toHaveProperty('level');
    expect(fx.store.list()).toHaveLength(1);
  });
});

describe('DATA_DIR/spatial-synth, when the synth command wrote it', () => {
  let fx: TrainingFixture;
  beforeEach(() => {
    fx = trainingFixture();
  });
  afterEach(async () => {
    await fx.cleanup();
  });

  test('is used as it is (no preparing) at its own level, and not for another level', () => {
    const placed = join(fx.dataDir, 'spatial-synth');
    expect(datasets.chooseDataset('spatial-synth', { dataDir: fx.dataDir, stateDir: fx.stateDir, split: 'train' })).toEqual({ dir: placed, level: 'standard' });
    expect(datasets.chooseDataset('spatial-synth', { dataDir: fx.dataDir, stateDir: fx.stateDir, split: 'train', level: 'standard' })).toEqual({ dir: placed, level: 'standard' });
    expect(datasets.chooseDataset('spatial-synth', { dataDir: fx.dataDir, stateDir: fx.stateDir, split: 'train', level: 'easy' })).toEqual({
      dir: join(fx.stateDir, 'datasets', 'spatial-synth-easy'),
      level: 'easy',
      generate: true,
    });
    writeFileSync(join(placed, 'dataset.json'), JSON.stringify({ generator: { level: 'easy' } }));
    expect(datasets.chooseDataset('spatial-synth', { dataDir: fx.dataDir, stateDir: fx.stateDir, split: 'train' })).toEqual({ dir: placed, level: 'easy' });
  });

  test('a job on it goes straight from queued to running', async () => {
    const manager = fx.manager({ fake: { FAKE_STEP_MS: '5' } });
    const watched: { id?: string } = {};
    const seen = watch(manager, () => watched.id);
    const job = manager.create({ steps: 1 });
    watched.id = job.id;
    expect(job.request).toMatchObject({ dataset: 'spatial-synth', level: 'standard' });
    expect((await manager.wait(job.id))!.status).toBe('succeeded');
    expect(seen.statuses).toEqual(['running', 'succeeded']);
    expect(existsSync(join(fx.stateDir, 'datasets'))).toBe(false);
  });
});

describe("the local trainer's environment", () => {
  let fx: TrainingFixture;
  let marker: string;
  beforeEach(() => {
    fx = trainingFixture();
    marker = join(fx.root, 'venv-ready');
  });
  afterEach(async () => {
    await fx.cleanup();
  });

  /** The fake trainer, with a setup whose check passes once `make` has written the marker. */
  function backend(make: string): LocalBackend {
    return new LocalBackend({
      command: [process.execPath, FAKE_TRAINER],
      cwd: REPO_ROOT,
      pollMs: 20,
      env: { FAKE_STEP_MS: '5' },
      setup: {
        check: [process.execPath, '-e', `process.exit(require('fs').existsSync(${JSON.stringify(marker)}) ? 0 : 1)`],
        make: [process.execPath, '-e', make],
        description: 'the test environment',
      },
    });
  }

  test('is made while the first job is preparing (its output in trainer.log and the progress), then only checked', async () => {
    // Each line stands for over a second: each must reach the events (held back 500 ms at most).
    const make = `console.log('Collecting torch'); setTimeout(() => console.error('Installing collected packages: torch'), 1200); setTimeout(() => require('fs').writeFileSync(${JSON.stringify(marker)}, ''), 2400);`;
    const manager = fx.manager({ backend: backend(make) });
    let id: string | undefined;
    const seen = watch(manager, () => id);
    const job = manager.create({ steps: 1 });
    id = job.id;
    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'succeeded', preparing: null });
    expect(seen.statuses).toEqual(['preparing', 'running', 'succeeded']);
    const messages = seen.preparing.map((e) => (e as Extract<JobEvent, { type: 'preparing' }>).preparing);
    expect(messages.every((p) => p.stage === 'environment')).toBe(true);
    expect(messages.map((p) => p.message)).toEqual(expect.arrayContaining(['making the test environment', 'Collecting torch', 'Installing collected packages: torch']));
    expect(readFileSync(join(job.job_dir, 'trainer.log'), 'utf8')).toMatch(/preparing: making the test environment\nCollecting torch\nInstalling collected packages: torch\n[\s\S]*\[grpo\] done/);

    const again = manager.create({ steps: 1 });
    id = again.id;
    seen.statuses.length = 0;
    expect((await manager.wait(again.id))!.status).toBe('succeeded');
    expect(seen.statuses).toEqual(['running', 'succeeded']);
  });

  test('a setup that fails fails the job with its last output lines; the next job tries again', async () => {
    const manager = fx.manager({ backend: backend(`console.error('ERROR: No matching distribution found for torch==9.9'); process.exit(1);`) });
    const job = manager.create({ steps: 1 });
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toMatch(/^preparing failed: making the test environment: .* exited with code 1; last lines of trainer.log:\n[\s\S]*No matching distribution found/);
    const next = manager.create({ steps: 1 });
    await until(() => manager.get(next.id)!.status !== 'queued', 5000, 'next job leaves the queue');
    expect((await manager.wait(next.id))!.status).toBe('failed');
  });

  test('the default setup belongs to the repository .venv only; its environment carries index settings, no secrets', () => {
    expect(defaultSetup([join(REPO_ROOT, '.venv', 'bin', 'python'), '-m', 'trainer.grpo'], REPO_ROOT)).toEqual({
      check: ['bash', join(REPO_ROOT, 'scripts', 'setup.sh'), '--check', 'python'],
      make: ['bash', join(REPO_ROOT, 'scripts', 'setup.sh'), 'python'],
      description: "the trainer's Python environment (.venv)",
    });
    expect(defaultSetup(['/usr/bin/python3', '-m', 'trainer.grpo'], REPO_ROOT)).toBeNull();
    expect(new LocalBackend({ command: [process.execPath, FAKE_TRAINER], cwd: REPO_ROOT }).environment).toBeUndefined();
    expect(new LocalBackend({ command: [join(REPO_ROOT, '.venv', 'bin', 'python')], cwd: REPO_ROOT }).environment?.description).toMatch(/\.venv/);
    const env = setupEnvironment({ PATH: '/bin', HOME: '/h', ADMIN_TOKEN: 'secret', PIP_INDEX_URL: 'http://mirror', HTTPS_PROXY: 'http://p', AWS_SECRET_ACCESS_KEY: 'k' });
    expect(env).toEqual({ PATH: '/bin', HOME: '/h', PIP_INDEX_URL: 'http://mirror', HTTPS_PROXY: 'http://p', SETUP_VERBOSE: '1' });
  });
});

describe('scripts/setup.sh --check', () => {
  test('names what is missing and makes nothing; unknown arguments are refused', () => {
    const root = mkdtempSync(join(tmpdir(), 'setup-check-'));
    try {
      mkdirSync(join(root, 'scripts'));
      cpSync(join(REPO_ROOT, 'scripts', 'setup.sh'), join(root, 'scripts', 'setup.sh'));
      for (const file of ['package.json', 'package-lock.json', 'requirements.txt', 'constraints.txt']) writeFileSync(join(root, file), `${file}\n`);
      const run = (...args: string[]) => spawnSync('bash', ['scripts/setup.sh', ...args], { cwd: root, encoding: 'utf8' });
      const python = run('--check', 'python');
      expect(python.status).toBe(1);
      expect(python.stderr).toContain('missing or stale: .venv');
      const both = run('--check', 'node', 'python');
      expect(both.status).toBe(1);
      expect(both.stderr).toContain('missing or stale: node_modules .venv');
      expect(readdirSync(root).sort()).toEqual(['constraints.txt', 'package-lock.json', 'package.json', 'requirements.txt', 'scripts']);
      expect(run('--check', 'ruby').status).toBe(2);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
