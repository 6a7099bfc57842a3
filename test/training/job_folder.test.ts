// A job folder's files as the service reads them: checkpoints, result, resolved steps, log tail.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobFolder } from '../../src/training/job_folder';

let stateDir: string;
let folder: JobFolder;
beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'job-folder-'));
  folder = JobFolder.of(stateDir, 'job-1');
  mkdirSync(folder.dir, { recursive: true });
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

test('the files of a job live under STATE_DIR/jobs/<id> by their contract names', () => {
  expect(folder.dir).toBe(join(stateDir, 'jobs', 'job-1'));
  expect([folder.jobFile, folder.logFile, folder.metricsFile, folder.rolloutsFile, folder.resultFile, folder.resolvedConfigFile, folder.checkpointsDir]).toEqual(
    ['job.json', 'trainer.log', 'metrics.jsonl', 'rollouts.jsonl', 'result.json', 'config.resolved.json', 'checkpoints'].map((name) => join(folder.dir, name)),
  );
});

test('job.json is written whole, with no temporary file left', () => {
  folder.writeJobConfig({ steps: 3 });
  expect(JSON.parse(readFileSync(folder.jobFile, 'utf8'))).toEqual({ steps: 3 });
  expect(() => readFileSync(`${folder.jobFile}.tmp`)).toThrow();
});

test('only complete checkpoints count, by step', () => {
  expect(folder.checkpoints()).toEqual([]);
  for (const [name, complete] of [['checkpoint-10', true], ['checkpoint-2', true], ['checkpoint-30', false], ['other-5', true]] as const) {
    mkdirSync(join(folder.checkpointsDir, name), { recursive: true });
    if (complete) writeFileSync(join(folder.checkpointsDir, name, 'trainer_state.json'), '{}');
  }
  expect(folder.checkpoints()).toEqual([
    { step: 2, path: join(folder.checkpointsDir, 'checkpoint-2') },
    { step: 10, path: join(folder.checkpointsDir, 'checkpoint-10') },
  ]);
});

test('result.json counts only when it says succeeded', () => {
  expect(folder.result()).toBeNull();
  writeFileSync(folder.resultFile, '{"status": "failed"}');
  expect(folder.result()).toBeNull();
  writeFileSync(folder.resultFile, '{"status": "succee');
  expect(folder.result()).toBeNull();
  writeFileSync(folder.resultFile, '{"status": "succeeded", "model_dir": "m"}');
  expect(folder.result()).toEqual({ status: 'succeeded', model_dir: 'm' });
});

test('the resolved step count: unknown until the file is readable, null when it is not a whole number', () => {
  expect(folder.resolvedSteps()).toBeNull();
  writeFileSync(folder.resolvedConfigFile, '{"steps": 2.5}');
  expect(folder.resolvedSteps()).toEqual({ steps: null });
  writeFileSync(folder.resolvedConfigFile, '{"steps": 40}');
  expect(folder.resolvedSteps()).toEqual({ steps: 40 });
});

test('the log tail keeps the last non-empty lines; appending to a vanished folder is harmless', () => {
  expect(folder.logTail(2)).toBe('');
  folder.appendLog('one');
  folder.appendLog('');
  folder.appendLog('two  ');
  folder.appendLog('three');
  expect(folder.logTail(2)).toBe('two\nthree');
  rmSync(folder.dir, { recursive: true });
  expect(() => folder.appendLog('lost')).not.toThrow();
});
