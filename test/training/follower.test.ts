// Following metrics.jsonl: complete lines only, from the last offset, robust to partial writes,
// rewrites (the resuming trainer's rename) and junk.
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetricsFollower } from '../../src/training/follower';

describe('MetricsFollower', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'follower-'));
    file = join(dir, 'metrics.jsonl');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a missing file reads as nothing yet', () => {
    expect(new MetricsFollower(file).poll()).toEqual({ lines: [], fromStart: false, skipped: 0 });
  });

  test('the first read is from the start; then only what was appended', () => {
    const follower = new MetricsFollower(file);
    writeFileSync(file, '{"step": 1}\n');
    expect(follower.poll()).toEqual({ lines: [{ step: 1 }], fromStart: true, skipped: 0 });
    appendFileSync(file, '{"step": 2}\n');
    expect(follower.poll()).toEqual({ lines: [{ step: 2 }], fromStart: false, skipped: 0 });
    expect(follower.poll()).toEqual({ lines: [], fromStart: false, skipped: 0 });
  });

  test('a partial line waits for its end', () => {
    const follower = new MetricsFollower(file);
    writeFileSync(file, '{"step": 1, "reward": 0.5}\n{"step": 2, "rew');
    expect(follower.poll().lines).toEqual([{ step: 1, reward: 0.5 }]);
    expect(follower.poll().lines).toEqual([]);
    appendFileSync(file, 'ard": 0.25}\n');
    expect(follower.poll().lines).toEqual([{ step: 2, reward: 0.25 }]);
  });

  test('lines that are not objects with an integer step are skipped and counted; CRLF and blank lines are fine', () => {
    writeFileSync(file, '{"step": 1}\r\n\nnot json\n[1,2]\n{"reward": 1}\n{"step": 1.5}\n{"step": 3}\n');
    const { lines, skipped } = new MetricsFollower(file).poll();
    expect(lines).toEqual([{ step: 1 }, { step: 3 }]);
    expect(skipped).toBe(4);
  });

  test('a file that shrank is read again from the start', () => {
    const follower = new MetricsFollower(file);
    writeFileSync(file, '{"step": 1}\n{"step": 2}\n');
    follower.poll();
    writeFileSync(file, '{"step": 7}\n');
    expect(follower.poll()).toEqual({ lines: [{ step: 7 }], fromStart: true, skipped: 0 });
  });

  test('a file replaced by a rename (the resuming trainer) is read again from the start, even when longer', () => {
    const follower = new MetricsFollower(file);
    writeFileSync(file, '{"step": 1}\n{"step": 2}\n');
    follower.poll();
    writeFileSync(`${file}.tmp`, '{"step": 1}\n{"step": 2, "redo": true}\n{"step": 3}\n');
    renameSync(`${file}.tmp`, file);
    expect(follower.poll()).toEqual({ lines: [{ step: 1 }, { step: 2, redo: true }, { step: 3 }], fromStart: true, skipped: 0 });
  });

  test('multi-byte characters split across polls are decoded whole', () => {
    const follower = new MetricsFollower(file);
    const line = Buffer.from('{"step": 1, "note": "héllo ✓"}\n');
    writeFileSync(file, line.subarray(0, 24));
    expect(follower.poll().lines).toEqual([]);
    appendFileSync(file, line.subarray(24));
    expect(follower.poll().lines).toEqual([{ step: 1, note: 'héllo ✓' }]);
  });
});
