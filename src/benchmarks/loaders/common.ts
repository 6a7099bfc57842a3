// What the benchmark loaders share: their option and result shapes, the errors they raise, finding
// files in the accepted layouts, and reading fields of published rows strictly.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { invalidInput, notFound, ServiceError, unprocessable } from '../../errors';
import { BenchmarkName, BenchmarkSplit, DatasetRecord, EvalItem, LoadOptions } from '../types';
import { ImageFileFormat, sniffImageFileFormat } from '../../engine/images/format';

export interface BenchmarkLoadOptions extends LoadOptions {
  /**
   * SAT: keep only items with exactly one image (default true; the paper trains and our engine
   * evaluates single-image prompts). Multi-image rows are skipped and counted in `info.skipped`.
   */
  singleImageOnly?: boolean;
  /**
   * SAT: look at only the first N rows of the published split (before the single-image filter,
   * subsets and `limit`). "The first 15k rows, single-image only" can mean either this or
   * `limit` (the first 15k single-image items); both are offered.
   */
  maxRows?: number;
}

/** What a loader read and what it left out, for logs, run records and `prepare`'s dataset.json. */
export interface SplitInfo {
  /** The layout that was found, e.g. "parquet", "jsonl", "hf-parquet". */
  layout: string;
  /** Files the items came from (absolute). */
  files: string[];
  /** Rows looked at (before subset filters, skips and the limit). */
  rows: number;
  /** Rows left out, by reason, e.g. `{ multi_image: 12 }`. */
  skipped: Record<string, number>;
  /** Human-readable notes about what was skipped or assumed. */
  messages: string[];
}

export interface LoadedBenchmarkSplit extends BenchmarkSplit {
  info: SplitInfo;
}

/** Where a published data set comes from and under which licence (copied into dataset.json). */
export interface BenchmarkOrigin {
  /** Display name, e.g. "CV-Bench". */
  title: string;
  /** Where to get it (names only; users download it themselves). */
  source: string;
  licence: string;
  licenceNote?: string;
}

export interface BenchmarkLoader {
  name: BenchmarkName;
  origin: BenchmarkOrigin;
  splits: readonly string[];
  defaultSplit: string;
  /** Which files go where under `dataDir` (the placeholder DATA_DIR when omitted), for every accepted layout. */
  layout(dataDir?: string): string;
  load(options: BenchmarkLoadOptions): Promise<LoadedBenchmarkSplit>;
}

// ---- errors ----------------------------------------------------------------------------------

export { invalidInput };

/** Absent folder or files (404): the message says which files to place where. */
export function dataMissing(message: string): ServiceError {
  return notFound('benchmark_data_missing', message);
}

/** A file that exists but cannot be used (422): the message names the file and the problem. */
export function malformed(file: string, problem: string): ServiceError {
  return unprocessable('benchmark_data_malformed', `${file}: ${problem}`);
}

export function unknownSplit(title: string, split: string, splits: readonly string[]): ServiceError {
  return invalidInput('benchmark_split_unknown', `${title} has no split "${split}"; choose one of ${splits.join(', ')}`);
}

/** `limit` must be a non-negative integer when given. */
export function checkLimit(limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  if (!Number.isInteger(limit) || limit < 0) throw invalidInput('invalid_limit', `limit must be a non-negative integer, got ${limit}`);
  return limit;
}

// ---- files -----------------------------------------------------------------------------------

/** A path under the data folder, absolute; under the placeholder "DATA_DIR" when no folder is given (docs). */
export function dataPath(dataDir: string | undefined, ...parts: string[]): string {
  return dataDir === undefined ? join('DATA_DIR', ...parts) : join(resolve(dataDir), ...parts);
}

export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Names in a folder, sorted; empty when the folder is absent. */
export async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

/** One accepted way a split's parquet data may lie in a benchmark folder. */
export type ShardPattern =
  /** Exactly this file (relative to the benchmark folder). */
  | { file: string }
  /** Every `*.parquet` in `dir` whose name starts with `prefix` (Hugging Face shards). */
  | { dir: string; prefix: string };

/**
 * The parquet files of the first pattern that matches, sorted (shards in order), or null.
 * Patterns are tried in the order given, so the documented primary layout wins.
 */
export async function findParquet(base: string, patterns: ShardPattern[]): Promise<{ files: string[]; pattern: ShardPattern } | null> {
  for (const pattern of patterns) {
    if ('file' in pattern) {
      const path = join(base, pattern.file);
      if (await isFile(path)) return { files: [path], pattern };
    } else {
      const dir = join(base, pattern.dir);
      const names = (await listDir(dir)).filter((n) => n.startsWith(pattern.prefix) && n.endsWith('.parquet'));
      if (names.length) return { files: names.map((n) => join(dir, n)), pattern };
    }
  }
  return null;
}

/** A JSON Lines file as objects with their 1-based line numbers; blank lines are ignored. */
export async function readJsonl(path: string): Promise<{ line: number; row: Record<string, unknown> }[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw malformed(path, `cannot be read (${(error as Error).message})`);
  }
  const out: { line: number; row: Record<string, unknown> }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw malformed(path, `line ${i + 1} is not JSON (${(error as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw malformed(path, `line ${i + 1} is not a JSON object`);
    out.push({ line: i + 1, row: value as Record<string, unknown> });
  }
  return out;
}

/** Path shown in messages: relative to the data folder when inside it. */
export function shown(dataDir: string, path: string): string {
  const rel = relative(dataDir, path);
  return rel && !rel.startsWith('..') ? rel : path;
}

// ---- fields ----------------------------------------------------------------------------------

/** Where a row came from, for error messages: "row 17" (parquet) or "line 18" (jsonl). */
export interface RowPlace {
  file: string;
  where: string;
}

export function requiredString(row: Record<string, unknown>, field: string, place: RowPlace): string {
  const value = row[field];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  throw malformed(place.file, `${place.where}: field "${field}" is ${describe(value)}, expected text`);
}

export function optionalString(row: Record<string, unknown>, field: string): string | undefined {
  const value = row[field];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}

/** A list of option texts (numbers are accepted and turned into text, as CV-Bench's counts may be). */
export function stringList(row: Record<string, unknown>, field: string, place: RowPlace): string[] {
  let value = row[field];
  // Some exports store lists as JSON text; accept that when it parses to a list.
  if (typeof value === 'string' && value.trim().startsWith('[')) {
    try {
      value = JSON.parse(value);
    } catch {
      // fall through to the error below
    }
  }
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint')) {
    return value.map((v) => String(v));
  }
  throw malformed(place.file, `${place.where}: field "${field}" is ${describe(value)}, expected a list of option texts`);
}

/** An id-like value (idx): numbers and bigints as decimal text. */
export function idValue(value: unknown): string | undefined {
  if (typeof value === 'bigint' || typeof value === 'number') return String(value);
  if (typeof value === 'string' && value.trim()) return value.trim();
  return undefined;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (ArrayBuffer.isView(value)) return 'binary';
  return `a ${typeof value}`;
}

/** "(C)", "C", "(c)" or "C." -> "C"; null when it is not a single letter. */
export function answerLetter(answer: string): string | null {
  const match = /^\(?\s*([A-Za-z])\s*\)?\.?$/.exec(answer.trim());
  return match ? match[1].toUpperCase() : null;
}

/** The gold letter checked against the number of choices. */
export function goldLetter(answer: string, choices: string[], place: RowPlace): string {
  const letter = answerLetter(answer);
  if (!letter) throw malformed(place.file, `${place.where}: answer "${answer}" is not an option letter like "(A)"`);
  const index = letter.charCodeAt(0) - 65;
  if (index >= choices.length) throw malformed(place.file, `${place.where}: answer ${answer} but only ${choices.length} choices`);
  return letter;
}

/** Subset names matched case-insensitively; returns the canonical names found and the unknown ones. */
export function matchNames(requested: string[], known: string[]): { found: string[]; unknown: string[] } {
  const found: string[] = [];
  const unknown: string[] = [];
  for (const name of requested) {
    const hit = known.find((k) => k.toLowerCase() === name.trim().toLowerCase());
    if (hit) {
      if (!found.includes(hit)) found.push(hit);
    } else {
      unknown.push(name);
    }
  }
  return { found, unknown };
}

// ---- images ----------------------------------------------------------------------------------

/** Encoded image bytes from a parquet value: raw binary, or a `{bytes, path}` image struct. */
export function imageBytes(value: unknown): Buffer | null {
  if (value === null || value === undefined) return null;
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'object' && 'bytes' in value) return imageBytes((value as { bytes: unknown }).bytes);
  return null;
}

const FILE_EXTENSIONS: Record<ImageFileFormat, string> = { png: 'png', jpeg: 'jpg', webp: 'webp', gif: 'gif', bmp: 'bmp', tiff: 'tiff' };

/** File extension of encoded image bytes from their signature (the engine's sniffer), or null when not a known format. */
export function imageExtension(bytes: Uint8Array): string | null {
  const format = sniffImageFileFormat(bytes);
  return format === null ? null : FILE_EXTENSIONS[format];
}

// ---- items -----------------------------------------------------------------------------------

export function makeItem(record: DatasetRecord, loadImages: () => Promise<Buffer[]>): EvalItem {
  return { record, loadImages };
}

/** Items whose images are files on disk. */
export function fileItem(record: DatasetRecord, paths: string[]): EvalItem {
  return makeItem(record, async () => {
    const out: Buffer[] = [];
    for (const path of paths) {
      try {
        out.push(await readFile(path));
      } catch (error) {
        throw dataMissing(`image ${path} of ${record.id} cannot be read (${(error as Error).message})`);
      }
    }
    return out;
  });
}

/** Count a skipped row under a reason. */
export function skip(info: SplitInfo, reason: string): void {
  info.skipped[reason] = (info.skipped[reason] ?? 0) + 1;
}

/** Keep items whose task is among `tasks` (all when undefined). */
export function filterTasks<T extends { record: DatasetRecord }>(items: T[], tasks: string[] | undefined): T[] {
  if (!tasks) return items;
  return items.filter((item) => tasks.includes(item.record.task));
}

/**
 * Subsets as task filters for loaders whose tasks are only known after reading (VSR relations,
 * SAT question types): unknown names are an error listing the tasks present.
 */
export function taskSubsets(title: string, subsets: string[] | undefined, present: string[], complete: boolean): string[] | undefined {
  if (!subsets || subsets.length === 0) return undefined;
  const { found, unknown } = matchNames(subsets, present);
  if (unknown.length && complete) {
    throw invalidInput('benchmark_subset_unknown', `${title} has no task ${unknown.map((u) => `"${u}"`).join(', ')}; tasks present: ${present.sort().join(', ')}`);
  }
  return found;
}
