// SAT, Spatial Aptitude Training (array/SAT, MIT): synthetic ProcTHOR scenes (train ~175k, val
// ~4k, static ~127k) and 150 real-image test items. The paper trains on the first 15k train rows,
// single-image items only (docs/method.md, "Training data").
//
// Layout: array/SAT publishes one file per split, SAT_train.parquet, SAT_val.parquet,
// SAT_test.parquet, SAT_static.parquet; also accepted: <split>.parquet, Hugging Face shards
// data/<split>-*.parquet, and the parquet-converter layout default/<split>/*.parquet.
// Fields: image_bytes (a list of one or two images: `{bytes, path}` structs or raw bytes; the
// SAT-v2 re-upload calls it `images`), question, answers (option texts), correct_answer (the
// option text, not a letter), question_type.
//
// Mapping: choices = answers; answer = the letter of correct_answer among answers (rows where it
// is not among them are skipped and counted); prompt = choicesPrompt (CV-Bench style);
// task = question_type; source = "SAT".
//
// Multi-image rows: by default only single-image rows are kept (the engine's prompts and the
// paper's training take one image); the others are skipped and counted in
// `info.skipped.multi_image` with a note in `info.messages`. Parquet keeps no per-row list
// lengths, so counting images means one streaming pass over the image column, a window of rows at
// a time; the bytes are dropped and read again lazily by loadImages. With `limit` the pass stops
// as soon as enough items are found, and `maxRows` bounds the rows looked at (the paper's "first
// 15k rows, single-image only" read literally: `maxRows: 15000` rather than `limit: 15000`).
import { dirname, join } from 'node:path';
import { choicesPrompt, DatasetRecord, EvalItem, optionLetter } from '../types';
import {
  BenchmarkLoader,
  dataPath,
  BenchmarkLoadOptions,
  checkLimit,
  dataMissing,
  findParquet,
  imageBytes,
  invalidInput,
  isDir,
  LoadedBenchmarkSplit,
  makeItem,
  malformed,
  optionalString,
  requiredString,
  shown,
  ShardPattern,
  skip,
  SplitInfo,
  stringList,
  unknownSplit,
} from './common';
import { ParquetTable, sharedParquetReader } from './parquet';

const TITLE = 'SAT';
const SPLITS = ['val', 'test', 'train', 'static'] as const;
const IMAGE_COLUMNS = ['image_bytes', 'images'];
const TEXT_COLUMNS = ['question', 'answers', 'correct_answer', 'question_type'];
const REQUIRED = ['question', 'answers', 'correct_answer'];

function folder(dataDir?: string): string {
  return dataPath(dataDir, 'sat');
}

export function satLayout(dataDir?: string): string {
  const dir = folder(dataDir);
  return (
    `SAT: place SAT_val.parquet, SAT_test.parquet and/or SAT_train.parquet (from array/SAT) in ${dir}/ ` +
    `(also accepted: ${dir}/val.parquet, Hugging Face shards ${dir}/data/val-*.parquet, or ${dir}/default/val/*.parquet)`
  );
}

function patterns(split: string): ShardPattern[] {
  return [
    { file: `SAT_${split}.parquet` },
    { file: `${split}.parquet` },
    { dir: 'data', prefix: `${split}-` },
    { dir: '.', prefix: `${split}-` },
    { dir: join('default', split), prefix: '' },
    { dir: split, prefix: '' },
  ];
}

/** The image entries of an image_bytes value: a list, or a single image for robustness. */
function imageEntries(value: unknown): unknown[] {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value)) return value.filter((v) => v !== null && v !== undefined);
  return [value];
}

async function load(options: BenchmarkLoadOptions): Promise<LoadedBenchmarkSplit> {
  const limit = checkLimit(options.limit);
  if (options.maxRows !== undefined && (!Number.isInteger(options.maxRows) || options.maxRows < 0)) {
    throw invalidInput('invalid_limit', `maxRows must be a non-negative integer, got ${options.maxRows}`);
  }
  const maxRows = options.maxRows ?? Infinity;
  const singleImageOnly = options.singleImageOnly ?? true;
  const split = options.split ?? 'val';
  if (!(SPLITS as readonly string[]).includes(split)) throw unknownSplit(TITLE, split, SPLITS);

  const dir = folder(options.dataDir);
  if (!(await isDir(dir))) throw dataMissing(`no SAT folder at ${dir}. ${satLayout(options.dataDir)}`);
  const found = await findParquet(dir, patterns(split));
  if (!found) throw dataMissing(`SAT ${split} not found: place SAT_${split}.parquet in ${dir}/. ${satLayout(options.dataDir)}`);

  const reader = await sharedParquetReader();
  const table = await ParquetTable.open(reader, found.files, REQUIRED);
  const imageColumn = IMAGE_COLUMNS.find((c) => table.has(c));
  if (!imageColumn) {
    const file = table.files.find((f) => !IMAGE_COLUMNS.some((c) => f.columns.includes(c))) ?? table.files[0];
    throw malformed(file.path, `missing column image_bytes (found: ${file.columns.join(', ')})`);
  }
  const imageRow = table.rowReader([imageColumn]);
  const wanted = options.subsets && options.subsets.length ? options.subsets.map((s) => s.trim().toLowerCase()) : undefined;
  const typesSeen = new Set<string>();
  const matched = new Set<string>();

  const info: SplitInfo = { layout: 'parquet', files: found.files, rows: 0, skipped: {}, messages: [] };
  const items: EvalItem[] = [];
  let stoppedEarly = false;
  const root = dirname(dir);
  scan: for await (const { start, rows } of table.scan([...table.present(TEXT_COLUMNS), imageColumn])) {
    for (let offset = 0; offset < rows.length; offset++) {
      const index = start + offset;
      if ((limit !== undefined && items.length >= limit) || index >= maxRows) {
        stoppedEarly = true;
        break scan;
      }
      const row = rows[offset];
      const { file, row: fileRow } = table.locate(index);
      const place = { file: file.path, where: `row ${fileRow}` };
      info.rows++;
      const task = optionalString(row, 'question_type') ?? 'SAT';
      typesSeen.add(task);
      if (wanted && !wanted.includes(task.toLowerCase())) continue;
      matched.add(task.toLowerCase());
      const count = imageEntries(row[imageColumn]).length;
      if (count === 0) {
        skip(info, 'no_image');
        continue;
      }
      if (singleImageOnly && count > 1) {
        skip(info, 'multi_image');
        continue;
      }
      const question = requiredString(row, 'question', place);
      const choices = stringList(row, 'answers', place);
      const correct = requiredString(row, 'correct_answer', place);
      let answerIndex = choices.indexOf(correct);
      if (answerIndex < 0) answerIndex = choices.findIndex((c) => c.trim() === correct.trim());
      if (answerIndex < 0) {
        skip(info, 'answer_not_in_choices');
        continue;
      }
      const locator = shown(root, file.path);
      const record: DatasetRecord = {
        id: `sat/${split}/${index}`,
        images: Array.from({ length: count }, (_, k) => `${locator}#${fileRow}:${imageColumn}[${k}]`),
        question,
        choices,
        answer: optionLetter(answerIndex),
        answer_text: choices[answerIndex],
        prompt: choicesPrompt(question, choices),
        task,
        source: 'SAT',
        meta: { row: index, question_type: task, correct_answer: correct, image_count: count },
      };
      items.push(
        makeItem(record, async () => {
          const entries = imageEntries((await imageRow(index))[imageColumn]);
          return entries.map((entry, k) => {
            const bytes = imageBytes(entry);
            if (!bytes) throw malformed(file.path, `row ${fileRow}: ${imageColumn}[${k}] holds no image bytes`);
            return bytes;
          });
        }),
      );
    }
  }

  if (wanted && !stoppedEarly) {
    const unknown = (options.subsets ?? []).filter((s) => !matched.has(s.trim().toLowerCase()));
    if (unknown.length) throw invalidInput('benchmark_subset_unknown', `SAT ${split} has no question_type ${unknown.join(', ')}; present: ${[...typesSeen].sort().join(', ')}`);
  }
  if (info.skipped.multi_image) info.messages.push(`skipped ${info.skipped.multi_image} multi-image item(s): only single-image items are kept (singleImageOnly)`);
  if (info.skipped.answer_not_in_choices) info.messages.push(`skipped ${info.skipped.answer_not_in_choices} item(s) whose correct_answer is not among answers`);
  if (info.skipped.no_image) info.messages.push(`skipped ${info.skipped.no_image} item(s) without an image`);
  if (stoppedEarly) {
    const reason = limit !== undefined && items.length >= limit ? `limit ${limit} reached` : `maxRows ${maxRows} reached`;
    info.messages.push(`stopped after ${info.rows} of ${table.numRows} rows: ${reason}`);
  }
  return { benchmark: 'sat', split, items, info };
}

export const satLoader: BenchmarkLoader = {
  name: 'sat',
  origin: {
    title: TITLE,
    source: 'array/SAT (Hugging Face)',
    licence: 'MIT',
    licenceNote: 'Synthetic splits are ProcTHOR renders; the test split has real images.',
  },
  splits: SPLITS,
  defaultSplit: 'val',
  layout: satLayout,
  load,
};
