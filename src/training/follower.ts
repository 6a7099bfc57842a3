// Follows a file another process appends JSON lines to (metrics.jsonl): each poll reads from the
// last byte offset and takes complete lines only, so a line the trainer is half-way through
// writing is read whole at a later poll. The trainer rewrites the file when it resumes from a
// checkpoint (it drops the lines of the steps it will redo, through a temporary file and a
// rename): a file that was replaced (another inode) or shrank is read again from the start, and
// the poll says so (`fromStart`), so the reader can forget what the file no longer holds.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { StepMetrics } from './store';

/** Bytes read at once; a longer backlog is read in several reads of one poll. */
const CHUNK = 4 << 20;

export interface PollResult {
  /** Complete lines that are JSON objects with an integer `step`, in file order. */
  lines: StepMetrics[];
  /** This poll read the file from its first byte (first read, or the file was rewritten). */
  fromStart: boolean;
  /** Lines that were not a JSON object with an integer `step` (skipped). */
  skipped: number;
}

export class MetricsFollower {
  private offset = 0;
  private inode: number | null = null;

  constructor(readonly file: string) {}

  /** The complete lines appended since the last poll (none while the file does not exist). */
  poll(): PollResult {
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return { lines: [], fromStart: false, skipped: 0 };
    }
    try {
      const stat = fstatSync(fd);
      const fromStart = this.inode !== stat.ino || stat.size < this.offset;
      if (fromStart) this.offset = 0;
      this.inode = stat.ino;
      const lines: StepMetrics[] = [];
      let skipped = 0;
      while (this.offset < stat.size) {
        const length = Math.min(CHUNK, stat.size - this.offset);
        const buffer = Buffer.alloc(length);
        const read = readSync(fd, buffer, 0, length, this.offset);
        if (read === 0) break;
        const end = buffer.lastIndexOf(0x0a, read - 1);
        if (end < 0) {
          // No line end yet: a partial line (wait for the rest), or one absurdly long line (drop it).
          if (read < CHUNK) break;
          this.offset += read;
          skipped += 1;
          continue;
        }
        for (const text of buffer.subarray(0, end).toString('utf8').split('\n')) {
          const line = parseStepLine(text);
          if (line) lines.push(line);
          else if (text.trim()) skipped += 1;
        }
        this.offset += end + 1;
        if (read < length) break;
      }
      return { lines, fromStart, skipped };
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * One line of a trainer's step-keyed JSONL file (metrics.jsonl, rollouts.jsonl): a JSON object with
 * a non-negative integer `step`, or null (blank, malformed, or no such step).
 */
export function parseStepLine<T extends { step: number } = StepMetrics>(text: string): T | null {
  const trimmed = text.trim();
  if (!trimmed) return null;
  try {
    const value = JSON.parse(trimmed) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    const step = (value as { step?: unknown }).step;
    return typeof step === 'number' && Number.isSafeInteger(step) && step >= 0 ? (value as T) : null;
  } catch {
    return null;
  }
}
