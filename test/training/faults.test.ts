// Faults under the HTTP service, in process (the real job manager with the fake trainer, the real
// evaluation runs and engine): a trainer killed with SIGKILL in the middle of a job, a database
// that refuses writes (a full disk: SQLITE_FULL at the statement, as SQLite reports it; a
// read-only database: SQLite's own SQLITE_READONLY) when work is created, while a job ends and
// while an evaluation stores its predictions, and a DATA_DIR that is missing or not a folder.
// Each time: a clear answer in the error envelope (never a 500) or a job or run ended with a clear
// reason, nothing stored before lost or altered, and the service still serving.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import request from 'supertest';
import { EvalRuns } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { RunStore } from '../../src/benchmarks/store';
import { BENCHMARKS } from '../../src/benchmarks/types';
import { Engine } from '../../src/engine/engine';
import { createApp } from '../../src/server/app';
import type { Db } from '../../src/storage/database';
import { JobManager } from '../../src/training/manager';
import { capturingLogger, startTestService, TestService } from '../helpers/app';
import { testConfig, vectorPng } from '../helpers/service';
import { readJson, TrainingFixture, until } from '../helpers/training';

const TOKEN = 'faults-admin-token-31c9';
const auth = { Authorization: `Bearer ${TOKEN}` };
const WRITE = /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i;

type Statement = Database.Statement & { source: string; database: Db };

/**
 * Statements of `db` whose SQL a predicate picks throw the SqliteError SQLite gives for `code`,
 * where SQLite would (at run(), inside any transaction, which then rolls back).
 */
function writeFaults(db: Db) {
  const proto = Object.getPrototypeOf(db.prepare('SELECT 1')) as { run: (...args: unknown[]) => Database.RunResult };
  const original = proto.run;
  let failing: { picks: (sql: string) => boolean; code: string; message: string } | null = null;
  const spy = jest.spyOn(proto, 'run').mockImplementation(function (this: Statement, ...args: unknown[]) {
    if (failing && this.database === db && failing.picks(this.source)) throw new Database.SqliteError(failing.message, failing.code);
    return original.apply(this, args);
  });
  return {
    full(picks: (sql: string) => boolean = (sql) => WRITE.test(sql)) {
      failing = { picks, code: 'SQLITE_FULL', message: 'database or disk is full' };
    },
    clear() {
      failing = null;
    },
    restore: () => spy.mockRestore(),
  };
}

/** Every row of every table, read through a connection of its own (what a restart would see). */
function storedRows(stateDir: string): Record<string, unknown[]> {
  const db = new Database(join(stateDir, 'service.db'), { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT * FROM ${t} ORDER BY rowid`).all()]));
  } finally {
    db.close();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('faults of trainers, storage and data', () => {
  let fx: TrainingFixture;
  let engine: Engine;
  let jobs: JobManager;
  let runs: EvalRuns;
  let faults: ReturnType<typeof writeFaults>;
  // The evaluation runs' generations: how many were started, and those not finished yet.
  const generations = { started: 0, inFlight: new Set<Promise<unknown>>() };
  let service: TestService;
  let app: TestService['app'];
  const logs: string[] = [];

  beforeAll(async () => {
    const logger = capturingLogger('info', logs);
    service = await startTestService({
      adminToken: TOKEN,
      env: { LOG_LEVEL: 'info' },
      logger,
      // Trainers of this manager make two steps, then wait (a long job in the middle of its work);
      // a job of one step finishes.
      jobs: { fake: { FAKE_TRAINER: 'hang', FAKE_HANG_AFTER: '2' } },
      runs: {
        concurrency: 2,
        log: (message, fields) => logger.info(fields ?? {}, message),
        generator: ({ engine }) => ({
          generateText(req: Parameters<Engine['generateText']>[0]) {
            generations.started += 1;
            const running = engine.generateText(req);
            generations.inFlight.add(running);
            void running.catch(() => undefined).finally(() => generations.inFlight.delete(running));
            return running;
          },
        }),
      },
    });
    ({ fx, engine, jobs, runs, app } = service);
    faults = writeFaults(fx.db);
  });
  afterEach(() => faults.clear());
  afterAll(async () => {
    faults.restore();
    await service.dispose();
  });

  async function expectServing() {
    await request(app).get('/healthz').expect(200);
    const res = await request(app).post('/generate').attach('image', vectorPng('56x56'), 'in.png').field('question', 'How many objects?').field('max_new_tokens', '3');
    expect(res.status).toBe(200);
    expect(res.body.usage.completion_tokens).toBe(3);
  }

  /** A job with its trainer two steps in and waiting; its pid. */
  async function runningJob(): Promise<{ id: string; pid: number }> {
    const created = await request(app).post('/admin/train').set(auth).send({ steps: 50 }).expect(202);
    const id = created.body.id as string;
    await until(() => jobs.get(id)!.progress.step === 2 && fx.store.get(id)!.backend_ref !== null, 20_000, 'two steps of the trainer');
    return { id, pid: Number(fx.store.get(id)!.backend_ref) };
  }

  test('kill -9 of the trainer mid-job: the job fails naming the signal, the service keeps serving, the next job runs', async () => {
    const { id, pid } = await runningJob();
    process.kill(pid, 'SIGKILL');
    const ended = await jobs.wait(id);
    expect(isAlive(pid)).toBe(false);
    expect(ended).toMatchObject({ status: 'failed', progress: { step: 2 }, model_name: null });
    // The reason: the signal, then the trainer's last words.
    expect(ended!.error).toMatch(/^the trainer was killed by SIGKILL; last lines of trainer\.log:\n/);
    expect(ended!.error).toContain('[grpo] step 2/50');
    const seen = await request(app).get(`/admin/train/${id}`).set(auth).expect(200);
    expect(seen.body).toMatchObject({ status: 'failed', error: ended!.error });
    // Its steps so far are kept.
    expect([...jobs.history(id)].map((m) => m.step)).toEqual([1, 2]);
    await expectServing();
    // The slot is free again.
    const next = await request(app).post('/admin/train').set(auth).send({ steps: 1 }).expect(202);
    expect((await jobs.wait(next.body.id))!.status).toBe('succeeded');
  });

  test('disk full when work is created: 503 storage_full with Retry-After, nothing stored or left behind, then it works again', async () => {
    const before = storedRows(fx.stateDir);
    const folders = readdirSync(join(fx.stateDir, 'jobs')).sort();
    faults.full();
    for (const res of [
      await request(app).post('/admin/train').set(auth).send({ steps: 1 }),
      await request(app).post('/evaluate').send({ benchmark: 'spatial-synth', limit: 2, max_new_tokens: 2 }),
    ]) {
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: { code: 'storage_full', message: expect.stringMatching(/no storage space left.*try again later/) } });
      expect(res.headers['retry-after']).toBe('30');
      // 5xx messages carry no internals (paths); the log has the error for the operator.
      expect(res.body.error.message).not.toContain(fx.root);
    }
    expect(logs.join('')).toContain('"code":"SQLITE_FULL"');
    faults.clear();
    expect(storedRows(fx.stateDir)).toEqual(before);
    expect(readdirSync(join(fx.stateDir, 'jobs')).sort()).toEqual(folders);
    await expectServing();
    const res = await request(app).post('/admin/train').set(auth).send({ steps: 1 }).expect(202);
    expect((await jobs.wait(res.body.id))!.status).toBe('succeeded');
  });

  test('a read-only database (SQLite refuses every write): 503 storage_unavailable, then it works again', async () => {
    const before = storedRows(fx.stateDir);
    fx.db.pragma('query_only = ON');
    try {
      for (const res of [
        await request(app).post('/admin/train').set(auth).send({ steps: 1 }),
        await request(app).post('/evaluate').send({ benchmark: 'spatial-synth', limit: 2, max_new_tokens: 2 }),
      ]) {
        expect(res.status).toBe(503);
        expect(res.body).toEqual({ error: { code: 'storage_unavailable', message: expect.stringMatching(/try again later/) } });
        expect(res.headers['retry-after']).toBe('30');
      }
      // Reads still work.
      await request(app).get('/admin/train').set(auth).expect(200);
      await request(app).get('/evaluate').expect(200);
    } finally {
      fx.db.pragma('query_only = OFF');
    }
    expect(storedRows(fx.stateDir)).toEqual(before);
    const res = await request(app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 2, max_new_tokens: 2 }).expect(200);
    expect(res.body).toMatchObject({ status: 'succeeded', progress: { done: 2, total: 2 } });
  });

  test('disk full when a trainer ends: the job keeps running in the database until its end can be stored, nothing else changes', async () => {
    const { id, pid } = await runningJob();
    const before = storedRows(fx.stateDir);
    faults.full();
    process.kill(pid, 'SIGKILL');
    await until(() => logs.some((l) => l.includes('cannot store that a training job failed; retrying') && l.includes(id)), 20_000, 'the refused write');
    // Nothing changed in the database; the service answers meanwhile.
    expect(storedRows(fx.stateDir)).toEqual(before);
    expect((await request(app).get(`/admin/train/${id}`).set(auth).expect(200)).body.status).toBe('running');
    await expectServing();
    faults.clear();
    const ended = await jobs.wait(id);
    expect(ended).toMatchObject({ status: 'failed', progress: { step: 2 } });
    expect(ended!.error).toMatch(/^the trainer was killed by SIGKILL/);
    // Only that job's row changed.
    const after = storedRows(fx.stateDir);
    expect(after.train_metrics).toEqual(before.train_metrics);
    expect((after.train_jobs as { id: string }[]).filter((j) => j.id !== id)).toEqual((before.train_jobs as { id: string }[]).filter((j) => j.id !== id));
  });

  test('disk full while an evaluation stores its predictions: the run fails with the reason, every stored prediction is counted, none is stored after', async () => {
    // The 4th prediction's progress update fails: its transaction (prediction + progress) rolls back.
    let updates = 0;
    faults.full((sql) => /^\s*UPDATE eval_runs SET done = done \+ 1/.test(sql) && ++updates === 4);
    const startedBefore = generations.started;
    const created = await request(app).post('/evaluate').send({ benchmark: 'spatial-synth', limit: 12, max_new_tokens: 3 }).expect(202);
    const run = await runs.wait(created.body.id);
    expect(run).toMatchObject({ status: 'failed', error: 'database or disk is full' });
    expect(updates).toBeGreaterThanOrEqual(4);
    // The run failed once its workers had stopped: no generation of it is running, none starts
    // later (the service does other work meanwhile), and each one started was stored but the failed one.
    expect(generations.inFlight.size).toBe(0);
    const started = generations.started - startedBefore;
    await expectServing();
    expect(generations.started - startedBefore).toBe(started);
    const rows = storedRows(fx.stateDir);
    const stored = (rows.eval_predictions as { run_id: string; item_id: string; created_at: string }[]).filter((p) => p.run_id === run!.id);
    const row = (rows.eval_runs as { id: string; done: number; finished_at: string }[]).find((r) => r.id === run!.id)!;
    expect(stored.length).toBe(row.done);
    expect(started).toBe(row.done + 1);
    expect(row.done).toBeGreaterThanOrEqual(3);
    expect(row.done).toBeLessThan(12);
    expect(new Set(stored.map((p) => p.item_id)).size).toBe(stored.length);
    // Items in flight when it failed finished first; nothing was scored into the failed run after.
    for (const p of stored) expect(p.created_at <= row.finished_at).toBe(true);
    const lines = (await request(app).get(`/evaluate/${run!.id}/predictions`).expect(200)).text.trim().split('\n');
    expect(lines).toHaveLength(row.done);
  });

  test('disk full in the middle of storing uploaded predictions: 503 storage_full, no run and no prediction stored, then the same upload works', async () => {
    const before = storedRows(fx.stateDir);
    const body = [0, 1, 2].map((i) => JSON.stringify({ id: `spatial-synth/test/00000${i}`, prediction: '<answer>A</answer>' })).join('\n');
    // The run row and the first two predictions are written; the third fails and the transaction rolls back.
    let inserts = 0;
    faults.full((sql) => /^\s*INSERT OR IGNORE INTO eval_predictions/.test(sql) && ++inserts === 3);
    const res = await request(app).post('/evaluate/predictions?benchmark=spatial-synth&limit=3').set('Content-Type', 'application/x-ndjson').send(body);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('storage_full');
    expect(inserts).toBe(3);
    faults.clear();
    expect(storedRows(fx.stateDir)).toEqual(before);
    const ok = await request(app).post('/evaluate/predictions?benchmark=spatial-synth&limit=3').set('Content-Type', 'application/x-ndjson').send(body).expect(201);
    expect(ok.body).toMatchObject({ status: 'succeeded', progress: { done: 3, total: 3 } });
  });

  describe('a DATA_DIR that is missing or not a folder', () => {
    let root: string;
    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), 'faults-data-'));
      writeFileSync(join(root, 'a-file'), 'not a folder');
      mkdirSync(join(root, 'file-inside'));
      for (const benchmark of BENCHMARKS) writeFileSync(join(root, 'file-inside', benchmark), 'a file where the folder should be');
    });
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    test.each([
      ['missing', 'missing'],
      ['a regular file', 'a-file'],
      ['holding files where benchmark folders go', 'file-inside'],
    ])('DATA_DIR %s: evaluation is a 404 saying where the data goes; spatial-synth is generated; a spatial-synth job too, a sat job is a 404', async (_name, where) => {
      const dataDir = join(root, where);
      const config = testConfig({ ADMIN_TOKEN: TOKEN, STATE_DIR: fx.stateDir, DATA_DIR: dataDir });
      const other = new EvalRuns(new RunStore(fx.db), engine, splitLoader(config.dataDir), { concurrency: 2 });
      const otherJobs = fx.manager({ dataDir: config.dataDir, synthItems: { train: 2 } });
      const served = createApp({ config, engine, runs: other, jobs: otherJobs, state: { draining: false, warmed: true } });
      try {
        for (const benchmark of BENCHMARKS.filter((b) => b !== 'spatial-synth')) {
          const res = await request(served.app).post('/evaluate').send({ benchmark });
          expect([benchmark, res.status]).toEqual([benchmark, 404]);
          expect(res.body).toEqual({ error: { code: 'benchmark_data_missing', message: expect.stringContaining(join(dataDir, benchmark)) } });
        }
        const synth = await request(served.app).post('/evaluate?wait=true').send({ benchmark: 'spatial-synth', limit: 1, max_new_tokens: 2 }).expect(200);
        expect(synth.body.status).toBe('succeeded');
        // Training on spatial-synth needs no DATA_DIR either: its split is generated into STATE_DIR.
        const train = await request(served.app).post('/admin/train').set(auth).send({ steps: 1 }).expect(202);
        expect((await otherJobs.wait(train.body.id))!.status).toBe('succeeded');
        expect(readJson(join(fx.stateDir, 'jobs', train.body.id, 'job.json'))).toMatchObject({ dataset: join(fx.stateDir, 'datasets', 'spatial-synth-standard') });
        // A data set made by hand is still a 404 naming the command that makes it.
        const sat = await request(served.app).post('/admin/train').set(auth).send({ dataset: 'sat', steps: 1 });
        expect(sat.status).toBe(404);
        expect(sat.body).toEqual({ error: { code: 'dataset_not_found', message: expect.stringContaining('npm run prepare-data') } });
      } finally {
        served.dispose();
        await other.close();
      }
    });
  });
});
