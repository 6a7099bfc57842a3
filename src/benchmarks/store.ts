// Evaluation runs and predictions in SQLite. Every prediction (one response: an item's sample) is
// written in the same transaction as the run's progress, and (run, item, sample) is unique, so a
// crash loses at most the responses in flight and a resumed run never scores a sample twice.
import { Db, timestamp } from '../storage/database';

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const TERMINAL: ReadonlySet<RunStatus> = new Set(['succeeded', 'failed', 'cancelled']);

export interface RunRow {
  id: string;
  benchmark: string;
  split: string;
  model: string;
  template: string;
  strategy: string;
  params: string;
  status: RunStatus;
  total: number;
  done: number;
  result: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface PredictionRow {
  run_id: string;
  item_index: number;
  item_id: string;
  /** Which response of the item (0 .. samples-1). */
  sample: number;
  task: string;
  source: string;
  gold: string;
  gold_text: string;
  prediction: string;
  extracted: string | null;
  correct: number;
  format_ok: number;
  /** null: not known (uploaded predictions without a count). */
  completion_tokens: number | null;
  created_at: string;
}

/** The key of one response in doneSamples(). */
export const doneKey = (itemId: string, sample: number) => `${sample}:${itemId}`;

export class RunStore {
  constructor(private readonly db: Db) {}

  insertRun(run: Omit<RunRow, 'done' | 'result' | 'error' | 'created_at' | 'started_at' | 'finished_at'>): RunRow {
    this.db
      .prepare(
        `INSERT INTO eval_runs (id, benchmark, split, model, template, strategy, params, status, total, created_at)
         VALUES (@id, @benchmark, @split, @model, @template, @strategy, @params, @status, @total, @created_at)`,
      )
      .run({ ...run, created_at: timestamp() });
    return this.getRun(run.id)!;
  }

  getRun(id: string): RunRow | undefined {
    return this.db.prepare('SELECT * FROM eval_runs WHERE id = ?').get(id) as RunRow | undefined;
  }

  listRuns(limit = 100): RunRow[] {
    return this.db.prepare('SELECT * FROM eval_runs ORDER BY created_at DESC LIMIT ?').all(limit) as RunRow[];
  }

  /** Runs that were accepted but never finished (the service stopped or crashed). */
  unfinishedRuns(): RunRow[] {
    return this.db.prepare(`SELECT * FROM eval_runs WHERE status IN ('queued', 'running') ORDER BY created_at`).all() as RunRow[];
  }

  markRunning(id: string, total: number): void {
    this.db.prepare(`UPDATE eval_runs SET status = 'running', total = ?, started_at = COALESCE(started_at, ?) WHERE id = ?`).run(total, timestamp(), id);
  }

  finish(id: string, status: RunStatus, fields: { result?: unknown; error?: string }): void {
    this.db
      .prepare('UPDATE eval_runs SET status = ?, result = ?, error = ?, finished_at = ? WHERE id = ?')
      .run(status, fields.result === undefined ? null : JSON.stringify(fields.result), fields.error ?? null, timestamp(), id);
  }

  /** Samples already scored for a run, as doneKey(item, sample) (skipped when it resumes). */
  doneSamples(runId: string): Set<string> {
    const rows = this.db.prepare('SELECT item_id, sample FROM eval_predictions WHERE run_id = ?').all(runId) as { item_id: string; sample: number }[];
    return new Set(rows.map((r) => doneKey(r.item_id, r.sample)));
  }

  /** Store one prediction and advance the run's progress, atomically; a duplicate is ignored. */
  addPrediction(prediction: Omit<PredictionRow, 'created_at'>): boolean {
    return this.db.transaction(() => {
      const inserted = this.insertPrediction(prediction);
      if (inserted) this.db.prepare('UPDATE eval_runs SET done = done + 1 WHERE id = ?').run(prediction.run_id);
      return inserted;
    })();
  }

  /**
   * A finished run and all its predictions in one transaction (a run scored from uploaded
   * predictions): either everything is stored or nothing is.
   */
  insertFinishedRun(
    run: Omit<RunRow, 'done' | 'result' | 'error' | 'created_at' | 'started_at' | 'finished_at' | 'status'>,
    predictions: Omit<PredictionRow, 'created_at' | 'run_id'>[],
    result: unknown,
  ): RunRow {
    this.db.transaction(() => {
      const now = timestamp();
      this.db
        .prepare(
          `INSERT INTO eval_runs (id, benchmark, split, model, template, strategy, params, status, total, done, result, created_at, started_at, finished_at)
           VALUES (@id, @benchmark, @split, @model, @template, @strategy, @params, 'succeeded', @total, @done, @result, @now, @now, @now)`,
        )
        .run({ ...run, done: predictions.length, result: JSON.stringify(result), now });
      for (const p of predictions) {
        if (!this.insertPrediction({ ...p, run_id: run.id })) throw new Error(`duplicate prediction ${p.item_id} sample ${p.sample}`);
      }
    })();
    return this.getRun(run.id)!;
  }

  private insertPrediction(prediction: Omit<PredictionRow, 'created_at'>): boolean {
    const inserted = this.db
      .prepare(
        `INSERT OR IGNORE INTO eval_predictions
           (run_id, item_index, item_id, sample, task, source, gold, gold_text, prediction, extracted, correct, format_ok, completion_tokens, created_at)
         VALUES (@run_id, @item_index, @item_id, @sample, @task, @source, @gold, @gold_text, @prediction, @extracted, @correct, @format_ok, @completion_tokens, @created_at)`,
      )
      .run({ ...prediction, created_at: timestamp() });
    return inserted.changes > 0;
  }

  predictions(runId: string): PredictionRow[] {
    return this.db.prepare('SELECT * FROM eval_predictions WHERE run_id = ? ORDER BY item_index, sample').all(runId) as PredictionRow[];
  }

  /** Predictions in item order without loading them all (for streaming). */
  iteratePredictions(runId: string): IterableIterator<PredictionRow> {
    return this.db.prepare('SELECT * FROM eval_predictions WHERE run_id = ? ORDER BY item_index, sample').iterate(runId) as IterableIterator<PredictionRow>;
  }
}
