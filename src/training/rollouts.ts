// Reading a job's rollouts.jsonl (docs/training.md): the sampled completions the trainer wrote for
// each step. The file is read as a stream, one line at a time, keeping only the lines of the step
// asked for, so a long job's file is never held in memory whole.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseStepLine } from './follower';

/** One rollouts.jsonl line, as the trainer wrote it. */
export type Rollout = { step: number } & Record<string, unknown>;

export interface RolloutsPage {
  /** The step whose rollouts are in `data` (null: the file holds none yet). */
  step: number | null;
  /** Every step the file holds rollouts for, ascending. */
  steps: number[];
  /** The step's rollouts in file order, at most `limit` of them. */
  data: Rollout[];
  /** How many rollouts the step has in all. */
  total: number;
}

/** Lines longer than this are skipped (a completion is at most a few thousand tokens). */
const MAX_LINE_CHARS = 1 << 20;

function parse(text: string): Rollout | null {
  return text.trim().length > MAX_LINE_CHARS ? null : parseStepLine<Rollout>(text);
}

/**
 * The rollouts of `step` (the newest step when omitted) from a rollouts.jsonl file. A missing
 * file reads as empty (the trainer has not written any yet); malformed lines are skipped. Lines
 * are taken as they stand in the file (a resuming trainer drops those of the steps it redoes).
 */
export async function readRollouts(file: string, options: { step?: number; limit: number }): Promise<RolloutsPage> {
  const steps = new Set<number>();
  // Without a step the newest one is wanted: keep the lines of the highest step seen so far.
  let wanted = options.step ?? null;
  let data: Rollout[] = [];
  let total = 0;
  let stream: ReturnType<typeof createReadStream>;
  try {
    stream = createReadStream(file, { encoding: 'utf8' });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { step: options.step ?? null, steps: [], data: [], total: 0 };
    throw error;
  }
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  for await (const text of lines) {
    const rollout = parse(text);
    if (!rollout) continue;
    steps.add(rollout.step);
    if (options.step === undefined && (wanted === null || rollout.step > wanted)) {
      wanted = rollout.step;
      data = [];
      total = 0;
    }
    if (rollout.step !== wanted) continue;
    total += 1;
    if (data.length < options.limit) data.push(rollout);
  }
  return { step: wanted, steps: [...steps].sort((a, b) => a - b), data, total };
}
