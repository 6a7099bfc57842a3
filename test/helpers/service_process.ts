// The service as its own process on loopback (`src/server/main.ts` through tsx), for the tests
// that need a real second process (remote models: test/server/remote_processes.test.ts) and for
// bench/evaluation.ts, which runs an evaluation through such processes as remote replicas.
import { ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from './vectors';

export interface ServiceProcess {
  child: ChildProcess;
  base: string;
  /** stdout and stderr together. */
  output: () => string;
  exited: Promise<number | null>;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/**
 * Starts the service on 127.0.0.1:`port` with this process's environment, quiet logs, one thread
 * and MAX_NEW_TOKENS 64, then `env` over them.
 */
export function startServiceProcess(env: Record<string, string>, port: number): ServiceProcess {
  let output = '';
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', join(REPO_ROOT, 'src/server/main.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', THREADS: '1', MAX_NEW_TOKENS: '64', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, base: `http://127.0.0.1:${port}`, output: () => output, exited };
}

/** Until `probe` answers 200: /readyz, or /healthz (until it listens) for WARMUP=false, where readiness waits for a first load. */
export async function serviceReady(service: ServiceProcess, probe = '/readyz', timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${service.base}${probe}`)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (service.child.exitCode !== null) throw new Error(`the service exited: ${service.output()}`);
    if (Date.now() > deadline) throw new Error(`the service did not get ready: ${service.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILL, and wait for the exit (nothing to do if it has exited). */
export async function stopServiceProcess(service: ServiceProcess | undefined): Promise<void> {
  if (!service || service.child.exitCode !== null) return;
  service.child.kill('SIGKILL');
  await service.exited;
}
