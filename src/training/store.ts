// Training jobs and their per-step metrics in SQLite. The job manager owns these rows and the
// trainer never sees them (docs/architecture.md, "The trainer and the service"): it writes files,
// the manager follows them. train_metrics mirrors the job's metrics.jsonl: one row per step, the
// line as the trainer wrote it.
import { Db, timestamp } from '../storage/database';

/**
 * queued: waiting for a slot; preparing: holding a slot while what its trainer needs is made (a
 * generated data set split, the local trainer's Python environment); running: a trainer runs for it.
 */
export type JobStatus = 'queued' | 'preparing' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'preparing', 'running', 'succeeded', 'failed', 'cancelled'];
export const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);

export type BackendName = 'local' | 'kubernetes';

/** One metrics.jsonl line (names in docs/training.md); stored and served as written. */
export type StepMetrics = { step: number } & Record<string, unknown>;

export interface JobRow {
  id: string;
  status: JobStatus;
  request: string;
  job_dir: string;
  backend: BackendName;
  backend_ref: string | null;
  attempts: number;
  step: number;
  total_steps: number | null;
  metrics: string | null;
  model_name: string | null;
  error: string | null;
  cancel_requested_at: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export class JobStore {
  constructor(private readonly db: Db) {}

  insert(job: Pick<JobRow, 'id' | 'request' | 'job_dir' | 'backend' | 'total_steps'>): JobRow {
    this.db
      .prepare(
        `INSERT INTO train_jobs (id, status, request, job_dir, backend, total_steps, created_at)
         VALUES (@id, 'queued', @request, @job_dir, @backend, @total_steps, @created_at)`,
      )
      .run({ ...job, created_at: timestamp() });
    return this.get(job.id)!;
  }

  get(id: string): JobRow | undefined {
    return this.db.prepare('SELECT * FROM train_jobs WHERE id = ?').get(id) as JobRow | undefined;
  }

  list(limit = 100): JobRow[] {
    return this.db.prepare('SELECT * FROM train_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit) as JobRow[];
  }

  /** Jobs in a status, oldest first (the queue order). */
  withStatus(status: JobStatus): JobRow[] {
    return this.db.prepare('SELECT * FROM train_jobs WHERE status = ? ORDER BY created_at, rowid').all(status) as JobRow[];
  }

  countByStatus(): Record<JobStatus, number> {
    const counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
    const rows = this.db.prepare('SELECT status, COUNT(*) AS n FROM train_jobs GROUP BY status').all() as { status: JobStatus; n: number }[];
    for (const row of rows) counts[row.status] = row.n;
    return counts;
  }

  /** The job has left the queue; what its trainer needs is being made (no trainer runs yet). */
  markPreparing(id: string): void {
    this.db.prepare(`UPDATE train_jobs SET status = 'preparing' WHERE id = ?`).run(id);
  }

  /** A trainer is being started for the job (again, when it resumes). */
  markRunning(id: string): void {
    this.db
      .prepare(`UPDATE train_jobs SET status = 'running', backend_ref = NULL, attempts = attempts + 1, started_at = COALESCE(started_at, ?) WHERE id = ?`)
      .run(timestamp(), id);
  }

  setBackendRef(id: string, ref: string): void {
    this.db.prepare('UPDATE train_jobs SET backend_ref = ? WHERE id = ?').run(ref, id);
  }

  requestCancel(id: string): void {
    this.db.prepare('UPDATE train_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?').run(timestamp(), id);
  }

  /** Back to the queue (a trainer lost with the service restarts from its checkpoint; a preparation cut short by a restart starts again). */
  requeue(id: string): void {
    this.db.prepare(`UPDATE train_jobs SET status = 'queued', backend_ref = NULL WHERE id = ?`).run(id);
  }

  setTotalSteps(id: string, totalSteps: number): void {
    this.db.prepare('UPDATE train_jobs SET total_steps = ? WHERE id = ?').run(totalSteps, id);
  }

  finish(id: string, status: JobStatus, fields: { modelName?: string; error?: string } = {}): void {
    this.db
      .prepare('UPDATE train_jobs SET status = ?, model_name = ?, error = ?, finished_at = ? WHERE id = ?')
      .run(status, fields.modelName ?? null, fields.error ?? null, timestamp(), id);
  }

  /** The stored lines of a job by step, as JSON text. */
  storedMetrics(id: string): Map<number, string> {
    const rows = this.db.prepare('SELECT step, metrics FROM train_metrics WHERE job_id = ?').all(id) as { step: number; metrics: string }[];
    return new Map(rows.map((r) => [r.step, r.metrics]));
  }

  /**
   * Bring the stored lines up to date, in one transaction: forget steps after `forgetAfter` (the
   * trainer dropped them to redo them), store new or changed lines (a step written again replaces
   * the earlier line), and keep `latest` as the job's latest metrics and progress.
   */
  syncMetrics(id: string, update: { changed: StepMetrics[]; latest?: StepMetrics; forgetAfter?: number }): void {
    this.db.transaction(() => {
      if (update.forgetAfter !== undefined) this.db.prepare('DELETE FROM train_metrics WHERE job_id = ? AND step > ?').run(id, update.forgetAfter);
      const insert = this.db.prepare('INSERT OR REPLACE INTO train_metrics (job_id, step, metrics) VALUES (?, ?, ?)');
      for (const line of update.changed) insert.run(id, line.step, JSON.stringify(line));
      const latest = update.latest;
      if (latest) {
        const total = typeof latest.total_steps === 'number' && Number.isSafeInteger(latest.total_steps) ? latest.total_steps : null;
        this.db
          .prepare('UPDATE train_jobs SET step = ?, metrics = ?, total_steps = COALESCE(?, total_steps) WHERE id = ?')
          .run(latest.step, JSON.stringify(latest), total, id);
      }
    })();
  }

  /** Every stored step of a job, in step order, without loading them all. */
  iterateMetrics(id: string): IterableIterator<StepMetrics> {
    const rows = this.db.prepare('SELECT metrics FROM train_metrics WHERE job_id = ? ORDER BY step').iterate(id) as IterableIterator<{ metrics: string }>;
    return (function* () {
      for (const row of rows) yield JSON.parse(row.metrics) as StepMetrics;
    })();
  }
}
