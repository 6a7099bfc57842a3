// Faults of the real process: kill -9 in the middle of an evaluation and a restart on the same
// state (the run resumes; no prediction lost or duplicated), a state directory that cannot be
// used, and a broken default model (a clear startup error, exit 1).
import { ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { REPO_ROOT, TINY_MODEL_DIR } from '../helpers/vectors';

function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

interface Service {
  child: ChildProcess;
  base: string;
  /** stdout and stderr together. */
  stderr: () => string;
  exited: Promise<number | null>;
}

function startService(env: Record<string, string>, port: number): Service {
  let stderr = '';
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', join(REPO_ROOT, 'src/server/main.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', THREADS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Logs (pino) go to stdout, uncaught errors to stderr: keep both.
  child.stdout!.on('data', (chunk) => (stderr += String(chunk)));
  child.stderr!.on('data', (chunk) => (stderr += String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, base: `http://127.0.0.1:${port}`, stderr: () => stderr, exited };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('process faults', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'faults-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['item', { limit: 40 }, 40, 1],
    ['sample (3 per item)', { limit: 14, samples: 3, temperature: 1, seed: 3 }, 42, 3],
  ])('kill -9 mid-evaluation, restart: the run resumes and every %s is scored exactly once', async (_what, fields, responses, samples) => {
    const port = await freePort();
    const env = { STATE_DIR: join(dir, 'state'), DATA_DIR: join(dir, 'data'), MAX_BATCH_SIZE: '2', DEFAULT_MODEL: 'tiny-random' };
    const first = startService(env, port);
    let second: Service | undefined;
    try {
      await until('ready', async () => ((await fetch(`${first.base}/readyz`)).status === 200 ? true : undefined));
      const created = await fetch(`${first.base}/evaluate`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ benchmark: 'spatial-synth', max_new_tokens: 24, ...fields }),
      });
      const { id } = (await created.json()) as { id: string };
      await until('some predictions', async () => {
        const run = (await (await fetch(`${first.base}/evaluate/${id}`)).json()) as { progress: { done: number } };
        return run.progress.done >= 5 ? true : undefined;
      });
      first.child.kill('SIGKILL');
      await first.exited;

      const db = new Database(join(env.STATE_DIR, 'service.db'), { readonly: true });
      const before = db.prepare('SELECT item_id, sample, prediction FROM eval_predictions WHERE run_id = ?').all(id) as { item_id: string; sample: number; prediction: string }[];
      db.close();
      expect(before.length).toBeGreaterThanOrEqual(5);
      expect(before.length).toBeLessThan(responses);

      second = startService(env, port);
      const finished = await until('the resumed run', async () => {
        const run = (await (await fetch(`${second!.base}/evaluate/${id}`)).json()) as { status: string; progress: { done: number; total: number } };
        return run.status === 'succeeded' ? run : undefined;
      }, 120_000);
      expect(finished.progress).toEqual({ done: responses, total: responses });
      const lines = (await (await fetch(`${second.base}/evaluate/${id}/predictions`)).text()).trim().split('\n').map((l) => JSON.parse(l));
      expect(lines).toHaveLength(responses);
      expect(new Set(lines.map((l) => `${l.id}#${l.sample}`)).size).toBe(responses);
      expect(new Set(lines.map((l) => l.id)).size).toBe(responses / samples);
      for (const p of before) expect(lines.find((l) => l.id === p.item_id && l.sample === p.sample)?.prediction).toBe(p.prediction);
    } finally {
      first.child.kill('SIGKILL');
      second?.child.kill('SIGKILL');
    }
  }, 240_000);

  test('a state directory that cannot be created stops the service with a clear message', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'a file where the state directory should be');
    const service = startService({ STATE_DIR: join(blocker, 'state') }, await freePort());
    expect(await service.exited).toBe(1);
    expect(service.stderr()).toMatch(/state directory .* cannot be created or written.*STATE_DIR/);
  }, 60_000);

  test('a default model with a missing graph or wrong input names is a clear startup error', async () => {
    for (const [name, breakIt, message] of [
      ['no-decoder', (d: string) => rmSync(join(d, 'onnx', 'decoder_model_merged.onnx')), /no onnx\/decoder_model_merged\.onnx/],
      ['wrong-io', (d: string) => copyFileSync(join(d, 'onnx', 'vision_encoder.onnx'), join(d, 'onnx', 'decoder_model_merged.onnx')), /lacks input\(s\) inputs_embeds/],
    ] as const) {
      const model = join(dir, name);
      cpSync(TINY_MODEL_DIR, model, { recursive: true });
      breakIt(model);
      const service = startService({ MODEL_DIR: model, STATE_DIR: join(dir, `state-${name}`), LOG_LEVEL: 'fatal' }, await freePort());
      expect(await service.exited).toBe(1);
      expect(service.stderr()).toMatch(message);
    }
  }, 120_000);
});
