// Job managers on temporary state and data folders, running the fake trainer
// (test/helpers/fake_trainer.js) in place of `python -m trainer.grpo`.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalBackend } from '../../src/training/backends/local';
import type { TrainerBackend } from '../../src/training/backend';
import { JobManager, JobManagerOptions } from '../../src/training/manager';
import { JobStore } from '../../src/training/store';
import { Db, openDatabase } from '../../src/storage/database';
import { REPO_ROOT } from './vectors';

export const FAKE_TRAINER = join(REPO_ROOT, 'test', 'helpers', 'fake_trainer.js');
export const MODELS_ROOT = join(REPO_ROOT, 'models');

export interface TrainingFixture {
  root: string;
  stateDir: string;
  dataDir: string;
  db: Db;
  store: JobStore;
  managers: JobManager[];
  /** A manager on this fixture's folders (closed by cleanup). */
  manager(options?: Partial<JobManagerOptions> & { fake?: Record<string, string> }): JobManager;
  cleanup(): Promise<void>;
}

/** The fake trainer as a local backend; `fake` sets its FAKE_* behaviour variables. */
export function fakeBackend(fake: Record<string, string> = {}, parentEnv?: NodeJS.ProcessEnv): LocalBackend {
  return new LocalBackend({ command: [process.execPath, FAKE_TRAINER], cwd: REPO_ROOT, env: fake, parentEnv, pollMs: 20 });
}

/** One training line in our data set format, enough for path checks (the fake reads nothing). */
export function writeDataset(dir: string, split = 'train') {
  mkdirSync(dir, { recursive: true });
  const record = { id: 'x/0', images: [], question: 'q', choices: ['a', 'b'], answer: 'A', answer_text: 'a', prompt: 'q', task: 'Relation', source: 'test', meta: {} };
  writeFileSync(join(dir, `${split}.jsonl`), `${JSON.stringify(record)}\n`);
}

/** Temporary STATE_DIR and DATA_DIR; DATA_DIR/spatial-synth holds a one-line train split unless `dataset` is false (a fresh start). */
export function trainingFixture(options: { dataset?: boolean } = {}): TrainingFixture {
  const root = mkdtempSync(join(tmpdir(), 'training-'));
  const stateDir = join(root, 'state');
  const dataDir = join(root, 'data');
  if (options.dataset !== false) writeDataset(join(dataDir, 'spatial-synth'));
  const db = openDatabase(stateDir);
  const store = new JobStore(db);
  const managers: JobManager[] = [];
  return {
    root,
    stateDir,
    dataDir,
    db,
    store,
    managers,
    manager({ fake, ...options } = {}) {
      const backend: TrainerBackend = options.backend ?? fakeBackend(fake);
      const manager = new JobManager({
        store,
        stateDir,
        dataDir,
        modelRoots: [MODELS_ROOT, join(stateDir, 'models')],
        listModels: () => [{ name: 'tiny-random', dir: join(MODELS_ROOT, 'tiny-random') }],
        defaultModel: 'tiny-random',
        maxConcurrent: 1,
        cancelGraceMs: 5000,
        pollMs: 20,
        ...options,
        backend,
      });
      managers.push(manager);
      return manager;
    },
    async cleanup() {
      for (const manager of managers) await manager.close();
      // Trainers a test left behind (detached on purpose) must not outlive it.
      for (const row of store.list(1000)) {
        const pid = Number(row.backend_ref);
        if (row.backend === 'local' && Number.isSafeInteger(pid) && pid > 1) {
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      db.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export function readJson<T = Record<string, unknown>>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** Resolves when `predicate` holds, polling every 10 ms (fails after `timeoutMs`). */
export async function until(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A pid that certainly belongs to no live process: one that has just exited. */
export async function deadPid(): Promise<number> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}
