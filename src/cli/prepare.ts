// prepare: convert a split of a published benchmark (read from DATA_DIR in its own format) into our
// data set format (docs/architecture.md, "A data set on disk"):
//   <out>/<split>.jsonl   one DatasetRecord per line, image paths relative to <out>/
//   <out>/images/<split>/ the original encoded image bytes, extension from the actual format
//   <out>/dataset.json    name, source, licence of the original, counts, converter settings
//
//   npm run prepare-data -- --benchmark sat --split train --out data/sat-train --limit 15000
//
// Options: --benchmark cv-bench|blink|vsr|sat, --split (the benchmark's default when omitted),
// --out DIR, --data-dir DIR (default $DATA_DIR or ./data), --limit N (first N items),
// --max-rows N (SAT: look at only the first N rows of the published file, before filters),
// --subsets a,b (benchmark subsets), --single-image-only (default) / --no-single-image-only (SAT),
// --out-split NAME (file name of the split in <out>, default the split loaded), --name NAME
// (dataset.json name, default the folder name), --force (replace an existing <split>.jsonl).
// Converting several splits into one <out> folder adds each to dataset.json.
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { invalidInput, isServiceError, unprocessable } from '../errors';
import { benchmarkLoader, closeSharedParquetReader, imageExtension, loadBenchmark } from '../benchmarks/loaders';
import { BENCHMARKS, BenchmarkName, DatasetRecord } from '../benchmarks/types';
import { progressBar, ProgressBar } from './progress';

export interface PrepareOptions {
  benchmark: BenchmarkName;
  /** Split to convert; the benchmark's default when omitted. */
  split?: string;
  /** Output data set folder. */
  out: string;
  /** DATA_DIR holding the published benchmark files. */
  dataDir: string;
  /** Keep the first N items. */
  limit?: number;
  /** SAT: look at only the first N rows of the published split (before filters). */
  maxRows?: number;
  subsets?: string[];
  /** SAT: keep single-image items only (default true, as the paper's training data). */
  singleImageOnly?: boolean;
  /** Name of the split in <out> (default: the split loaded). */
  outSplit?: string;
  /** dataset.json `name` (default: the out folder's name). */
  name?: string;
  /** Replace an existing <out>/<split>.jsonl. */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Notes for the user (what was read, what was skipped). */
  onMessage?: (message: string) => void;
}

export interface PrepareResult {
  out: string;
  split: string;
  count: number;
  jsonl: string;
  datasetJson: string;
  skipped: Record<string, number>;
}

interface DatasetJson {
  name: string;
  benchmark: BenchmarkName;
  title: string;
  source: string;
  licence: string;
  licence_note?: string;
  counts: Record<string, number>;
  splits: Record<string, unknown>;
  converter: { tool: string; settings: Record<string, unknown> };
  created_at: string;
  updated_at: string;
}

/** File-name stem for an item's images: its id without the benchmark prefix, made file-safe. */
function stem(id: string, benchmark: string): string {
  const rest = id.startsWith(`${benchmark}/`) ? id.slice(benchmark.length + 1) : id;
  return rest.replace(/[^A-Za-z0-9._-]+/g, '_');
}

async function readDatasetJson(path: string): Promise<DatasetJson | null> {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(await readFile(path, 'utf8')) as DatasetJson;
  } catch (error) {
    throw unprocessable('dataset_json_malformed', `${path} exists but is not JSON (${(error as Error).message}); remove it or choose another --out`);
  }
}

export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  if (!(BENCHMARKS as readonly string[]).includes(options.benchmark)) {
    throw invalidInput('benchmark_unknown', `unknown benchmark "${options.benchmark}"; choose one of ${BENCHMARKS.filter((b) => b !== 'spatial-synth').join(', ')}`);
  }
  if (options.benchmark === 'spatial-synth') {
    throw invalidInput('benchmark_generated', 'spatial-synth is generated, not converted: use the synth command');
  }
  const loader = benchmarkLoader(options.benchmark);
  const out = resolve(options.out);
  const dataDir = resolve(options.dataDir);
  const singleImageOnly = options.singleImageOnly ?? true;
  const datasetPath = join(out, 'dataset.json');
  const existing = await readDatasetJson(datasetPath);
  if (existing && existing.benchmark !== options.benchmark) {
    throw invalidInput('output_conflict', `${datasetPath} describes a ${existing.benchmark} data set; convert ${options.benchmark} into another --out folder`);
  }

  if (options.maxRows !== undefined && options.benchmark !== 'sat') {
    throw invalidInput('invalid_option', `--max-rows applies to sat only, not ${options.benchmark}`);
  }
  const loaded = await loadBenchmark(options.benchmark, { dataDir, split: options.split, subsets: options.subsets, limit: options.limit, maxRows: options.maxRows, singleImageOnly });
  for (const message of loaded.info.messages) options.onMessage?.(message);
  const split = options.outSplit ?? loaded.split;
  if (!/^[A-Za-z0-9._-]+$/.test(split)) throw invalidInput('invalid_split_name', `split name "${split}" must be letters, digits, ".", "_" or "-"`);
  const jsonl = join(out, `${split}.jsonl`);
  if (existsSync(jsonl) && !options.force) {
    throw invalidInput('output_exists', `${jsonl} already exists; pass --force to replace it`);
  }

  const imageDir = join(out, 'images', split);
  await rm(imageDir, { recursive: true, force: true });
  await mkdir(imageDir, { recursive: true });
  const partial = `${jsonl}.partial`;
  const stream = createWriteStream(partial);
  const used = new Set<string>();
  const total = loaded.items.length;
  try {
    for (const [index, item] of loaded.items.entries()) {
      const images = await item.loadImages();
      let name = stem(item.record.id, options.benchmark);
      if (used.has(name)) name = `${name}_${index}`;
      used.add(name);
      const paths: string[] = [];
      for (const [k, bytes] of images.entries()) {
        const ext = imageExtension(bytes);
        if (!ext) throw unprocessable('benchmark_data_malformed', `image ${k + 1} of ${item.record.id} (${item.record.images[k] ?? '?'}) is not a PNG, JPEG, WebP, GIF, BMP or TIFF file`);
        const file = `${name}${images.length > 1 ? `_${k}` : ''}.${ext}`;
        await writeFile(join(imageDir, file), bytes);
        paths.push(`images/${split}/${file}`);
      }
      const record: DatasetRecord = { ...item.record, images: paths, meta: { ...item.record.meta, original_images: item.record.images } };
      if (!stream.write(`${JSON.stringify(record)}\n`)) await once(stream, 'drain');
      options.onProgress?.(index + 1, total);
    }
    stream.end();
    await once(stream, 'finish');
  } catch (error) {
    stream.destroy();
    await rm(partial, { force: true });
    throw error;
  }
  await rename(partial, jsonl);

  const now = new Date().toISOString();
  const settings = {
    benchmark: options.benchmark,
    split: loaded.split,
    limit: options.limit ?? null,
    max_rows: options.maxRows ?? null,
    subsets: options.subsets ?? null,
    single_image_only: singleImageOnly,
    data_dir: dataDir,
  };
  const dataset: DatasetJson = {
    name: options.name ?? existing?.name ?? basename(out),
    benchmark: options.benchmark,
    title: loader.origin.title,
    source: loader.origin.source,
    licence: loader.origin.licence,
    ...(loader.origin.licenceNote ? { licence_note: loader.origin.licenceNote } : {}),
    counts: { ...(existing?.counts ?? {}), [split]: total },
    splits: {
      ...(existing?.splits ?? {}),
      [split]: {
        count: total,
        source_split: loaded.split,
        source_layout: loaded.info.layout,
        source_files: loaded.info.files.map((f) => relative(dataDir, f)),
        rows_read: loaded.info.rows,
        skipped: loaded.info.skipped,
        notes: loaded.info.messages,
      },
    },
    converter: { tool: 'prepare', settings: { ...(existing?.converter?.settings ?? {}), [split]: settings } },
    created_at: existing?.created_at ?? now,
    updated_at: now,
  };
  await writeFile(datasetPath, `${JSON.stringify(dataset, null, 2)}\n`);
  return { out, split, count: total, jsonl, datasetJson: datasetPath, skipped: loaded.info.skipped };
}

// ---- command line ----------------------------------------------------------------------------

const USAGE = `usage: npm run prepare-data -- --benchmark <cv-bench|blink|vsr|sat> --out <dir> [--split <name>]
       [--data-dir <dir>] [--limit <n>] [--max-rows <n>] [--subsets <a,b>] [--no-single-image-only]
       [--out-split <name>] [--name <name>] [--force]`;

export class UsageError extends Error {}

/** Parse command-line arguments into options (throws UsageError with the reason). */
export function parsePrepareArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): PrepareOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        benchmark: { type: 'string' },
        split: { type: 'string' },
        out: { type: 'string' },
        'data-dir': { type: 'string' },
        limit: { type: 'string' },
        'max-rows': { type: 'string' },
        subsets: { type: 'string' },
        'single-image-only': { type: 'boolean' },
        'no-single-image-only': { type: 'boolean' },
        'out-split': { type: 'string' },
        name: { type: 'string' },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  if (!values.benchmark) throw new UsageError('--benchmark is required');
  if (!values.out) throw new UsageError('--out is required');
  if (values['single-image-only'] && values['no-single-image-only']) throw new UsageError('--single-image-only and --no-single-image-only contradict each other');
  const count = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new UsageError(`--${flag} must be a non-negative integer, got "${value}"`);
    return n;
  };
  const limit = count('limit', values.limit);
  const maxRows = count('max-rows', values['max-rows']);
  return {
    benchmark: values.benchmark as BenchmarkName,
    split: values.split,
    out: values.out,
    dataDir: values['data-dir'] ?? env.DATA_DIR ?? 'data',
    limit,
    maxRows,
    subsets: values.subsets
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    singleImageOnly: !values['no-single-image-only'],
    outSplit: values['out-split'],
    name: values.name,
    force: values.force ?? false,
  };
}

export async function main(argv: string[]): Promise<number> {
  let options: PrepareOptions | 'help';
  try {
    options = parsePrepareArgs(argv);
  } catch (error) {
    process.stderr.write(`prepare: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    process.stderr.write(`prepare: reading ${options.benchmark} ${options.split ?? '(default split)'} from ${resolve(options.dataDir)}\n`);
    let bar: ProgressBar | undefined;
    const result = await prepare({
      ...options,
      onProgress: (done, total) => {
        bar ??= progressBar(`prepare ${options.benchmark}`, total);
        bar.update(done);
      },
      onMessage: (message) => process.stderr.write(`prepare: ${message}\n`),
    });
    // The last update already printed a line when stderr is not a terminal; on one, end the line.
    if (process.stderr.isTTY) bar?.finish();
    const skipped = Object.entries(result.skipped).map(([reason, n]) => `${n} ${reason}`);
    process.stderr.write(`prepare: wrote ${result.count} items to ${result.jsonl}${skipped.length ? ` (skipped: ${skipped.join(', ')})` : ''}\n`);
    return 0;
  } catch (error) {
    if (isServiceError(error)) {
      process.stderr.write(`prepare: ${error.code}: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    await closeSharedParquetReader();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`prepare: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
