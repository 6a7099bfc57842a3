// The service's SQLite database (docs/architecture.md, "The service's state": STATE_DIR/service.db,
// WAL): one connection, schema migrations in order, and a clear error when the state directory
// cannot be written.
import Database from 'better-sqlite3';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type Db = Database.Database;

/** The time stamps stored in every table: ISO 8601 in UTC, which sorts as text. */
export const timestamp = () => new Date().toISOString();

// Each entry migrates the schema from version i to i + 1. Never edit a released entry: append.
export const MIGRATIONS: string[] = [
  `CREATE TABLE eval_runs (
     id TEXT PRIMARY KEY,
     benchmark TEXT NOT NULL,
     split TEXT NOT NULL,
     model TEXT NOT NULL,
     template TEXT NOT NULL,
     strategy TEXT NOT NULL,
     params TEXT NOT NULL,           -- the request as resolved (JSON)
     status TEXT NOT NULL,           -- queued | running | succeeded | failed | cancelled
     total INTEGER NOT NULL DEFAULT 0,
     done INTEGER NOT NULL DEFAULT 0,
     result TEXT,                    -- JSON score once finished
     error TEXT,
     created_at TEXT NOT NULL,
     started_at TEXT,
     finished_at TEXT
   );
   CREATE TABLE eval_predictions (
     run_id TEXT NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
     item_index INTEGER NOT NULL,
     item_id TEXT NOT NULL,
     task TEXT NOT NULL,
     source TEXT NOT NULL,
     gold TEXT NOT NULL,
     gold_text TEXT NOT NULL,
     prediction TEXT NOT NULL,
     extracted TEXT,
     correct INTEGER NOT NULL,
     format_ok INTEGER NOT NULL,
     completion_tokens INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (run_id, item_id)
   );
   CREATE INDEX eval_predictions_order ON eval_predictions(run_id, item_index);`,
  // 1 -> 2: training jobs (src/training/store.ts) and their per-step metrics. train_jobs.status is
  // queued | preparing | running | succeeded | failed | cancelled (JobStatus); `preparing` came
  // later and needed no migration (the column is free text), so the released SQL comment below
  // still lists the original five.
  `CREATE TABLE train_jobs (
     id TEXT PRIMARY KEY,
     status TEXT NOT NULL,           -- queued | running | succeeded | failed | cancelled
     request TEXT NOT NULL,          -- the request as accepted (JSON)
     job_dir TEXT NOT NULL,          -- STATE_DIR/jobs/<id>
     backend TEXT NOT NULL,          -- local | kubernetes
     backend_ref TEXT,               -- pid (local) or object name (kubernetes) of the current trainer
     attempts INTEGER NOT NULL DEFAULT 0, -- trainer starts (a resume adds one)
     step INTEGER NOT NULL DEFAULT 0,
     total_steps INTEGER,
     metrics TEXT,                   -- latest metrics line (JSON)
     model_name TEXT,                -- the exported model, once succeeded
     error TEXT,
     cancel_requested_at TEXT,
     created_at TEXT NOT NULL,
     started_at TEXT,
     finished_at TEXT
   );
   CREATE INDEX train_jobs_status ON train_jobs(status, created_at);
   CREATE TABLE train_metrics (
     job_id TEXT NOT NULL REFERENCES train_jobs(id) ON DELETE CASCADE,
     step INTEGER NOT NULL,
     metrics TEXT NOT NULL,          -- the metrics.jsonl line (JSON)
     PRIMARY KEY (job_id, step)
   );`,
  // 2 -> 3: several responses per item (issue 18). A prediction is one response, numbered by
  // `sample` (0 for every response stored before); completion_tokens may be unknown (uploaded
  // predictions). SQLite cannot change a primary key in place, so the table is rebuilt.
  `CREATE TABLE eval_predictions_v3 (
     run_id TEXT NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
     item_index INTEGER NOT NULL,
     item_id TEXT NOT NULL,
     sample INTEGER NOT NULL DEFAULT 0,
     task TEXT NOT NULL,
     source TEXT NOT NULL,
     gold TEXT NOT NULL,
     gold_text TEXT NOT NULL,
     prediction TEXT NOT NULL,
     extracted TEXT,
     correct INTEGER NOT NULL,
     format_ok INTEGER NOT NULL,
     completion_tokens INTEGER,      -- null: not known (uploaded without a count)
     created_at TEXT NOT NULL,
     PRIMARY KEY (run_id, item_id, sample)
   );
   INSERT INTO eval_predictions_v3
     (run_id, item_index, item_id, sample, task, source, gold, gold_text, prediction, extracted, correct, format_ok, completion_tokens, created_at)
     SELECT run_id, item_index, item_id, 0, task, source, gold, gold_text, prediction, extracted, correct, format_ok, completion_tokens, created_at
     FROM eval_predictions;
   DROP TABLE eval_predictions;
   ALTER TABLE eval_predictions_v3 RENAME TO eval_predictions;
   CREATE INDEX eval_predictions_order ON eval_predictions(run_id, item_index, sample);`,
];

export class StateDirError extends Error {}

/** Open (creating and migrating as needed) STATE_DIR/service.db. */
export function openDatabase(stateDir: string, file = 'service.db'): Db {
  try {
    mkdirSync(stateDir, { recursive: true });
    accessSync(stateDir, constants.W_OK);
  } catch (error) {
    throw new StateDirError(`the state directory ${stateDir} cannot be created or written (${(error as Error).message}); set STATE_DIR to a writable folder`);
  }
  const db = new Database(join(stateDir, file));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new StateDirError(`service.db has schema version ${version}, newer than this service knows (${MIGRATIONS.length}); upgrade the service`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
