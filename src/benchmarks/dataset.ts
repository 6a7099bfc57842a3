// Reading a data set in our own format (docs/architecture.md, "A data set on disk"): <dir>/<split>.jsonl with
// one DatasetRecord per line and image paths relative to <dir>. The synth and prepare CLIs write
// it; evaluation and the Python trainer read it.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { notFound, unprocessable } from '../errors';
import { DatasetRecord, EvalItem } from './types';

const RecordSchema = z.object({
  id: z.string().min(1),
  images: z.array(z.string().min(1)),
  question: z.string(),
  choices: z.array(z.string()),
  answer: z.string(),
  answer_text: z.string(),
  prompt: z.string().min(1),
  task: z.string().min(1),
  source: z.string(),
  meta: z.record(z.string(), z.unknown()).default({}),
});

/** The image path inside the data set folder; paths that would leave it are refused. */
export function datasetPath(dir: string, path: string): string {
  const full = resolve(dir, path);
  const rel = relative(resolve(dir), full);
  if (isAbsolute(path) || rel.startsWith('..') || isAbsolute(rel)) {
    throw unprocessable('benchmark_data_malformed', `image path "${path}" leaves the data set folder ${dir}`);
  }
  return full;
}

export function readDatasetRecords(dir: string, split: string): DatasetRecord[] {
  const file = join(dir, `${split}.jsonl`);
  if (!existsSync(file)) {
    throw notFound('benchmark_data_missing', `no ${split}.jsonl in ${dir}: a data set folder holds <split>.jsonl files and an images/ folder (see docs/benchmarks.md)`);
  }
  const records: DatasetRecord[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw unprocessable('benchmark_data_malformed', `${file} line ${i + 1} is not JSON`);
      }
      const parsed = RecordSchema.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw unprocessable('benchmark_data_malformed', `${file} line ${i + 1}: ${issue.path.join('.') || 'record'} ${issue.message}`);
      }
      records.push(parsed.data as DatasetRecord);
    });
  return records;
}

export function datasetItems(dir: string, split: string, limit?: number): EvalItem[] {
  const records = readDatasetRecords(dir, split);
  return records.slice(0, limit ?? records.length).map((record) => ({
    record,
    loadImages: () => Promise.all(record.images.map((p) => readFile(datasetPath(dir, p)))),
  }));
}
