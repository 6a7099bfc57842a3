// One training job's folder, STATE_DIR/jobs/<id>: the names of the files the service and the
// trainer share there (docs/training.md), and what the service reads from them: the result, the
// checkpoints, the tail of the trainer's log and the resolved step count. The job manager
// (manager.ts) decides what these mean for the job's state; the admin routes read the rollouts.
import { appendFileSync, closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Checkpoint {
  step: number;
  path: string;
}

export class JobFolder {
  /** The job's configuration, written by the service before the trainer starts. */
  readonly jobFile: string;
  /** The trainer's output, and the service's notes while the job is prepared. */
  readonly logFile: string;
  readonly metricsFile: string;
  readonly rolloutsFile: string;
  /** Written by the trainer when it succeeded. */
  readonly resultFile: string;
  /** The trainer's configuration with its defaults filled in (the step count). */
  readonly resolvedConfigFile: string;
  readonly checkpointsDir: string;

  constructor(readonly dir: string) {
    this.jobFile = join(dir, 'job.json');
    this.logFile = join(dir, 'trainer.log');
    this.metricsFile = join(dir, 'metrics.jsonl');
    this.rolloutsFile = join(dir, 'rollouts.jsonl');
    this.resultFile = join(dir, 'result.json');
    this.resolvedConfigFile = join(dir, 'config.resolved.json');
    this.checkpointsDir = join(dir, 'checkpoints');
  }

  /** The folder of job `id` under STATE_DIR. */
  static of(stateDir: string, id: string): JobFolder {
    return new JobFolder(join(stateDir, 'jobs', id));
  }

  /** Writes job.json whole or not at all: the trainer may be started (or re-attached) at any moment after. */
  writeJobConfig(config: unknown): void {
    writeFileSync(`${this.jobFile}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
    renameSync(`${this.jobFile}.tmp`, this.jobFile);
  }

  /** A line of the service's own in trainer.log; lost when the folder went away. */
  appendLog(line: string): void {
    try {
      appendFileSync(this.logFile, `${line}\n`);
    } catch {
      // The job folder went away: nothing to keep the line in.
    }
  }

  /**
   * The complete checkpoints, by step: checkpoints/checkpoint-N folders holding
   * trainer_state.json (the trainer resumes only from those; one cut short by a kill has none).
   */
  checkpoints(): Checkpoint[] {
    const dir = this.checkpointsDir;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    return names
      .map((name) => ({ name, match: /^checkpoint-(\d+)$/.exec(name) }))
      .filter(({ name, match }) => match && existsSync(join(dir, name, 'trainer_state.json')))
      .map(({ name, match }) => ({ step: Number(match![1]), path: join(dir, name) }))
      .sort((a, b) => a.step - b.step);
  }

  /** result.json when the trainer wrote it for a success (docs/training.md). */
  result(): Record<string, unknown> | null {
    try {
      const result = JSON.parse(readFileSync(this.resultFile, 'utf8')) as Record<string, unknown>;
      return result?.status === 'succeeded' ? result : null;
    } catch {
      return null;
    }
  }

  /**
   * The trainer's resolved step count from config.resolved.json: null while the file cannot be
   * read (not written yet); `steps` null when it holds no whole number of steps.
   */
  resolvedSteps(): { steps: number | null } | null {
    try {
      const resolved = JSON.parse(readFileSync(this.resolvedConfigFile, 'utf8')) as { steps?: unknown };
      return { steps: typeof resolved.steps === 'number' && Number.isSafeInteger(resolved.steps) ? resolved.steps : null };
    } catch {
      return null;
    }
  }

  /** The last `lines` lines of trainer.log. */
  logTail(lines: number): string {
    return readTail(this.logFile, lines);
  }
}

/** The last `lines` lines of a file (reading at most its last 64 KiB). */
export function readTail(file: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(file).size;
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8').split('\n').map((l) => l.trimEnd()).filter(Boolean).slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}
