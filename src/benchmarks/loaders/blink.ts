// BLINK (BLINK-Benchmark/BLINK, Apache-2.0): 14 perception subtasks, one parquet folder each.
// The paper reports Relative_Depth (124 val) and Spatial_Relation (143 val); those two load by
// default, any other subtask folder present loads when named in `subsets`.
//
// Layout (Hugging Face): <Subtask>/val-00000-of-00001.parquet and <Subtask>/test-...; also
// accepted: flat <Subtask>_val.parquet and the parquet-converter layout <Subtask>/val/*.parquet.
// Fields: idx ("val_Relative_Depth_1"), question, sub_task, image_1..image_4 (`{bytes, path}`
// structs, null when the item has fewer images), choices, answer "(A)", prompt, explanation.
// Only `val` has answers: the test answers are hidden, so `test` is refused.
//
// Mapping: images = the non-null image_k in order; answer "(A)" -> "A"; task = sub_task;
// source = "BLINK"; prompt = the file's `prompt` when present.
import { dirname, join } from 'node:path';
import { choicesPrompt, DatasetRecord, EvalItem } from '../types';
import {
  BenchmarkLoader,
  dataPath,
  BenchmarkLoadOptions,
  checkLimit,
  dataMissing,
  findParquet,
  goldLetter,
  idValue,
  imageBytes,
  invalidInput,
  isDir,
  listDir,
  LoadedBenchmarkSplit,
  makeItem,
  malformed,
  optionalString,
  requiredString,
  RowPlace,
  shown,
  ShardPattern,
  SplitInfo,
  stringList,
  unknownSplit,
} from './common';
import { ParquetTable, sharedParquetReader } from './parquet';

const TITLE = 'BLINK';
export const BLINK_DEFAULT_SUBTASKS = ['Relative_Depth', 'Spatial_Relation'];
/** The subtasks of the publication (used to canonicalise names; folders found on disk also count). */
export const BLINK_SUBTASKS = [
  'Art_Style', 'Counting', 'Forensic_Detection', 'Functional_Correspondence', 'IQ_Test', 'Jigsaw', 'Multi-view_Reasoning',
  'Object_Localization', 'Relative_Depth', 'Relative_Reflectance', 'Semantic_Correspondence', 'Spatial_Relation',
  'Visual_Correspondence', 'Visual_Similarity',
];
const SPLITS = ['val'] as const;
const IMAGE_COLUMNS = ['image_1', 'image_2', 'image_3', 'image_4'];
const TEXT_COLUMNS = ['idx', 'question', 'sub_task', 'choices', 'answer', 'prompt', 'explanation'];
const REQUIRED = ['question', 'choices', 'answer', 'image_1'];

function folder(dataDir?: string): string {
  return dataPath(dataDir, 'blink');
}

export function blinkLayout(dataDir?: string): string {
  const dir = folder(dataDir);
  return (
    `BLINK: place the subtask folders of BLINK-Benchmark/BLINK in ${dir}/, e.g. ${dir}/Relative_Depth/val-00000-of-00001.parquet ` +
    `and ${dir}/Spatial_Relation/val-00000-of-00001.parquet (flat ${dir}/Relative_Depth_val.parquet also works); ` +
    `other subtasks (${BLINK_SUBTASKS.filter((s) => !BLINK_DEFAULT_SUBTASKS.includes(s)).join(', ')}) load the same way when named in subsets`
  );
}

function patterns(subtask: string): ShardPattern[] {
  return [
    { dir: subtask, prefix: 'val-' },
    { file: `${subtask}_val.parquet` },
    { dir: join(subtask, 'val'), prefix: '' },
    { file: join(subtask, 'val.parquet') },
  ];
}

/** Subtask names present on disk: folders, and the stems of flat <Subtask>_val.parquet files. */
async function subtasksOnDisk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await listDir(dir)) {
    if (await isDir(join(dir, name))) out.push(name);
    else if (name.endsWith('_val.parquet')) out.push(name.slice(0, -'_val.parquet'.length));
  }
  return out;
}

function canonical(name: string, onDisk: string[]): string {
  const lower = name.trim().toLowerCase();
  return onDisk.find((n) => n.toLowerCase() === lower) ?? BLINK_SUBTASKS.find((n) => n.toLowerCase() === lower) ?? name.trim();
}

function toRecord(row: Record<string, unknown>, subtask: string, index: number, place: RowPlace, images: string[]): DatasetRecord {
  const question = requiredString(row, 'question', place);
  const choices = stringList(row, 'choices', place);
  const answer = goldLetter(requiredString(row, 'answer', place), choices, place);
  const idx = idValue(row.idx) ?? `${subtask}_${index}`;
  const meta: Record<string, unknown> = { subtask, row: index };
  for (const field of ['idx', 'sub_task', 'explanation']) {
    const value = row[field];
    if (value !== undefined && value !== null) meta[field] = typeof value === 'bigint' ? Number(value) : value;
  }
  return {
    id: `blink/val/${idx}`,
    images,
    question,
    choices,
    answer,
    answer_text: choices[answer.charCodeAt(0) - 65],
    prompt: optionalString(row, 'prompt') ?? choicesPrompt(question, choices),
    task: optionalString(row, 'sub_task') ?? subtask,
    source: 'BLINK',
    meta,
  };
}

async function loadSubtask(dir: string, subtask: string, files: string[], info: SplitInfo): Promise<EvalItem[]> {
  const reader = await sharedParquetReader();
  const table = await ParquetTable.open(reader, files, REQUIRED);
  const imageColumns = table.present(IMAGE_COLUMNS);
  const imageRow = table.rowReader(imageColumns);
  const items: EvalItem[] = [];
  // One pass over text and image columns, a window at a time, to learn which image_k are null;
  // the bytes are dropped here and read again lazily by loadImages.
  for await (const { start, rows } of table.scan([...table.present(TEXT_COLUMNS), ...imageColumns])) {
    rows.forEach((row, offset) => {
      const index = start + offset;
      const { file, row: fileRow } = table.locate(index);
      const place = { file: file.path, where: `row ${fileRow}` };
      info.rows++;
      const present = imageColumns.filter((c) => imageBytes(row[c]) !== null);
      if (present.length === 0) throw malformed(file.path, `row ${fileRow}: no image in ${imageColumns.join(', ')}`);
      const locators = present.map((c) => `${shown(dirname(dir), file.path)}#${fileRow}:${c}`);
      const record = toRecord(row, subtask, index, place, locators);
      items.push(
        makeItem(record, async () => {
          const value = await imageRow(index);
          return present.map((c) => {
            const bytes = imageBytes(value[c]);
            if (!bytes) throw malformed(file.path, `row ${fileRow}: column "${c}" holds no image bytes`);
            return bytes;
          });
        }),
      );
    });
  }
  return items;
}

async function load(options: BenchmarkLoadOptions): Promise<LoadedBenchmarkSplit> {
  const limit = checkLimit(options.limit);
  const split = options.split ?? 'val';
  if (split === 'test') {
    throw invalidInput('benchmark_split_unavailable', 'BLINK test answers are hidden (only the BLINK authors can score the test split); use split "val"');
  }
  if (!(SPLITS as readonly string[]).includes(split)) throw unknownSplit(TITLE, split, SPLITS);

  const dir = folder(options.dataDir);
  if (!(await isDir(dir))) throw dataMissing(`no BLINK folder at ${dir}. ${blinkLayout(options.dataDir)}`);
  const onDisk = await subtasksOnDisk(dir);
  const requested = options.subsets && options.subsets.length ? options.subsets : BLINK_DEFAULT_SUBTASKS;
  const subtasks = [...new Set(requested.map((s) => canonical(s, onDisk)))];
  // A subtask is a folder (or file stem) directly in the BLINK folder: `.` and `..` are neither.
  const notNames = subtasks.filter((s) => !/^(?!\.{1,2}$)[\w.-]+$/.test(s));
  if (notNames.length) throw invalidInput('benchmark_subset_unknown', `BLINK subsets are subtask names (${BLINK_SUBTASKS.join(', ')}); not ${notNames.map((s) => `"${s}"`).join(', ')}`);

  const info: SplitInfo = { layout: 'parquet', files: [], rows: 0, skipped: {}, messages: [] };
  // Every requested subtask must be present before anything is read.
  const sources: { subtask: string; files: string[] }[] = [];
  for (const subtask of subtasks) {
    const found = await findParquet(dir, patterns(subtask));
    if (!found) {
      throw dataMissing(
        `BLINK subtask ${subtask} not found: place ${dir}/${subtask}/val-00000-of-00001.parquet (from BLINK-Benchmark/BLINK) ` +
          `or ${dir}/${subtask}_val.parquet. ${blinkLayout(options.dataDir)}`,
      );
    }
    sources.push({ subtask, files: found.files });
  }
  let items: EvalItem[] = [];
  for (const { subtask, files } of sources) {
    if (limit !== undefined && items.length >= limit) break;
    info.files.push(...files);
    items = items.concat(await loadSubtask(dir, subtask, files, info));
  }
  if (limit !== undefined) items = items.slice(0, limit);
  return { benchmark: 'blink', split, items, info };
}

export const blinkLoader: BenchmarkLoader = {
  name: 'blink',
  origin: {
    title: TITLE,
    source: 'BLINK-Benchmark/BLINK (Hugging Face)',
    licence: 'Apache-2.0',
    licenceNote: 'Images are drawn from several public data sets under their own terms.',
  },
  splits: SPLITS,
  defaultSplit: 'val',
  layout: blinkLayout,
  load,
};
