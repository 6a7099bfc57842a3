// CV-Bench (nyu-visionx/CV-Bench, Apache-2.0): 2,638 multiple-choice items, 2D (Count, Relation;
// ADE20K and COCO images) and 3D (Depth, Distance; Omni3D images).
//
// Published two ways in the same repository, both accepted:
//   parquet: test_2d.parquet, test_3d.parquet; the image is a `{bytes, path}` struct column;
//   jsonl:   test_2d.jsonl, test_3d.jsonl plus image files at each line's `filename` (img/...).
// The first publication had one combined test.parquet / test.jsonl, told apart by `type`; it is
// read as a fallback. Fields: idx, type, task, image, question, choices, answer "(C)", prompt,
// filename, source, source_dataset, source_filename, ...
//
// Mapping: answer "(C)" -> "C"; answer_text = choices[C]; task = `task`; source = `source` (the
// official score averages accuracy per source); prompt = the file's own `prompt` when present.
import { dirname, join } from 'node:path';
import { choicesPrompt, DatasetRecord, EvalItem } from '../types';
import {
  BenchmarkLoader,
  dataPath,
  BenchmarkLoadOptions,
  checkLimit,
  dataMissing,
  fileItem,
  findParquet,
  goldLetter,
  idValue,
  imageBytes,
  invalidInput,
  isDir,
  isFile,
  LoadedBenchmarkSplit,
  makeItem,
  malformed,
  matchNames,
  optionalString,
  readJsonl,
  requiredString,
  RowPlace,
  shown,
  SplitInfo,
  stringList,
  unknownSplit,
} from './common';
import { ParquetRow, ParquetTable, sharedParquetReader } from './parquet';

const TITLE = 'CV-Bench';
const PARTS = { test_2d: '2D', test_3d: '3D' } as const;
type Part = keyof typeof PARTS;
const SPLITS = ['test', 'test_2d', 'test_3d'] as const;
const TASKS = ['Count', 'Relation', 'Depth', 'Distance'];
const TEXT_COLUMNS = ['idx', 'type', 'task', 'question', 'choices', 'answer', 'prompt', 'filename', 'source', 'source_dataset', 'source_filename'];
const REQUIRED = ['question', 'choices', 'answer', 'task', 'source'];

function folder(dataDir?: string): string {
  return dataPath(dataDir, 'cv-bench');
}

export function cvBenchLayout(dataDir?: string): string {
  const dir = folder(dataDir);
  return (
    `CV-Bench: place test_2d.parquet and test_3d.parquet (from nyu-visionx/CV-Bench) in ${dir}/ ` +
    `(Hugging Face shards data/test_2d-*.parquet and data/test_3d-*.parquet also work), ` +
    `or test_2d.jsonl/test_3d.jsonl with their img/ folder (each line's "filename", e.g. img/2D/count/ade20k_10.png, relative to ${dir}/)`
  );
}

interface PartSource {
  layout: string;
  kind: 'parquet' | 'jsonl';
  files: string[];
  /** Combined first-publication files hold both types: keep rows of this type. */
  type?: '2D' | '3D';
}

async function locate(dir: string, part: Part): Promise<PartSource | null> {
  const parquet = await findParquet(dir, [{ file: `${part}.parquet` }, { dir: 'data', prefix: `${part}-` }, { dir: '.', prefix: `${part}-` }]);
  if (parquet) return { layout: 'parquet', kind: 'parquet', files: parquet.files };
  const jsonl = join(dir, `${part}.jsonl`);
  if (await isFile(jsonl)) return { layout: 'jsonl', kind: 'jsonl', files: [jsonl] };
  const combined = await findParquet(dir, [{ file: 'test.parquet' }, { dir: 'data', prefix: 'test-' }]);
  if (combined) return { layout: 'parquet (combined test.parquet)', kind: 'parquet', files: combined.files, type: PARTS[part] };
  const combinedJsonl = join(dir, 'test.jsonl');
  if (await isFile(combinedJsonl)) return { layout: 'jsonl (combined test.jsonl)', kind: 'jsonl', files: [combinedJsonl], type: PARTS[part] };
  return null;
}

function toRecord(row: Record<string, unknown>, part: Part, index: number, place: RowPlace, images: string[]): DatasetRecord {
  const question = requiredString(row, 'question', place);
  const choices = stringList(row, 'choices', place);
  const answer = goldLetter(requiredString(row, 'answer', place), choices, place);
  const idx = idValue(row.idx) ?? String(index);
  const meta: Record<string, unknown> = { benchmark_split: part, row: index };
  for (const field of ['idx', 'type', 'source_dataset', 'source_filename', 'filename']) {
    const value = row[field];
    if (value !== undefined && value !== null) meta[field] = typeof value === 'bigint' ? Number(value) : value;
  }
  return {
    id: `cv-bench/${part}/${idx}`,
    images,
    question,
    choices,
    answer,
    answer_text: choices[answer.charCodeAt(0) - 65],
    prompt: optionalString(row, 'prompt') ?? choicesPrompt(question, choices),
    task: requiredString(row, 'task', place),
    source: requiredString(row, 'source', place),
    meta,
  };
}

/** Rows of a combined file are kept only for the wanted type; per-part files keep every row. */
function wanted(row: Record<string, unknown>, source: PartSource, place: RowPlace): boolean {
  if (!source.type) return true;
  const type = row.type;
  if (typeof type !== 'string') throw malformed(place.file, `${place.where}: field "type" (2D/3D) is needed to split the combined file`);
  return type.toUpperCase() === source.type;
}

async function loadParquet(dir: string, part: Part, source: PartSource, info: SplitInfo): Promise<EvalItem[]> {
  const reader = await sharedParquetReader();
  const table = await ParquetTable.open(reader, source.files, [...REQUIRED, 'image', ...(source.type ? ['type'] : [])]);
  const rows = await table.readAll(table.present(TEXT_COLUMNS));
  const imageRow = table.rowReader(['image']);
  const items: EvalItem[] = [];
  rows.forEach((row, index) => {
    const { file, row: fileRow } = table.locate(index);
    const place = { file: file.path, where: `row ${fileRow}` };
    info.rows++;
    if (!wanted(row, source, place)) return;
    const locator = `${shown(dirname(dir), file.path)}#${fileRow}:image`;
    const record = toRecord(row, part, index, place, [locator]);
    items.push(
      makeItem(record, async () => {
        const value: ParquetRow = await imageRow(index);
        const bytes = imageBytes(value.image);
        if (!bytes) throw malformed(file.path, `row ${fileRow}: column "image" holds no image bytes`);
        return [bytes];
      }),
    );
  });
  return items;
}

async function loadJsonl(dir: string, part: Part, source: PartSource, info: SplitInfo): Promise<EvalItem[]> {
  const file = source.files[0];
  const lines = await readJsonl(file);
  const items: EvalItem[] = [];
  const missing: string[] = [];
  for (const [index, { line, row }] of lines.entries()) {
    const place = { file, where: `line ${line}` };
    info.rows++;
    if (!wanted(row, source, place)) continue;
    const filename = requiredString(row, 'filename', place);
    // `filename` is relative to the repository root (img/2D/...); accept it relative to img/ too.
    const candidates = [join(dir, filename), join(dir, 'img', filename)];
    let path: string | undefined;
    for (const candidate of candidates) {
      if (await isFile(candidate)) {
        path = candidate;
        break;
      }
    }
    if (!path) {
      missing.push(filename);
      continue;
    }
    const record = toRecord(row, part, index, place, [shown(dirname(dir), path)]);
    items.push(fileItem(record, [path]));
  }
  if (missing.length) {
    throw dataMissing(
      `CV-Bench: ${missing.length} image${missing.length > 1 ? 's' : ''} named by ${file} ${missing.length > 1 ? 'are' : 'is'} missing ` +
        `(first: ${missing[0]}); place the img/ folder of nyu-visionx/CV-Bench in ${dir}/ (its build_img.py recreates it from the parquet files), ` +
        `or use test_2d.parquet/test_3d.parquet instead, which carry the images`,
    );
  }
  return items;
}

async function load(options: BenchmarkLoadOptions): Promise<LoadedBenchmarkSplit> {
  const limit = checkLimit(options.limit);
  const split = options.split ?? 'test';
  if (!(SPLITS as readonly string[]).includes(split)) throw unknownSplit(TITLE, split, SPLITS);
  let parts: Part[] = split === 'test' ? ['test_2d', 'test_3d'] : [split as Part];

  // subsets: 2D / 3D select parts; task names (Count, Relation, Depth, Distance) select tasks.
  let tasks: string[] | undefined;
  if (options.subsets && options.subsets.length) {
    const { found, unknown } = matchNames(options.subsets, ['2D', '3D', ...TASKS]);
    if (unknown.length) throw invalidInput('benchmark_subset_unknown', `CV-Bench subsets are 2D, 3D or a task (${TASKS.join(', ')}); unknown: ${unknown.join(', ')}`);
    const types = found.filter((f) => f === '2D' || f === '3D');
    if (types.length) parts = parts.filter((p) => types.includes(PARTS[p]));
    const named = found.filter((f) => TASKS.includes(f));
    if (named.length) tasks = named;
    if (!parts.length) throw invalidInput('benchmark_subset_unknown', `CV-Bench split ${split} has no ${types.join('/')} items`);
  }

  const dir = folder(options.dataDir);
  if (!(await isDir(dir))) throw dataMissing(`no CV-Bench folder at ${dir}. ${cvBenchLayout(options.dataDir)}`);

  const info: SplitInfo = { layout: '', files: [], rows: 0, skipped: {}, messages: [] };
  const layouts: string[] = [];
  let items: EvalItem[] = [];
  for (const part of parts) {
    const source = await locate(dir, part);
    if (!source) throw dataMissing(`CV-Bench ${part} not found: neither ${part}.parquet nor ${part}.jsonl is in ${dir}/. ${cvBenchLayout(options.dataDir)}`);
    layouts.push(source.layout);
    for (const f of source.files) if (!info.files.includes(f)) info.files.push(f);
    const loaded = source.kind === 'parquet' ? await loadParquet(dir, part, source, info) : await loadJsonl(dir, part, source, info);
    items = items.concat(loaded);
  }
  info.layout = [...new Set(layouts)].join(' + ');
  if (tasks) items = items.filter((item) => tasks.includes(item.record.task));
  if (limit !== undefined) items = items.slice(0, limit);
  const name = parts.length === 2 ? 'test' : parts[0];
  return { benchmark: 'cv-bench', split: name, items, info };
}

export const cvBenchLoader: BenchmarkLoader = {
  name: 'cv-bench',
  origin: {
    title: TITLE,
    source: 'nyu-visionx/CV-Bench (Hugging Face)',
    licence: 'Apache-2.0',
    licenceNote: 'Images come from ADE20K, COCO and Omni3D under their own terms.',
  },
  splits: SPLITS,
  defaultSplit: 'test',
  layout: cvBenchLayout,
  load,
};
