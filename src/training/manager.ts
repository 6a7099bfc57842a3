// The training-job manager: accepts jobs, writes their job.json, runs at most `maxConcurrent`
// trainers at a time through a backend (a local process or Kubernetes), follows each trainer's
// metrics.jsonl into the database, and decides how each job ended (docs/training.md).
// The job folder's files (names, result, checkpoints, log tail, resolved step count) are
// job_folder.ts's; this module is the jobs' state machine.
//
// The database is the queue: a job is `queued` until a slot is free, `preparing` while what its
// trainer needs is made (a spatial-synth split generated into STATE_DIR, the local trainer's
// .venv; skipped when all is there), then `running` while a trainer runs for it. A service
// restart never leaves a job `running` with nothing behind it: recover() re-attaches to trainers
// that are still alive, restarts lost ones from their newest checkpoint (the trainer resumes from
// checkpoints/), and fails those that had none; a job cut short while preparing is queued again.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { LevelName, SplitName } from '../benchmarks/spatial_synth';
import { conflict, invalidInput, shuttingDown } from '../errors';
import type { TrainerBackend, TrainerExit, TrainerHandle, TrainerSpec } from './backend';
import { chooseDataset, generatedSynthDir, generateSynthSplit, SYNTH_TRAINING } from './datasets';
import { MetricsFollower } from './follower';
import { Checkpoint, JobFolder } from './job_folder';
import { buildJobConfig, TrainRequest } from './job_spec';
import { resolveBaseModel } from './paths';
import { Preparing, SharedWork } from './prepare';
import { BackendName, JobRow, JobStatus, JobStore, StepMetrics, TERMINAL } from './store';

export interface JobManagerOptions {
  store: JobStore;
  backend: TrainerBackend;
  /** STATE_DIR: jobs go to STATE_DIR/jobs/<id>, exported models to STATE_DIR/models/<name>. */
  stateDir: string;
  /** DATA_DIR: data sets are confined to it. */
  dataDir: string;
  /** The model roots: base models are confined to them. */
  modelRoots: string[];
  /** The models the engine lists (base_model may name one). */
  listModels: () => { name: string; dir: string }[];
  /** base_model when a request gives none. */
  defaultModel: string;
  /** Trainers running at once (TRAIN_MAX_CONCURRENT). */
  maxConcurrent: number;
  /** Time between a cancel's SIGTERM and SIGKILL (TRAIN_CANCEL_GRACE_MS). */
  cancelGraceMs: number;
  /** How often metrics.jsonl is read, in ms. */
  pollMs?: number;
  /** Items of a generated spatial-synth split (default SYNTH_TRAINING.items: train 20,000). */
  synthItems?: Partial<Record<SplitName, number>>;
  /** Images rendered at once while generating (default: writeDataset's, 2 per CPU). */
  synthConcurrency?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface JobView {
  id: string;
  status: JobStatus;
  backend: BackendName;
  progress: { step: number; total_steps: number | null };
  /** The latest metrics line. */
  metrics: StepMetrics | null;
  /** While `preparing`: what is being made and how far it is (null otherwise). */
  preparing: Preparing | null;
  /** Checkpoints found in the job folder, oldest first. */
  checkpoints: Checkpoint[];
  /** The exported model (servable with POST /admin/models/<name>/load), once succeeded. */
  model_name: string | null;
  error?: string;
  /** A cancel was asked for; the status turns `cancelled` when the trainer has stopped. */
  cancel_requested: boolean;
  request: TrainRequest;
  job_dir: string;
  /** Trainer starts so far (a resume after a restart adds one). */
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export type JobEvent =
  | { type: 'metrics'; jobId: string; metrics: StepMetrics }
  | { type: 'status'; jobId: string; status: JobStatus }
  /** Progress of a preparing job (at most one every PREPARING_EVENT_MS, and at each change of stage). */
  | { type: 'preparing'; jobId: string; preparing: Preparing };

interface Active {
  follower: MetricsFollower;
  /** The stored lines by step (JSON text): only new or changed lines are stored and announced. */
  known: Map<number, string>;
  handle?: TrainerHandle;
  /** Settles once the backend's start has returned (close() waits for it to record the ref). */
  started: Promise<void>;
  timer?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  cancelRequested: boolean;
  /** Ends a preparing job's wait for its preparation (a cancel). */
  stopPreparing?: () => void;
  signalled: boolean;
  detached: boolean;
  totalStepsKnown: boolean;
}

const ID_PREFIX = 'train_';
/** Lines of trainer.log kept in a failed job's error. */
const ERROR_TAIL_LINES = 20;
const MAX_ERROR_CHARS = 4000;
/** Least time between two `preparing` progress events of a job. */
const PREPARING_EVENT_MS = 500;

/** One thing a job needs before its trainer can start. */
type Preparation = { kind: 'dataset'; dir: string; split: SplitName; level: LevelName } | { kind: 'environment' };

class Cancelled extends Error {}

/** The exported model's folder name: grpo-<first 8 hex digits of the job id>. */
export function modelNameFor(id: string): string {
  return `grpo-${id.slice(ID_PREFIX.length, ID_PREFIX.length + 8)}`;
}

export class JobManager {
  private readonly active = new Map<string, Active>();
  private readonly listeners = new Set<(event: JobEvent) => void>();
  private readonly retries = new Set<NodeJS.Timeout>();
  /** Work several preparing jobs may wait for (one generation per split, one environment setup). */
  private readonly work = new SharedWork();
  /** Where each preparing job stands. */
  private readonly preparingNow = new Map<string, Preparing>();
  private scheduleRetryPending = false;
  private closed = false;

  constructor(private readonly options: JobManagerOptions) {}

  /** Check and record a job, write its job.json and queue it. Errors are the caller's 4xx. */
  create(request: TrainRequest): JobView {
    if (this.closed) throw shuttingDown('jobs');
    const { backend } = this.options;
    const nodes = request.nodes ?? 1;
    const gpus = request.gpus ?? 1;
    if (backend.name === 'local' && (nodes > 1 || gpus > 1)) {
      throw invalidInput('backend_unsupported', 'nodes and gpus above 1 need TRAIN_BACKEND=kubernetes; the local backend runs one trainer process on one device');
    }
    if (request.device === 'cpu' && request.gpus !== undefined && request.gpus > 1) {
      throw invalidInput('invalid_request', 'gpus: a device "cpu" job uses no GPUs');
    }
    if (request.freeze_vision && request.freeze_llm) {
      throw invalidInput('invalid_request', 'freeze_vision and freeze_llm are both true: nothing would be trained');
    }
    const baseModel = request.base_model ?? this.options.defaultModel;
    const dataset = request.dataset ?? 'spatial-synth';
    const baseModelDir = resolveBaseModel(baseModel, this.options.listModels(), this.options.modelRoots);
    const choice = chooseDataset(dataset, { dataDir: this.options.dataDir, stateDir: this.options.stateDir, split: request.split ?? 'train', level: request.level });
    const datasetDir = choice.dir;

    const modelsDir = join(this.options.stateDir, 'models');
    let id: string;
    do id = `${ID_PREFIX}${randomBytes(10).toString('hex')}`;
    while (existsSync(this.jobFolder(id).dir) || existsSync(join(modelsDir, modelNameFor(id))));
    const folder = this.jobFolder(id);
    const jobDir = folder.dir;
    mkdirSync(jobDir, { recursive: true });
    mkdirSync(modelsDir, { recursive: true });
    const config = buildJobConfig(request, { jobId: id, baseModelDir, datasetDir, jobDir, exportDir: join(modelsDir, modelNameFor(id)) });
    folder.writeJobConfig(config);

    const accepted: TrainRequest = { ...request, base_model: baseModel, dataset, ...(choice.level ? { level: choice.level } : {}) };
    let row: JobRow;
    try {
      row = this.options.store.insert({ id, request: JSON.stringify(accepted), job_dir: jobDir, backend: backend.name, total_steps: request.steps ?? null });
    } catch (error) {
      // Not recorded (a full disk, say): no folder of a job that does not exist stays behind.
      rmSync(jobDir, { recursive: true, force: true });
      throw error;
    }
    this.log('info', 'training job queued', { id, base_model: baseModelDir, dataset: datasetDir, ...(choice.generate ? { generate_split: request.split ?? 'train' } : {}) });
    this.emit({ type: 'status', jobId: id, status: 'queued' });
    setImmediate(() => this.schedule());
    return this.view(row);
  }

  get(id: string): JobView | undefined {
    const row = this.options.store.get(id);
    return row && this.view(row);
  }

  list(): JobView[] {
    return this.options.store.list().map((row) => this.view(row));
  }

  /** Jobs per status (the vlm_train_jobs gauge). */
  counts(): Record<JobStatus, number> {
    return this.options.store.countByStatus();
  }

  /** Every stored metrics line of a job, in step order. */
  history(id: string): IterableIterator<StepMetrics> {
    return this.options.store.iterateMetrics(id);
  }

  /** Follow metrics lines and status changes of every job; returns a function that stops it. */
  onEvent(listener: (event: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the job once it has reached a terminal status (undefined: unknown id). */
  wait(id: string): Promise<JobView | undefined> {
    return new Promise((resolve) => {
      const check = () => {
        const row = this.options.store.get(id);
        if (row && !TERMINAL.has(row.status)) return;
        off();
        resolve(row && this.view(row));
      };
      const off = this.onEvent((event) => {
        if (event.jobId === id && event.type === 'status') check();
      });
      check();
    });
  }

  /**
   * Stop a job, keeping its checkpoints: a queued job is cancelled at once; a running trainer gets
   * SIGTERM (it checkpoints and exits) and SIGKILL after the grace period. Returns undefined for
   * an unknown id; a finished job is a conflict.
   */
  cancel(id: string): JobView | undefined {
    const { store } = this.options;
    const row = store.get(id);
    if (!row) return undefined;
    if (TERMINAL.has(row.status)) throw conflict('job_finished', `job ${id} has already ${row.status === 'cancelled' ? 'been cancelled' : row.status}`);
    store.requestCancel(id);
    const active = this.active.get(id);
    if ((row.status === 'queued' || row.status === 'preparing') && !active) {
      store.finish(id, 'cancelled');
      this.log('info', 'training job cancelled while queued', { id });
      this.emit({ type: 'status', jobId: id, status: 'cancelled' });
    } else if (active) {
      active.cancelRequested = true;
      // Preparing: the job stops waiting (work other jobs share goes on, and is kept).
      active.stopPreparing?.();
      this.signalCancel(id, active);
    }
    return this.get(id);
  }

  /**
   * At service start: re-attach to trainers still running, restart lost ones from their newest
   * checkpoint (queued again), fail those without one; then start queued jobs.
   */
  async recover(): Promise<void> {
    // Nothing outlives a preparation (it ran in the service): the job starts it again.
    for (const row of this.options.store.withStatus('preparing')) {
      if (this.active.has(row.id)) continue;
      this.options.store.requeue(row.id);
      this.log('info', 'training job was preparing when the service stopped; queued again', { id: row.id });
      this.emit({ type: 'status', jobId: row.id, status: 'queued' });
    }
    for (const row of this.options.store.withStatus('running')) {
      if (!this.active.has(row.id)) await this.recoverJob(row);
    }
    this.schedule();
  }

  /** Shutdown: stop following; trainers keep running and are re-attached at the next start. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.retries) clearTimeout(timer);
    // Generation and setup stop; their jobs stay `preparing` and are queued again at the next start.
    const stopping = this.work.close();
    const starting = [...this.active.values()].map((a) => a.started);
    for (const active of this.active.values()) {
      active.detached = true;
      clearInterval(active.timer);
      clearTimeout(active.killTimer);
      active.handle?.detach();
    }
    // A trainer being started still gets its pid or object name recorded (for re-attaching).
    await Promise.allSettled([...starting, stopping]);
    this.active.clear();
    this.preparingNow.clear();
    this.listeners.clear();
  }

  private jobFolder(id: string): JobFolder {
    return JobFolder.of(this.options.stateDir, id);
  }

  private emit(event: JobEvent) {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.log('error', 'training event listener failed', { error: String(error) });
      }
    }
  }

  private log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) {
    this.options.log?.(level, message, fields);
  }

  private spec(row: JobRow): TrainerSpec {
    const request = JSON.parse(row.request) as TrainRequest;
    const folder = new JobFolder(row.job_dir);
    return {
      jobId: row.id,
      jobDir: row.job_dir,
      jobFile: folder.jobFile,
      logFile: folder.logFile,
      attempt: row.attempts,
      nodes: request.nodes ?? 1,
      gpusPerNode: request.gpus ?? 1,
      device: request.device ?? 'auto',
    };
  }

  /** Start queued jobs, oldest first, while slots are free. Rows still `running` hold a slot. */
  private schedule() {
    if (this.closed) return;
    const { store, maxConcurrent } = this.options;
    try {
      while (store.withStatus('running').length + store.withStatus('preparing').length < maxConcurrent) {
        const next = store.withStatus('queued')[0];
        if (!next) return;
        this.launch(next);
      }
    } catch (error) {
      // The database refused a read or write: the queue stays as stored and is tried again.
      this.log('error', 'cannot start queued training jobs; retrying', { error: String(error) });
      if (this.scheduleRetryPending) return;
      this.scheduleRetryPending = true;
      this.retryLater(() => {
        this.scheduleRetryPending = false;
        this.schedule();
      });
    }
  }

  /** Run `fn` again after a while (a database write failed); close() cancels it. */
  private retryLater(fn: () => void) {
    if (this.closed) return;
    const retry = setTimeout(() => {
      this.retries.delete(retry);
      if (!this.closed) fn();
    }, Math.max(1000, (this.options.pollMs ?? 1000) * 5));
    retry.unref();
    this.retries.add(retry);
  }

  /** What a job needs made before its trainer can start; empty when all is there. */
  private preparations(row: JobRow): Preparation[] {
    const needs: Preparation[] = [];
    const request = JSON.parse(row.request) as TrainRequest;
    if (request.dataset === 'spatial-synth') {
      const level = request.level ?? 'standard';
      let config: { dataset?: unknown; split?: unknown } = {};
      try {
        config = JSON.parse(readFileSync(new JobFolder(row.job_dir).jobFile, 'utf8')) as typeof config;
      } catch {
        // No job.json: the trainer says so when it starts.
      }
      const split = (typeof config.split === 'string' ? config.split : 'train') as SplitName;
      const dir = generatedSynthDir(this.options.stateDir, level);
      if (config.dataset === dir && !existsSync(join(dir, `${split}.jsonl`))) needs.push({ kind: 'dataset', dir, split, level });
    }
    if (this.options.backend.environment?.needed()) needs.push({ kind: 'environment' });
    return needs;
  }

  /** Leave the queue: prepare what is missing (status `preparing`), then start the trainer. */
  private launch(queued: JobRow) {
    const needs = this.preparations(queued);
    if (!needs.length) {
      this.startTrainer(queued.id);
      return;
    }
    const { store } = this.options;
    store.markPreparing(queued.id);
    const row = store.get(queued.id)!;
    const active = this.track(row);
    this.preparingNow.set(row.id, this.describe(needs[0]));
    this.emit({ type: 'status', jobId: row.id, status: 'preparing' });
    active.started = (async () => {
      try {
        for (const need of needs) {
          if (active.cancelRequested) throw new Cancelled('cancelled');
          await this.prepare(row, active, need);
        }
      } catch (error) {
        if (active.detached) return;
        this.preparingNow.delete(row.id);
        if (error instanceof Cancelled || active.cancelRequested) this.conclude(row.id, active, 'cancelled');
        else this.conclude(row.id, active, 'failed', { error: this.withLogTail(row, error instanceof Error ? error.message : String(error)) });
        return;
      }
      this.preparingNow.delete(row.id);
      if (active.detached) return;
      if (active.cancelRequested) {
        this.conclude(row.id, active, 'cancelled');
        return;
      }
      this.active.delete(row.id);
      await this.startTrainer(row.id);
    })();
  }

  private describe(need: Preparation): Preparing {
    if (need.kind === 'environment') return { stage: 'environment', message: `making ${this.options.backend.environment?.description ?? "the trainer's environment"}` };
    const total = this.synthItems(need.split);
    return { stage: 'dataset', message: `generating spatial-synth ${need.split} split, level ${need.level}, ${total} items, into ${need.dir}`, done: 0, total };
  }

  private synthItems(split: SplitName): number {
    return this.options.synthItems?.[split] ?? SYNTH_TRAINING.items[split];
  }

  /** Make one thing a job needs (or wait for the job that is making it), reporting its progress. */
  private async prepare(row: JobRow, active: Active, need: Preparation): Promise<void> {
    const id = row.id;
    const folder = new JobFolder(row.job_dir);
    const note = (line: string) => folder.appendLog(line);
    // Events at most every PREPARING_EVENT_MS; a report held back is sent when that time is up,
    // so the latest progress always gets out (a long pip download prints nothing for minutes).
    let lastEvent = 0;
    let lastStage = '';
    let held: NodeJS.Timeout | undefined;
    const send = () => {
      held = undefined;
      const latest = this.preparingNow.get(id);
      if (!latest || active.detached) return;
      lastEvent = Date.now();
      lastStage = latest.stage;
      this.emit({ type: 'preparing', jobId: id, preparing: latest });
    };
    const report = (preparing: Preparing, line?: string) => {
      if (line !== undefined) note(line);
      if (active.detached) return;
      this.preparingNow.set(id, preparing);
      const wait = lastEvent + PREPARING_EVENT_MS - Date.now();
      const finished = preparing.total !== undefined && preparing.done === preparing.total;
      if (wait <= 0 || preparing.stage !== lastStage || finished) {
        clearTimeout(held);
        send();
      } else if (!held) {
        held = setTimeout(send, wait);
        held.unref();
      }
    };
    const first = this.describe(need);
    note(`[job-manager] ${new Date().toISOString()} preparing: ${first.message}`);
    let joined: { done: Promise<void>; leave(): void };
    if (need.kind === 'dataset') {
      const total = this.synthItems(need.split);
      joined = this.work.join(`dataset:${need.dir}:${need.split}`, first, report, async (tell, signal) => {
        const started = Date.now();
        await generateSynthSplit(need.dir, need.split, need.level, {
          items: total,
          concurrency: this.options.synthConcurrency,
          signal,
          onProgress: (p) => tell({ ...first, done: p.done, total: p.total, message: `generating spatial-synth ${need.split} split, level ${need.level}: ${p.done}/${p.total} items` }),
        });
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        tell({ ...first, done: total, total, message: `generated spatial-synth ${need.split} split, level ${need.level}: ${total} items in ${seconds} s` }, `[job-manager] ${new Date().toISOString()} wrote ${join(need.dir, `${need.split}.jsonl`)} (${total} items in ${seconds} s)`);
      });
    } else {
      const environment = this.options.backend.environment!;
      joined = this.work.join('environment', { stage: 'environment', message: `making ${environment.description}` }, report, async (tell, signal) => {
        const started = Date.now();
        await environment.make((line) => tell({ stage: 'environment', message: line }, line), signal);
        tell({ stage: 'environment', message: `${environment.description} ready in ${((Date.now() - started) / 1000).toFixed(1)} s` });
      });
    }
    const cancelled = new Promise<never>((_resolve, reject) => {
      active.stopPreparing = () => reject(new Cancelled('cancelled'));
    });
    try {
      await Promise.race([joined.done, cancelled]);
    } catch (error) {
      if (error instanceof Cancelled) throw error;
      const what = need.kind === 'dataset' ? `generating spatial-synth ${need.split} split (level ${need.level}) into ${need.dir}` : `making ${this.options.backend.environment?.description}`;
      throw new Error(`preparing failed: ${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      clearTimeout(held);
      active.stopPreparing = undefined;
      joined.leave();
    }
  }

  /** Start the trainer of a job that needs nothing more (it turns `running`). */
  private startTrainer(id: string): Promise<void> {
    const { store, backend } = this.options;
    store.markRunning(id);
    const row = store.get(id)!;
    const active = this.track(row);
    this.emit({ type: 'status', jobId: row.id, status: 'running' });
    active.started = (async () => {
      let handle: TrainerHandle;
      try {
        handle = await backend.start(this.spec(row));
      } catch (error) {
        if (active.detached) return;
        this.conclude(row.id, active, 'failed', { error: this.withLogTail(row, error instanceof Error ? error.message : String(error)) });
        return;
      }
      try {
        store.setBackendRef(row.id, handle.ref);
      } catch (error) {
        // Only a restart of the service needs the ref (to re-attach); the job itself goes on.
        this.log('error', 'cannot record the trainer of a training job', { id: row.id, ref: handle.ref, error: String(error) });
      }
      this.log('info', 'training job started', { id: row.id, backend: backend.name, ref: handle.ref, attempt: row.attempts });
      if (active.detached) handle.detach();
      else void this.follow(row.id, active, handle);
    })();
    return active.started;
  }

  private track(row: JobRow): Active {
    const active: Active = {
      follower: new MetricsFollower(new JobFolder(row.job_dir).metricsFile),
      known: this.options.store.storedMetrics(row.id),
      started: Promise.resolve(),
      cancelRequested: row.cancel_requested_at !== null,
      signalled: false,
      detached: false,
      totalStepsKnown: row.total_steps !== null,
    };
    this.active.set(row.id, active);
    return active;
  }

  private async follow(id: string, active: Active, handle: TrainerHandle) {
    active.handle = handle;
    active.timer = setInterval(() => this.readMetrics(id, active), this.options.pollMs ?? 1000);
    active.timer.unref();
    if (active.cancelRequested) this.signalCancel(id, active);
    const exit = await handle.exited;
    if (!active.detached) this.judge(id, active, exit);
  }

  private signalCancel(id: string, active: Active) {
    const handle = active.handle;
    if (!handle || active.signalled) return;
    active.signalled = true;
    this.log('info', 'cancelling training job: SIGTERM', { id, grace_ms: this.options.cancelGraceMs });
    handle.kill('SIGTERM').catch((error) => this.log('warn', 'cannot signal the trainer', { id, error: String(error) }));
    active.killTimer = setTimeout(() => {
      this.log('warn', 'the trainer outlived the cancel grace period: SIGKILL', { id });
      handle.kill('SIGKILL').catch((error) => this.log('warn', 'cannot kill the trainer', { id, error: String(error) }));
    }, this.options.cancelGraceMs);
    active.killTimer.unref();
  }

  /**
   * Store the metrics lines written since the last read and tell the listeners. Following always
   * starts from the file's first byte (after a restart too): lines already stored are recognised
   * and neither stored nor announced again; steps the file no longer holds (dropped by a resuming
   * trainer) are forgotten.
   */
  private readMetrics(id: string, active: Pick<Active, 'follower' | 'known' | 'totalStepsKnown'>) {
    try {
      const { lines, fromStart, skipped } = active.follower.poll();
      if (skipped) this.log('warn', 'metrics.jsonl lines without an integer step were skipped', { id, skipped });
      const changed = lines.filter((line) => active.known.get(line.step) !== JSON.stringify(line));
      let forgetAfter: number | undefined;
      if (fromStart) {
        forgetAfter = lines.reduce((most, line) => Math.max(most, line.step), -1);
        for (const step of active.known.keys()) if (step > forgetAfter) active.known.delete(step);
      }
      if (changed.length || forgetAfter !== undefined) this.options.store.syncMetrics(id, { changed, latest: lines.at(-1), forgetAfter });
      for (const metrics of changed) {
        active.known.set(metrics.step, JSON.stringify(metrics));
        this.emit({ type: 'metrics', jobId: id, metrics });
      }
      if (!active.totalStepsKnown) active.totalStepsKnown = this.readTotalSteps(id);
    } catch (error) {
      this.log('error', 'cannot read training metrics', { id, error: String(error) });
    }
  }

  /** The trainer's resolved step count (config.resolved.json), once it has written it. */
  private readTotalSteps(id: string): boolean {
    const resolved = this.jobFolder(id).resolvedSteps();
    if (resolved === null) return false;
    try {
      if (resolved.steps !== null) this.options.store.setTotalSteps(id, resolved.steps);
      return true;
    } catch {
      return false;
    }
  }

  /** The trainer has ended: succeeded (exit 0 and result.json), cancelled (by us), or failed. */
  private judge(id: string, active: Active, exit: TrainerExit) {
    clearInterval(active.timer);
    clearTimeout(active.killTimer);
    this.readMetrics(id, active);
    const row = this.options.store.get(id);
    if (!row) return;
    const result = new JobFolder(row.job_dir).result();
    // A re-attached trainer's exit code is unknown (null): result.json alone tells success.
    if (result && (exit.code === 0 || (exit.code === null && exit.signal === null))) {
      this.conclude(id, active, 'succeeded', { modelName: modelNameFor(id) });
    } else if (row.cancel_requested_at) {
      this.conclude(id, active, 'cancelled');
    } else {
      const how = exit.code === 0 ? 'the trainer exited with code 0 without writing result.json' : describeExit(exit);
      this.conclude(id, active, 'failed', { error: this.withLogTail(row, how) });
    }
  }

  private conclude(id: string, active: Active | null, status: JobStatus, fields: { modelName?: string; error?: string } = {}) {
    if (active) {
      clearInterval(active.timer);
      clearTimeout(active.killTimer);
      if (this.active.get(id) === active) this.active.delete(id);
    }
    try {
      this.options.store.finish(id, status, fields);
    } catch (error) {
      // The database refused the write (a full disk, say): the job stays `running` there, holding
      // its slot, and its outcome is stored once the database takes writes again.
      this.log('error', `cannot store that a training job ${status}; retrying`, { id, error: String(error) });
      this.retryLater(() => this.conclude(id, null, status, fields));
      return;
    }
    this.log(status === 'failed' ? 'warn' : 'info', `training job ${status}`, { id, ...(fields.modelName ? { model: fields.modelName } : {}), ...(fields.error ? { error: fields.error.split('\n')[0] } : {}) });
    this.emit({ type: 'status', jobId: id, status });
    this.schedule();
  }

  private withLogTail(row: JobRow, message: string): string {
    const tail = new JobFolder(row.job_dir).logTail(ERROR_TAIL_LINES);
    const text = tail ? `${message}; last lines of trainer.log:\n${tail}` : message;
    return text.length > MAX_ERROR_CHARS ? `${text.slice(0, 200)}\n...\n${text.slice(-(MAX_ERROR_CHARS - 210))}` : text;
  }

  private async recoverJob(row: JobRow) {
    const { backend, store } = this.options;
    const spec = this.spec(row);
    let handle: TrainerHandle | null = null;
    if (row.backend_ref && row.backend === backend.name) {
      try {
        handle = await backend.attach(spec, row.backend_ref);
      } catch (error) {
        // Unknown is not gone: starting a second trainer on the same folder would be worse.
        this.log('warn', 'cannot check a training job left running; retrying', { id: row.id, error: String(error) });
        this.retryLater(() => {
          const current = store.get(row.id);
          if (current?.status === 'running' && !this.active.has(row.id)) void this.recoverJob(current).then(() => this.schedule());
        });
        return;
      }
    }
    if (handle) {
      const active = this.track(row);
      this.log('info', 'training job re-attached', { id: row.id, ref: row.backend_ref });
      void this.follow(row.id, active, handle);
      return;
    }
    // Nothing behind the row any more: collect what the trainer wrote, then decide.
    const folder = new JobFolder(row.job_dir);
    this.readMetrics(row.id, { follower: new MetricsFollower(folder.metricsFile), known: store.storedMetrics(row.id), totalStepsKnown: true });
    const checkpoint = folder.checkpoints().at(-1);
    if (folder.result()) {
      this.conclude(row.id, null, 'succeeded', { modelName: modelNameFor(row.id) });
    } else if (row.cancel_requested_at) {
      this.conclude(row.id, null, 'cancelled');
    } else if (checkpoint) {
      store.requeue(row.id);
      this.log('info', 'training job lost with the service; resuming from its checkpoint', { id: row.id, step: checkpoint.step });
      this.emit({ type: 'status', jobId: row.id, status: 'queued' });
    } else {
      this.conclude(row.id, null, 'failed', { error: this.withLogTail(row, 'interrupted: the service stopped before the first checkpoint') });
    }
  }

  private view(row: JobRow): JobView {
    return {
      id: row.id,
      status: row.status,
      backend: row.backend,
      progress: { step: row.step, total_steps: row.total_steps },
      preparing: row.status === 'preparing' ? (this.preparingNow.get(row.id) ?? null) : null,
      metrics: row.metrics ? (JSON.parse(row.metrics) as StepMetrics) : null,
      checkpoints: new JobFolder(row.job_dir).checkpoints(),
      model_name: row.model_name,
      ...(row.error ? { error: row.error } : {}),
      cancel_requested: row.cancel_requested_at !== null,
      request: JSON.parse(row.request) as TrainRequest,
      job_dir: row.job_dir,
      attempts: row.attempts,
      created_at: row.created_at,
      started_at: row.started_at,
      finished_at: row.finished_at,
    };
  }
}

function describeExit(exit: TrainerExit): string {
  const how = exit.signal ? `the trainer was killed by ${exit.signal}` : exit.code !== null ? `the trainer exited with code ${exit.code}` : 'the trainer ended';
  return exit.detail ? `${how}: ${exit.detail}` : how;
}
