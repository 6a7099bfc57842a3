// Parquet reading for the benchmark loaders, done in a worker thread.
//
// Why a worker: hyparquet and hyparquet-compressors are published as ES modules only. Node 20 can
// load them from our CommonJS build, but jest's module system cannot, and decoding snappy/zstd
// pages is CPU work that should stay off the HTTP thread anyway. The worker loads both packages
// with a real `import()` and answers two requests: `info` (footer: row count, row groups, column
// names) and `read` (some top-level columns of a row range, as row objects).
//
// Memory: nothing here reads a whole file. Text columns are read alone (hyparquet fetches only
// the byte ranges of the requested column chunks). Image columns are read lazily through
// `ParquetTable.rowReader`, one window of rows at a time: the whole row group when it has at most
// WINDOW_GROUP_MAX rows (Hugging Face `datasets` writes image data sets in groups of 100), else
// aligned windows of WINDOW_ROWS rows inside the group. Within a row group hyparquet skips the
// pages before a window without decompressing them (flat columns such as `{bytes, path}` image
// structs) and, where the file has an offset index, does not even read them. A few recent windows
// are cached so that items read in order cost one read per window.
import { Worker } from 'node:worker_threads';
import { ServiceError, unprocessable } from '../../errors';

/** A parquet row as hyparquet returns it: structs are objects, lists arrays, binary Uint8Array, INT64 bigint. */
export type ParquetRow = Record<string, unknown>;

export interface ParquetFileInfo {
  /** Absolute path. */
  path: string;
  numRows: number;
  /** Rows per row group, in file order. */
  rowGroups: number[];
  /** Top-level column names. */
  columns: string[];
}

/** Row groups up to this many rows are read whole when an image of one of their rows is needed. */
export const WINDOW_GROUP_MAX = 1024;
/** Window size inside larger row groups. */
export const WINDOW_ROWS = 128;
/** Windows kept per reader (items are usually read in order; two covers a batch straddling a boundary). */
const CACHED_WINDOWS = 2;

// The worker's source. Plain JavaScript: it runs outside TypeScript and outside jest's module system.
const WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const { stat } = require('node:fs/promises');
const { pathToFileURL } = require('node:url');

let libraries;
function load() {
  if (!libraries) {
    libraries = Promise.all([
      import(pathToFileURL(workerData.hyparquet).href),
      import(pathToFileURL(workerData.compressors).href),
    ]).then(([hyparquet, compressors]) => ({ hyparquet, compressors: compressors.compressors }));
  }
  return libraries;
}

// Footers parsed once per file version (size + mtime); a few files are open at a time.
const files = new Map();
async function open(path) {
  const { hyparquet } = await load();
  const st = await stat(path);
  const key = st.size + ':' + st.mtimeMs;
  const cached = files.get(path);
  if (cached && cached.key === key) return cached;
  const file = await hyparquet.asyncBufferFromFile(path);
  const metadata = await hyparquet.parquetMetadataAsync(file);
  const entry = { key, file, metadata };
  files.set(path, entry);
  if (files.size > 16) files.delete(files.keys().next().value);
  return entry;
}

// Copy binary values into their own buffers so they can be transferred without dragging along
// the decompressed page they point into.
function detach(value, transfer) {
  if (value === null || value === undefined) return value;
  if (ArrayBuffer.isView(value)) {
    const copy = new Uint8Array(value.byteLength);
    copy.set(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    transfer.push(copy.buffer);
    return copy;
  }
  if (Array.isArray(value)) return value.map((v) => detach(v, transfer));
  if (typeof value === 'object' && !(value instanceof Date)) {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = detach(v, transfer);
    return out;
  }
  return value;
}

// hyparquet reads a column chunk in one piece unless the file has an offset index; a chunk over
// 2 GiB (one huge row group) cannot be held in one buffer, so say what to do instead of failing
// somewhere inside the read.
function checkChunks(metadata, columns, rowStart, rowEnd) {
  let start = 0;
  metadata.row_groups.forEach((group, g) => {
    const end = start + Number(group.num_rows);
    if (end > rowStart && start < rowEnd) {
      for (const chunk of group.columns) {
        const meta = chunk.meta_data;
        if (!meta || !columns.includes(meta.path_in_schema[0]) || chunk.offset_index_offset) continue;
        const size = Number(meta.total_compressed_size);
        if (size >= 2 ** 31) {
          throw new Error('column ' + meta.path_in_schema.join('.') + ' has a ' + (size / 2 ** 30).toFixed(1) + ' GiB chunk in row group ' + g +
            ' without an offset index; re-save the file with smaller row groups (e.g. pyarrow row_group_size=1000)');
        }
      }
    }
    start = end;
  });
}

parentPort.on('message', async (message) => {
  const { id, op } = message;
  try {
    const { hyparquet, compressors } = await load();
    const { file, metadata } = await open(message.path);
    if (op === 'info') {
      const schema = hyparquet.parquetSchema(metadata);
      parentPort.postMessage({ id, result: {
        numRows: Number(metadata.num_rows),
        rowGroups: metadata.row_groups.map((g) => Number(g.num_rows)),
        columns: schema.children.map((c) => c.element.name),
      } });
    } else if (op === 'read') {
      checkChunks(metadata, message.columns, message.rowStart, message.rowEnd);
      const rows = await hyparquet.parquetReadObjects({
        file, metadata, compressors,
        columns: message.columns, rowStart: message.rowStart, rowEnd: message.rowEnd,
        utf8: false, useOffsetIndex: true,
      });
      const transfer = [];
      const result = rows.map((row) => detach(row, transfer));
      parentPort.postMessage({ id, result }, transfer);
    } else {
      throw new Error('unknown request ' + op);
    }
  } catch (error) {
    parentPort.postMessage({ id, error: String((error && error.message) || error) });
  }
});
`;

type Reply = { id: number; result?: unknown; error?: string };

/**
 * Handle on the parquet worker thread. Lifecycle: `ParquetReader.start()` (or the shared instance
 * from `sharedParquetReader()`), requests, idempotent `dispose()`; use after dispose is an error.
 * The thread is unreferenced while idle, so an open reader never keeps the process alive.
 */
export class ParquetReader {
  private worker: Worker | null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; path: string }>();
  private disposed = false;

  private constructor(worker: Worker) {
    this.worker = worker;
    worker.unref();
    worker.on('message', (reply: Reply) => this.settle(reply));
    const fail = (message: string) => {
      this.worker = null;
      for (const waiter of this.pending.values()) waiter.reject(unprocessable('benchmark_data_malformed', `${waiter.path}: ${message}`));
      this.pending.clear();
    };
    worker.on('error', (error) => fail(`the parquet reader crashed: ${error.message}`));
    worker.on('exit', (code) => {
      if (!this.disposed) fail(`the parquet reader exited with code ${code}`);
    });
  }

  static async start(): Promise<ParquetReader> {
    const workerData = { hyparquet: require.resolve('hyparquet'), compressors: require.resolve('hyparquet-compressors') };
    return new ParquetReader(new Worker(WORKER_SOURCE, { eval: true, workerData }));
  }

  get alive(): boolean {
    return !this.disposed && this.worker !== null;
  }

  /** Footer facts of one file. Garbage or truncated files reject with `benchmark_data_malformed`. */
  async info(path: string): Promise<ParquetFileInfo> {
    const result = (await this.request({ op: 'info', path })) as Omit<ParquetFileInfo, 'path'>;
    return { path, ...result };
  }

  /** Rows [rowStart, rowEnd) of the given top-level columns. */
  async read(path: string, columns: string[], rowStart: number, rowEnd: number): Promise<ParquetRow[]> {
    return (await this.request({ op: 'read', path, columns, rowStart, rowEnd })) as ParquetRow[];
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const worker = this.worker;
    this.worker = null;
    for (const waiter of this.pending.values()) waiter.reject(new ServiceError(499, 'reader_disposed', 'the parquet reader was closed'));
    this.pending.clear();
    if (worker) await worker.terminate();
  }

  private request(message: { op: string; path: string; [key: string]: unknown }): Promise<unknown> {
    if (this.disposed) throw new Error('ParquetReader used after dispose()');
    const worker = this.worker;
    if (!worker) throw unprocessable('benchmark_data_malformed', `${message.path}: the parquet reader is not running`);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) worker.ref(); // keep the process alive while a reply is due
      this.pending.set(id, { resolve, reject, path: message.path });
      worker.postMessage({ ...message, id });
    });
  }

  private settle(reply: Reply): void {
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (reply.error !== undefined) waiter.reject(unprocessable('benchmark_data_malformed', `${waiter.path}: not a readable parquet file (${reply.error})`));
    else waiter.resolve(reply.result);
  }
}

let shared: Promise<ParquetReader> | null = null;

/** The process-wide reader the loaders use; started on first use, restarted if it died. */
export async function sharedParquetReader(): Promise<ParquetReader> {
  const current = shared;
  if (current) {
    const reader = await current;
    if (reader.alive) return reader;
    if (shared !== current) return sharedParquetReader(); // another caller already restarted it
  }
  shared = ParquetReader.start();
  return shared;
}

/** Stop the shared reader (tests, shutdown). The next loader call starts a new one. */
export async function closeSharedParquetReader(): Promise<void> {
  const current = shared;
  shared = null;
  if (current) await (await current).dispose();
}

/** Window [start, end) of rows read together when row `index` of a file with these row groups is needed. */
export function windowOf(rowGroups: number[], index: number): [number, number] {
  let groupStart = 0;
  for (const rows of rowGroups) {
    const groupEnd = groupStart + rows;
    if (index < groupEnd) {
      if (rows <= WINDOW_GROUP_MAX) return [groupStart, groupEnd];
      const start = groupStart + Math.floor((index - groupStart) / WINDOW_ROWS) * WINDOW_ROWS;
      return [start, Math.min(start + WINDOW_ROWS, groupEnd)];
    }
    groupStart = groupEnd;
  }
  throw new RangeError(`row ${index} is beyond the file's ${groupStart} rows`);
}

/** Every window of a file in order (for streaming passes over a column). */
export function windows(rowGroups: number[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  const total = rowGroups.reduce((a, b) => a + b, 0);
  while (start < total) {
    const window = windowOf(rowGroups, start);
    out.push(window);
    start = window[1];
  }
  return out;
}

/**
 * One logical table made of one or more parquet files (Hugging Face shards `train-00000-of-00003`
 * ...), read in file order; row indexes run across the shards.
 */
export class ParquetTable {
  readonly files: ParquetFileInfo[];
  readonly numRows: number;
  private readonly starts: number[];

  private constructor(private readonly reader: ParquetReader, files: ParquetFileInfo[]) {
    this.files = files;
    this.starts = [];
    let start = 0;
    for (const file of files) {
      this.starts.push(start);
      start += file.numRows;
    }
    this.numRows = start;
  }

  /**
   * Open the shards and check that each has the required columns; a file that is not parquet or
   * lacks a column is `benchmark_data_malformed` naming the file.
   */
  static async open(reader: ParquetReader, paths: string[], required: string[]): Promise<ParquetTable> {
    const files: ParquetFileInfo[] = [];
    for (const path of paths) {
      const info = await reader.info(path);
      const missing = required.filter((c) => !info.columns.includes(c));
      if (missing.length) {
        throw unprocessable('benchmark_data_malformed', `${path}: missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (found: ${info.columns.join(', ') || 'none'})`);
      }
      files.push(info);
    }
    return new ParquetTable(reader, files);
  }

  /** Whether every shard has this column. */
  has(column: string): boolean {
    return this.files.every((f) => f.columns.includes(column));
  }

  /** Columns of `wanted` that every shard has (optional fields). */
  present(wanted: string[]): string[] {
    return wanted.filter((c) => this.has(c));
  }

  /** Where global row `index` lives. */
  locate(index: number): { file: ParquetFileInfo; row: number } {
    for (let i = this.files.length - 1; i >= 0; i--) {
      if (index >= this.starts[i]) return { file: this.files[i], row: index - this.starts[i] };
    }
    throw new RangeError(`row ${index} is out of range`);
  }

  /** All rows of some (small) columns, in table order. */
  async readAll(columns: string[]): Promise<ParquetRow[]> {
    const out: ParquetRow[] = [];
    for (const file of this.files) {
      if (file.numRows === 0) continue;
      const rows = await this.reader.read(file.path, columns, 0, file.numRows);
      for (const row of rows) out.push(row);
    }
    return out;
  }

  /** Stream windows of rows (global start index, rows) over the given columns, in table order. */
  async *scan(columns: string[]): AsyncGenerator<{ start: number; rows: ParquetRow[] }> {
    for (let i = 0; i < this.files.length; i++) {
      const file = this.files[i];
      for (const [start, end] of windows(file.rowGroups)) {
        const rows = await this.reader.read(file.path, columns, start, end);
        yield { start: this.starts[i] + start, rows };
      }
    }
  }

  /**
   * A function returning the given columns of one row, read a window at a time with a small cache
   * (used for image columns, so loading items stays lazy).
   */
  rowReader(columns: string[]): (index: number) => Promise<ParquetRow> {
    const cache = new Map<string, Promise<ParquetRow[]>>();
    return async (index: number) => {
      const { file, row } = this.locate(index);
      const [start, end] = windowOf(file.rowGroups, row);
      const key = `${file.path}#${start}`;
      let rows = cache.get(key);
      if (rows) {
        cache.delete(key); // re-insert: most recently used last
      } else {
        rows = this.reader.read(file.path, columns, start, end);
        rows.catch(() => cache.delete(key));
      }
      cache.set(key, rows);
      while (cache.size > CACHED_WINDOWS) cache.delete(cache.keys().next().value as string);
      return (await rows)[row - start];
    };
  }
}
