// The service process: configuration, engine, HTTP server, warm-up, and graceful shutdown
// (SIGTERM: /readyz goes 503, no new connections, in-flight requests finish, then exit).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig, REPO_ROOT } from '../config';
import { engineFromConfig } from '../engine/from_config';
import { closeSharedParquetReader } from '../benchmarks/loaders';
import { EvalRuns } from '../benchmarks/runs';
import { splitLoader } from '../benchmarks/splits';
import { RunStore } from '../benchmarks/store';
import { openDatabase } from '../storage/database';
import type { TrainerBackend } from '../training/backend';
import { kubeApiFromDefaultConfig, defaultNamespace } from '../training/backends/kube_api';
import { KubernetesBackend } from '../training/backends/kubernetes';
import { LocalBackend } from '../training/backends/local';
import { JobManager } from '../training/manager';
import { JobStore } from '../training/store';
import { createApp } from './app';

/** Where trainers run: `python -m trainer.grpo` beside the service, or Kubernetes Jobs. */
export function trainerBackendFromConfig(config: ReturnType<typeof loadConfig>, log?: (message: string, fields?: Record<string, unknown>) => void): TrainerBackend {
  if (config.trainBackend === 'kubernetes') {
    return new KubernetesBackend({
      api: kubeApiFromDefaultConfig(),
      namespace: defaultNamespace(config.k8sNamespace),
      image: config.k8sTrainerImage!,
      statePvc: config.k8sStatePvc!,
      stateDir: config.stateDir,
      template: readFileSync(join(REPO_ROOT, 'k8s', 'training-job.yaml'), 'utf8'),
      cancelGraceMs: config.trainCancelGraceMs,
      log,
    });
  }
  return new LocalBackend({ command: [config.trainerPython, '-m', 'trainer.grpo'], cwd: REPO_ROOT });
}

async function main() {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  const engine = engineFromConfig(config);
  const db = openDatabase(config.stateDir);
  const runs = new EvalRuns(new RunStore(db), engine, splitLoader(config.dataDir), {
    concurrency: config.maxBatchSize,
    log: (message, fields) => logger.info(fields ?? {}, message),
  });
  const jobs = new JobManager({
    store: new JobStore(db),
    backend: trainerBackendFromConfig(config, (message, fields) => logger.warn(fields ?? {}, message)),
    stateDir: config.stateDir,
    dataDir: config.dataDir,
    modelRoots: config.modelRoots,
    // Remote models have no folder to train from.
    listModels: () => engine.listModels().filter((m) => !m.remote),
    defaultModel: config.defaultModel,
    maxConcurrent: config.trainMaxConcurrent,
    cancelGraceMs: config.trainCancelGraceMs,
    log: (level, message, fields) => logger[level](fields ?? {}, message),
  });
  // Remote models: a replica serving another model id stops the start; an unreachable one is logged.
  for (const warning of await engine.checkRemotes()) logger.warn(warning);
  // Jobs the previous process left running: re-attached, resumed from a checkpoint, or failed.
  await jobs.recover();
  const state = { draining: false, warmed: false };
  const { app } = createApp({ config, engine, runs, jobs, logger, state });
  const server = createServer(app);
  // Generation can take minutes; headers must still arrive promptly.
  server.requestTimeout = config.requestTimeoutMs + 10_000;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve) => server.listen(config.port, config.host, resolve));
  logger.info({ port: config.port, model: config.defaultModel, models: engine.listModels().map((m) => m.name) }, 'listening');

  if (config.warmup) {
    engine
      .warmup()
      .then(() => {
        state.warmed = true;
        logger.info({ model: config.defaultModel }, 'default model loaded; ready');
        const resumed = runs.resumeInterrupted();
        if (resumed.length) logger.info({ runs: resumed }, 'resumed interrupted evaluation runs');
      })
      .catch((error) => {
        logger.fatal({ err: error }, `cannot load the default model ${config.defaultModel}`);
        process.exit(1);
      });
  } else {
    state.warmed = true;
    runs.resumeInterrupted();
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Readiness fails and new generation work is refused (503) at once; in-flight requests go on.
    state.draining = true;
    logger.info({ signal }, 'draining: finishing in-flight requests');
    const deadline = Date.now() + config.shutdownGraceMs;
    // Evaluation runs stop taking items and stay "running" in the database: they resume at the
    // next start without re-scoring what is stored.
    const runsClosed = runs.close();
    // Trainers run in their own process groups and keep going; the next start re-attaches them.
    const jobsClosed = jobs.close();
    const drained = engine.drain();
    // Keep listening a moment so load balancers observe /readyz failing before connections close.
    await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Keep-alive connections become idle as their last response ends: close them as they do.
    const reaper = setInterval(() => server.closeIdleConnections(), 100);
    const grace = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
    await Promise.race([Promise.all([drained, closed, runsClosed, jobsClosed]), grace]);
    clearInterval(reaper);
    server.closeAllConnections();
    await engine.dispose();
    await closeSharedParquetReader();
    db.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
