// Tiny benchmark data sets in each published format, built in a temporary DATA_DIR: parquet files
// written with hyparquet-writer (schemas as Hugging Face `datasets`/pyarrow write them: images as
// `{bytes, path}` structs, lists as 3-level LIST groups), JSON Lines, and images made with sharp.
// Nothing is downloaded.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

export type ColumnType = 'string' | 'int64' | 'image' | 'string_list' | 'image_list' | 'binary_list';
export interface FixtureColumn {
  name: string;
  type: ColumnType;
}
export interface FixtureImage {
  bytes: Buffer;
  path?: string;
}
export type FixtureValue = string | number | null | Buffer | FixtureImage | string[] | (FixtureImage | Buffer)[];

// hyparquet-writer is an ES module that jest cannot load, so the file is written by a child node.
const WRITER_SCRIPT = String.raw`
const { pathToFileURL } = require('node:url');
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const spec = JSON.parse(input);
  const writer = await import(pathToFileURL(spec.writer).href);
  const bin = (v) => (v && typeof v === 'object' && '$b64' in v ? new Uint8Array(Buffer.from(v.$b64, 'base64')) : v);
  const image = (v) => (v === null ? null : { bytes: bin(v.bytes), path: v.path ?? null });
  const schema = [{ name: 'root', num_children: spec.columns.length }];
  const columnData = [];
  for (const { name, type } of spec.columns) {
    const values = spec.rows.map((r) => (r[name] === undefined ? null : r[name]));
    const list = (element) => [
      { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      ...element,
    ];
    const struct = (n) => [
      { name: n, repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ];
    if (type === 'string') {
      schema.push({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' });
      columnData.push({ name, data: values });
    } else if (type === 'int64') {
      schema.push({ name, type: 'INT64', repetition_type: 'OPTIONAL' });
      columnData.push({ name, data: values.map((v) => (v === null ? null : BigInt(v))) });
    } else if (type === 'image') {
      schema.push(...struct(name));
      columnData.push({ name, data: values.map(image) });
    } else if (type === 'string_list') {
      schema.push(...list([{ name: 'element', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }]));
      columnData.push({ name, data: values });
    } else if (type === 'image_list') {
      schema.push(...list(struct('element')));
      columnData.push({ name, data: values.map((v) => (v === null ? null : v.map(image))) });
    } else if (type === 'binary_list') {
      schema.push(...list([{ name: 'element', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' }]));
      columnData.push({ name, data: values.map((v) => (v === null ? null : v.map(bin))) });
    } else {
      throw new Error('unknown column type ' + type);
    }
  }
  writer.parquetWriteFile({ filename: spec.file, columnData, schema, rowGroupSize: spec.rowGroupSize });
});
`;

function encode(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { $b64: value.toString('base64') };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  return value;
}

/** Write a parquet file (snappy, the writer's default codec) with the given columns and rows. */
export function writeParquet(file: string, columns: FixtureColumn[], rows: Record<string, FixtureValue>[], options: { rowGroupSize?: number } = {}): void {
  mkdirSync(dirname(file), { recursive: true });
  const spec = { writer: require.resolve('hyparquet-writer'), file, columns, rows: encode(rows), rowGroupSize: options.rowGroupSize ?? 1000 };
  execFileSync(process.execPath, ['-e', WRITER_SCRIPT], { input: JSON.stringify(spec), stdio: ['pipe', 'inherit', 'inherit'] });
}

export function writeJsonl(file: string, rows: object[]): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/** A solid-colour image whose width identifies it (width = 10 + seed, height 8). */
export async function fixtureImage(seed: number, format: 'png' | 'jpeg' = 'png'): Promise<Buffer> {
  const image = sharp({ create: { width: 10 + seed, height: 8, channels: 3, background: { r: (seed * 37) % 256, g: (seed * 91) % 256, b: 128 } } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg().toBuffer();
}

export interface DataDir {
  dataDir: string;
  cleanup(): void;
}

export function tempDataDir(): DataDir {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-fixture-'));
  return { dataDir, cleanup: () => rmSync(dataDir, { recursive: true, force: true }) };
}

// ---- CV-Bench --------------------------------------------------------------------------------

export interface CvBenchRow {
  idx: number;
  type: '2D' | '3D';
  task: string;
  question: string;
  choices: string[];
  answer: string;
  prompt?: string;
  filename: string;
  source: string;
  source_dataset: string;
}

/** Five CV-Bench rows: three 2D (PNG images), two 3D (JPEG). The image of row idx has width 10 + idx. */
export const CV_BENCH_ROWS: CvBenchRow[] = [
  { idx: 0, type: '2D', task: 'Count', question: 'How many chairs are in the image?', choices: ['3', '2', '1', '0'], answer: '(C)', filename: 'img/2D/count/ade20k_0.png', source: 'ADE20K', source_dataset: 'ADE20K Validation Set' },
  { idx: 1, type: '2D', task: 'Relation', question: 'Is the cup left or right of the plate?', choices: ['left', 'right'], answer: '(B)', prompt: 'Is the cup left or right of the plate? Select from the following choices.\n(A) left\n(B) right', filename: 'img/2D/relation/coco_1.png', source: 'COCO', source_dataset: 'COCO 2017 Validation Set' },
  { idx: 2, type: '2D', task: 'Count', question: 'How many dogs are in the image?', choices: ['1', '2', '3', '4', '5'], answer: '(A)', filename: 'img/2D/count/coco_2.png', source: 'COCO', source_dataset: 'COCO 2017 Validation Set' },
  { idx: 3, type: '3D', task: 'Depth', question: 'Which is closer to the camera, the lamp or the bed?', choices: ['lamp', 'bed'], answer: '(A)', filename: 'img/3D/depth/omni3d_3.jpg', source: 'Omni3D', source_dataset: 'SUNRGBD' },
  { idx: 4, type: '3D', task: 'Distance', question: 'Which is closer to the sofa, the table or the door?', choices: ['table', 'door'], answer: '(B)', filename: 'img/3D/distance/omni3d_4.jpg', source: 'Omni3D', source_dataset: 'Hypersim' },
];

const CV_BENCH_COLUMNS: FixtureColumn[] = [
  { name: 'idx', type: 'int64' },
  { name: 'type', type: 'string' },
  { name: 'task', type: 'string' },
  { name: 'image', type: 'image' },
  { name: 'question', type: 'string' },
  { name: 'choices', type: 'string_list' },
  { name: 'answer', type: 'string' },
  { name: 'prompt', type: 'string' },
  { name: 'filename', type: 'string' },
  { name: 'source', type: 'string' },
  { name: 'source_dataset', type: 'string' },
];

async function cvBenchImage(row: CvBenchRow): Promise<Buffer> {
  return fixtureImage(row.idx, row.type === '2D' ? 'png' : 'jpeg');
}

/** CV-Bench parquet publication: test_2d.parquet + test_3d.parquet, or HF shards data/test_2d-00000-of-00001.parquet. */
export async function writeCvBenchParquet(dataDir: string, options: { layout?: 'flat' | 'hf'; omitColumn?: string } = {}): Promise<void> {
  const columns = CV_BENCH_COLUMNS.filter((c) => c.name !== options.omitColumn);
  for (const type of ['2D', '3D'] as const) {
    const part = type === '2D' ? 'test_2d' : 'test_3d';
    const rows: Record<string, FixtureValue>[] = [];
    for (const row of CV_BENCH_ROWS.filter((r) => r.type === type)) {
      rows.push({ ...row, prompt: row.prompt ?? null, image: { bytes: await cvBenchImage(row), path: row.filename.split('/').pop() } });
    }
    const file = options.layout === 'hf' ? join(dataDir, 'cv-bench', 'data', `${part}-00000-of-00001.parquet`) : join(dataDir, 'cv-bench', `${part}.parquet`);
    writeParquet(file, columns, rows, { rowGroupSize: 2 });
  }
}

/** CV-Bench jsonl publication: test_2d.jsonl + test_3d.jsonl and the img/ files they name. */
export async function writeCvBenchJsonl(dataDir: string): Promise<void> {
  for (const type of ['2D', '3D'] as const) {
    const rows = CV_BENCH_ROWS.filter((r) => r.type === type);
    for (const row of rows) {
      const path = join(dataDir, 'cv-bench', row.filename);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, await cvBenchImage(row));
    }
    writeJsonl(join(dataDir, 'cv-bench', type === '2D' ? 'test_2d.jsonl' : 'test_3d.jsonl'), rows);
  }
}

// ---- BLINK -----------------------------------------------------------------------------------

const BLINK_COLUMNS: FixtureColumn[] = [
  { name: 'idx', type: 'string' },
  { name: 'question', type: 'string' },
  { name: 'sub_task', type: 'string' },
  { name: 'image_1', type: 'image' },
  { name: 'image_2', type: 'image' },
  { name: 'image_3', type: 'image' },
  { name: 'image_4', type: 'image' },
  { name: 'choices', type: 'string_list' },
  { name: 'answer', type: 'string' },
  { name: 'prompt', type: 'string' },
  { name: 'explanation', type: 'string' },
];

/**
 * BLINK: Relative_Depth in the Hugging Face folder layout (val + a test file with hidden
 * answers), Spatial_Relation as a flat Spatial_Relation_val.parquet, and Jigsaw (three images per
 * item) as an extra subtask. Image k of item n has width 10 + 10 * n + k.
 */
export async function writeBlink(dataDir: string): Promise<void> {
  const item = async (subtask: string, n: number, images: number, answer: string, choices: string[]) => {
    const row: Record<string, FixtureValue> = {
      idx: `val_${subtask}_${n}`,
      question: `${subtask} question ${n}?`,
      sub_task: subtask,
      choices,
      answer,
      prompt: `${subtask} question ${n}?\nSelect from the following choices.\n${choices.map((c, i) => `(${String.fromCharCode(65 + i)}) ${c}`).join('\n')}`,
      explanation: '',
    };
    for (let k = 1; k <= 4; k++) row[`image_${k}`] = k <= images ? { bytes: await fixtureImage(10 * n + k, 'jpeg') } : null;
    return row;
  };
  writeParquet(join(dataDir, 'blink', 'Relative_Depth', 'val-00000-of-00001.parquet'), BLINK_COLUMNS, [
    await item('Relative_Depth', 1, 1, '(A)', ['A is closer', 'B is closer']),
    await item('Relative_Depth', 2, 1, '(B)', ['A is closer', 'B is closer']),
  ]);
  writeParquet(join(dataDir, 'blink', 'Relative_Depth', 'test-00000-of-00001.parquet'), BLINK_COLUMNS, [{ ...(await item('Relative_Depth', 3, 1, '', ['A is closer', 'B is closer'])), idx: 'test_Relative_Depth_1' }]);
  writeParquet(join(dataDir, 'blink', 'Spatial_Relation_val.parquet'), BLINK_COLUMNS, [
    await item('Spatial_Relation', 4, 1, '(B)', ['yes', 'no']),
    await item('Spatial_Relation', 5, 1, '(A)', ['yes', 'no']),
  ]);
  writeParquet(join(dataDir, 'blink', 'Jigsaw', 'val-00000-of-00001.parquet'), BLINK_COLUMNS, [await item('Jigsaw', 6, 3, '(B)', ['the first', 'the second'])]);
}

// ---- VSR -------------------------------------------------------------------------------------

export interface VsrRow {
  image: string;
  image_link: string;
  caption: string;
  label: number;
  relation: string;
}

export const VSR_RANDOM_TEST: VsrRow[] = [
  { image: '000000000011.jpg', image_link: 'http://images.cocodataset.org/train2017/000000000011.jpg', caption: 'The cat is behind the laptop.', label: 1, relation: 'behind' },
  { image: '000000000012.jpg', image_link: 'http://images.cocodataset.org/train2017/000000000012.jpg', caption: 'The cow is ahead of the person.', label: 0, relation: 'ahead of' },
  { image: '000000000013.jpg', image_link: 'http://images.cocodataset.org/val2017/000000000013.jpg', caption: 'The cake is at the edge of the dining table.', label: 1, relation: 'at the edge of' },
  { image: '000000000014.jpg', image_link: 'http://images.cocodataset.org/val2017/000000000014.jpg', caption: 'The horse is left of the person.', label: 0, relation: 'left of' },
];
export const VSR_ZEROSHOT_TEST: VsrRow[] = [
  { image: '000000000021.jpg', image_link: 'http://images.cocodataset.org/train2017/000000000021.jpg', caption: 'The bus is away from the cup.', label: 1, relation: 'away from' },
  { image: '000000000022.jpg', image_link: 'http://images.cocodataset.org/train2017/000000000022.jpg', caption: 'The toilet is in the train.', label: 0, relation: 'in' },
];

/**
 * VSR: random/test.jsonl and zeroshot/test.jsonl; train2017 images in coco/train2017/ (or all in
 * vsr/images/), val2017 images in coco/val2017/. The image of COCO id n has width 10 + n % 100.
 */
export async function writeVsr(dataDir: string, options: { images?: 'coco' | 'vsr' | 'none' } = {}): Promise<void> {
  writeJsonl(join(dataDir, 'vsr', 'random', 'test.jsonl'), VSR_RANDOM_TEST.map((r) => ({ ...r, annotator_id: 1, vote_true_validator_id: '[2]', vote_false_validator_id: '[]' })));
  writeJsonl(join(dataDir, 'vsr', 'zeroshot', 'test.jsonl'), VSR_ZEROSHOT_TEST);
  if (options.images === 'none') return;
  for (const row of [...VSR_RANDOM_TEST, ...VSR_ZEROSHOT_TEST]) {
    const folder = options.images === 'vsr' ? join(dataDir, 'vsr', 'images') : join(dataDir, 'coco', row.image_link.includes('/val2017/') ? 'val2017' : 'train2017');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, row.image), await fixtureImage(Number(row.image.slice(0, -4)) % 100, 'jpeg'));
  }
}

// ---- SAT -------------------------------------------------------------------------------------

export interface SatRow {
  images: number;
  question: string;
  answers: string[];
  correct_answer: string;
  question_type: string;
}

/** SAT val rows; row 2 has two images. Image k of row r has width 10 + 10 * r + k. */
export const SAT_VAL: SatRow[] = [
  { images: 1, question: 'Is the chair to the left of the table?', answers: ['yes', 'no'], correct_answer: 'no', question_type: 'obj_relation' },
  { images: 1, question: 'How many apples are there?', answers: ['2', '3', '4'], correct_answer: '3', question_type: 'counting' },
  { images: 2, question: 'Did the camera move left or right?', answers: ['left', 'right'], correct_answer: 'left', question_type: 'ego_movement' },
  { images: 1, question: 'Which is closer, the sofa or the lamp?', answers: ['sofa', 'lamp'], correct_answer: 'lamp', question_type: 'depth' },
  { images: 1, question: 'If I turn right, is the door ahead?', answers: ['yes', 'no'], correct_answer: 'yes', question_type: 'perspective' },
];

async function satRows(rows: SatRow[], offset: number, raw: boolean): Promise<Record<string, FixtureValue>[]> {
  const out: Record<string, FixtureValue>[] = [];
  for (const [i, row] of rows.entries()) {
    const images: (FixtureImage | Buffer)[] = [];
    for (let k = 0; k < row.images; k++) {
      const bytes = await fixtureImage(10 * (offset + i) + k, 'png');
      images.push(raw ? bytes : { bytes });
    }
    out.push({ image_bytes: images, question: row.question, answers: row.answers, correct_answer: row.correct_answer, question_type: row.question_type });
  }
  return out;
}

const SAT_COLUMNS = (raw: boolean): FixtureColumn[] => [
  { name: 'image_bytes', type: raw ? 'binary_list' : 'image_list' },
  { name: 'question', type: 'string' },
  { name: 'answers', type: 'string_list' },
  { name: 'correct_answer', type: 'string' },
  { name: 'question_type', type: 'string' },
];

/** SAT: SAT_val.parquet (image structs, row groups of 2) as array/SAT publishes it. */
export async function writeSatVal(dataDir: string): Promise<void> {
  writeParquet(join(dataDir, 'sat', 'SAT_val.parquet'), SAT_COLUMNS(false), await satRows(SAT_VAL, 0, false), { rowGroupSize: 2 });
}

/** SAT train in Hugging Face shards data/train-0000{0,1}-of-00002.parquet, images as raw bytes; 6 rows, row 1 two images. */
export async function writeSatTrainShards(dataDir: string): Promise<SatRow[]> {
  const rows: SatRow[] = Array.from({ length: 6 }, (_, r) => ({
    images: r === 1 ? 2 : 1,
    question: `Train question ${r}?`,
    answers: ['left', 'right', 'ahead'],
    correct_answer: ['left', 'right', 'ahead'][r % 3],
    question_type: r % 2 ? 'ego_movement' : 'obj_relation',
  }));
  writeParquet(join(dataDir, 'sat', 'data', 'train-00000-of-00002.parquet'), SAT_COLUMNS(true), await satRows(rows.slice(0, 3), 0, true));
  writeParquet(join(dataDir, 'sat', 'data', 'train-00001-of-00002.parquet'), SAT_COLUMNS(true), await satRows(rows.slice(3), 3, true));
  return rows;
}
