// The service assembled in-process for the HTTP tests: a training fixture's temporary folders
// (STATE_DIR, DATA_DIR), the configuration (testConfig), an engine, the evaluation runs, a job
// manager running the fake trainer, and the express app; dispose() closes them in order.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino, { Level, Logger } from 'pino';
import { EvalRuns, Generator, RunsOptions, SplitLoader } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { RunStore } from '../../src/benchmarks/store';
import type { Config } from '../../src/config';
import type { Engine } from '../../src/engine/engine';
import { createApp } from '../../src/server/app';
import type { JobManager } from '../../src/training/manager';
import { engineFor, testConfig } from './service';
import { TrainingFixture, trainingFixture } from './training';

type ManagerOptions = Parameters<TrainingFixture['manager']>[0];

/** A logger whose JSON lines are pushed onto `lines` (only the newest `keep` of them when given),
 *  for tests that look at what the service logged. */
export function capturingLogger(level: Level, lines: string[], keep?: number): Logger {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      if (keep !== undefined && lines.length > keep) lines.shift();
      done();
    },
  });
  return pino({ level }, sink);
}

/** What the job manager and evaluation runs may be built from. */
export interface TestServiceParts {
  fx: TrainingFixture;
  config: Config;
  engine: Engine;
}

export interface TestServiceOptions {
  /** ADMIN_TOKEN (none: admin routes are disabled). */
  adminToken?: string;
  /** More configuration variables, over testConfig's and the fixture's STATE_DIR and DATA_DIR. */
  env?: Record<string, string>;
  /** The app's logger; the job manager logs to it too. */
  logger?: Logger;
  /** The job manager's options (over the fixture's defaults). */
  jobs?: ManagerOptions | ((parts: TestServiceParts) => ManagerOptions);
  /** The evaluation runs (false: none). Default: concurrency 2, the engine, splitLoader(DATA_DIR). */
  runs?:
    | false
    | {
        concurrency?: number;
        log?: RunsOptions['log'];
        generator?: (parts: TestServiceParts) => Generator;
        loader?: (parts: TestServiceParts) => SplitLoader;
      };
  /** Before the app is made: recover the job manager's jobs, and warm the engine up. */
  recover?: boolean;
  warmup?: boolean;
  /** Serve the app on a free loopback port (`server`, `base`). */
  listen?: boolean;
  /** false: DATA_DIR starts empty (no spatial-synth folder), as on a fresh clone. */
  dataset?: boolean;
}

export interface TestService<R extends EvalRuns | undefined = EvalRuns> extends TestServiceParts {
  jobs: JobManager;
  runs: R;
  app: ReturnType<typeof createApp>['app'];
  server?: Server;
  /** http://127.0.0.1:<port> when listening. */
  base?: string;
  /** Closes the server, the app, the runs, the fixture (its managers and folders), then the engine. */
  dispose(): Promise<void>;
}

export function startTestService(options: TestServiceOptions & { runs: false }): Promise<TestService<undefined>>;
export function startTestService(options?: TestServiceOptions): Promise<TestService>;
export async function startTestService(options: TestServiceOptions = {}): Promise<TestService<EvalRuns | undefined>> {
  const { logger } = options;
  const fx = trainingFixture({ dataset: options.dataset });
  let engine: Engine | undefined;
  let runs: EvalRuns | undefined;
  let disposeApp: (() => void) | undefined;
  let server: Server | undefined;
  const dispose = async () => {
    if (server) await new Promise((resolve) => server!.close(resolve));
    disposeApp?.();
    await runs?.close();
    await fx.cleanup();
    await engine?.dispose();
  };
  try {
    const token: Record<string, string> = options.adminToken === undefined ? {} : { ADMIN_TOKEN: options.adminToken };
    const config = testConfig({ ...token, STATE_DIR: fx.stateDir, DATA_DIR: fx.dataDir, ...options.env });
    engine = engineFor(config);
    const parts: TestServiceParts = { fx, config, engine };
    const jobOptions = typeof options.jobs === 'function' ? options.jobs(parts) : options.jobs;
    const jobs = fx.manager({
      ...(logger && { log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => logger[level](fields ?? {}, message) }),
      ...jobOptions,
    });
    if (options.runs !== false) {
      const { concurrency = 2, log, generator, loader } = options.runs ?? {};
      runs = new EvalRuns(new RunStore(fx.db), generator ? generator(parts) : engine, loader ? loader(parts) : splitLoader(config.dataDir), { concurrency, ...(log && { log }) });
    }
    if (options.recover) await jobs.recover();
    if (options.warmup) await engine.warmup();
    const created = createApp({ config, engine, runs, jobs, logger, state: { draining: false, warmed: true } });
    disposeApp = created.dispose;
    let base: string | undefined;
    if (options.listen) {
      server = await new Promise<Server>((resolve) => {
        const s = created.app.listen(0, '127.0.0.1', () => resolve(s));
      });
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    return { ...parts, jobs, runs, app: created.app, server, base, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}
