// What the job manager needs from a place trainers run: start one, find one a previous service
// process started, signal it, and learn how it ended. Backends know nothing of the database.
import type { BackendName } from './store';

/** Everything a backend needs to run the trainer of one job. */
export interface TrainerSpec {
  jobId: string;
  /** STATE_DIR/jobs/<id> (the trainer's output_dir). */
  jobDir: string;
  /** STATE_DIR/jobs/<id>/job.json. */
  jobFile: string;
  /** STATE_DIR/jobs/<id>/trainer.log: the trainer's stdout and stderr are appended here. */
  logFile: string;
  /** Trainer starts of this job so far, this one included (1 for the first). */
  attempt: number;
  nodes: number;
  gpusPerNode: number;
  device: 'auto' | 'cpu' | 'cuda';
}

export interface TrainerExit {
  /** The exit code; null when killed by a signal or unknown (a re-attached process). */
  code: number | null;
  signal: string | null;
  /** What the backend knows beyond the code (a Kubernetes condition, an unknown exit status). */
  detail?: string;
}

export interface TrainerHandle {
  /** Stored as the job's backend_ref: a pid, or a Kubernetes object name. */
  readonly ref: string;
  /** Settles once when the trainer has ended (never rejects). */
  readonly exited: Promise<TrainerExit>;
  /** SIGTERM: stop after the current step with a checkpoint (docs/training.md); SIGKILL: now. */
  kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Stop watching without stopping the trainer (service shutdown); ignore `exited` after it. */
  detach(): void;
}

/**
 * What a backend's trainers need on this machine before the first can start: the local backend's
 * Python environment (.venv). A job leaving the queue is `preparing` while it is made.
 */
export interface TrainerEnvironment {
  /** For status messages and logs, e.g. "the trainer's Python environment (.venv)". */
  readonly description: string;
  /** Whether it is missing or stale (a quick check, made each time a job leaves the queue). */
  needed(): boolean;
  /** Make or refresh it; each output line goes to `log`; rejects when it fails; `signal` stops it. */
  make(log: (line: string) => void, signal: AbortSignal): Promise<void>;
}

export interface TrainerBackend {
  readonly name: BackendName;
  /** What must exist before a trainer can start, when this backend has such a thing. */
  readonly environment?: TrainerEnvironment;
  /** Start a trainer; rejects when it cannot be started at all. */
  start(spec: TrainerSpec): Promise<TrainerHandle>;
  /** The trainer a previous service process started (by its backend_ref), or null when it is gone. */
  attach(spec: TrainerSpec, ref: string): Promise<TrainerHandle | null>;
}
