// Benchmark loaders read each published format (fixtures built in a temp DATA_DIR), map fields to
// DatasetRecord, load images lazily, and fail with 404 errors naming the files to place and
// 422 errors naming the unreadable file; `prepare` converts a split to our format.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { closeSharedParquetReader, expectedLayout, loadBenchmark, LOADERS } from '../../src/benchmarks/loaders';
import { windowOf, windows, WINDOW_ROWS } from '../../src/benchmarks/loaders/parquet';
import { choicesPrompt, DatasetRecord } from '../../src/benchmarks/types';
import { parsePrepareArgs, prepare, UsageError } from '../../src/cli/prepare';
import { ServiceError } from '../../src/errors';
import {
  CV_BENCH_ROWS,
  DataDir,
  SAT_VAL,
  tempDataDir,
  VSR_RANDOM_TEST,
  writeBlink,
  writeCvBenchJsonl,
  writeCvBenchParquet,
  writeSatTrainShards,
  writeSatVal,
  writeVsr,
} from '../helpers/benchmark_fixtures';

const widthOf = async (bytes: Buffer) => (await sharp(bytes).metadata()).width;
const formatOf = async (bytes: Buffer) => (await sharp(bytes).metadata()).format;
const failure = (promise: Promise<unknown>) => promise.then(() => new Error('expected a failure'), (error: unknown) => error as ServiceError);

let data: DataDir; // every benchmark in its primary published layout
let jsonl: DataDir; // CV-Bench's jsonl publication, VSR images in vsr/images/
let satTrain: Awaited<ReturnType<typeof writeSatTrainShards>>;

beforeAll(async () => {
  data = tempDataDir();
  await writeCvBenchParquet(data.dataDir);
  await writeBlink(data.dataDir);
  await writeVsr(data.dataDir);
  await writeSatVal(data.dataDir);
  satTrain = await writeSatTrainShards(data.dataDir);
  jsonl = tempDataDir();
  await writeCvBenchJsonl(jsonl.dataDir);
  await writeVsr(jsonl.dataDir, { images: 'vsr' });
});

afterAll(async () => {
  await closeSharedParquetReader();
  data?.cleanup();
  jsonl?.cleanup();
});

describe('CV-Bench', () => {
  test('the parquet publication: ids, letters, answer text, task, source and prompt per row', async () => {
    const split = await loadBenchmark('cv-bench', { dataDir: data.dataDir });
    expect(split.split).toBe('test');
    expect(split.info.layout).toBe('parquet');
    const records = split.items.map((i) => i.record);
    expect(records.map((r) => r.id)).toEqual(['cv-bench/test_2d/0', 'cv-bench/test_2d/1', 'cv-bench/test_2d/2', 'cv-bench/test_3d/3', 'cv-bench/test_3d/4']);
    expect(records.map((r) => r.answer)).toEqual(['C', 'B', 'A', 'A', 'B']);
    expect(records.map((r) => r.answer_text)).toEqual(['1', 'right', '1', 'lamp', 'door']);
    expect(records.map((r) => r.task)).toEqual(['Count', 'Relation', 'Count', 'Depth', 'Distance']);
    expect(records.map((r) => r.source)).toEqual(['ADE20K', 'COCO', 'COCO', 'Omni3D', 'Omni3D']);
    // The file's own prompt when it has one, CV-Bench style otherwise.
    expect(records[1].prompt).toBe(CV_BENCH_ROWS[1].prompt);
    expect(records[0].prompt).toBe(choicesPrompt(CV_BENCH_ROWS[0].question, CV_BENCH_ROWS[0].choices));
    expect(records[0]).toMatchObject({ question: 'How many chairs are in the image?', choices: ['3', '2', '1', '0'], meta: { type: '2D', idx: 0, source_dataset: 'ADE20K Validation Set' } });
    expect(records[3].images).toEqual(['cv-bench/test_3d.parquet#0:image']);
  });

  test('images are loaded lazily from the parquet image structs and decode', async () => {
    const split = await loadBenchmark('cv-bench', { dataDir: data.dataDir });
    for (const [i, item] of split.items.entries()) {
      const images = await item.loadImages();
      expect(images).toHaveLength(1);
      expect(await widthOf(images[0])).toBe(10 + CV_BENCH_ROWS[i].idx);
      expect(await formatOf(images[0])).toBe(CV_BENCH_ROWS[i].type === '2D' ? 'png' : 'jpeg');
    }
  });

  test('the jsonl publication with its img/ folder gives the same records and images', async () => {
    const fromParquet = await loadBenchmark('cv-bench', { dataDir: data.dataDir });
    const fromJsonl = await loadBenchmark('cv-bench', { dataDir: jsonl.dataDir });
    expect(fromJsonl.info.layout).toBe('jsonl');
    const strip = (r: DatasetRecord) => ({ ...r, images: [], meta: {} });
    expect(fromJsonl.items.map((i) => strip(i.record))).toEqual(fromParquet.items.map((i) => strip(i.record)));
    expect(fromJsonl.items[0].record.images).toEqual(['cv-bench/img/2D/count/ade20k_0.png']);
    const [a] = await fromJsonl.items[4].loadImages();
    const [b] = await fromParquet.items[4].loadImages();
    expect(a.equals(b)).toBe(true);
  });

  test('Hugging Face shards data/test_2d-*.parquet are accepted', async () => {
    const hf = tempDataDir();
    try {
      await writeCvBenchParquet(hf.dataDir, { layout: 'hf' });
      const split = await loadBenchmark('cv-bench', { dataDir: hf.dataDir, split: 'test_3d' });
      expect(split.split).toBe('test_3d');
      expect(split.items.map((i) => i.record.id)).toEqual(['cv-bench/test_3d/3', 'cv-bench/test_3d/4']);
    } finally {
      hf.cleanup();
    }
  });

  test('splits, 2D/3D and task subsets, and limit select items in a fixed order', async () => {
    const ids = async (options: { split?: string; subsets?: string[]; limit?: number }) =>
      (await loadBenchmark('cv-bench', { dataDir: data.dataDir, ...options })).items.map((i) => i.record.id);
    expect(await ids({ split: 'test_3d' })).toEqual(['cv-bench/test_3d/3', 'cv-bench/test_3d/4']);
    expect(await ids({ subsets: ['3d'] })).toEqual(['cv-bench/test_3d/3', 'cv-bench/test_3d/4']);
    expect(await ids({ subsets: ['Count'] })).toEqual(['cv-bench/test_2d/0', 'cv-bench/test_2d/2']);
    expect(await ids({ limit: 2 })).toEqual(['cv-bench/test_2d/0', 'cv-bench/test_2d/1']);
    expect(await ids({ limit: 0 })).toEqual([]);
    await expect(loadBenchmark('cv-bench', { dataDir: data.dataDir, split: 'val' })).rejects.toMatchObject({ status: 400, code: 'benchmark_split_unknown' });
    await expect(loadBenchmark('cv-bench', { dataDir: data.dataDir, subsets: ['4D'] })).rejects.toMatchObject({ status: 400 });
    await expect(loadBenchmark('cv-bench', { dataDir: data.dataDir, limit: -1 })).rejects.toMatchObject({ status: 400 });
  });

  test('a missing folder is a 404 naming the files of both publications and where they go', async () => {
    const empty = tempDataDir();
    try {
      const error = await failure(loadBenchmark('cv-bench', { dataDir: empty.dataDir }));
      expect(error).toMatchObject({ status: 404, code: 'benchmark_data_missing' });
      expect(error.message).toContain(join(empty.dataDir, 'cv-bench'));
      for (const name of ['test_2d.parquet', 'test_3d.parquet', 'test_2d.jsonl', 'test_3d.jsonl', 'img/', 'nyu-visionx/CV-Bench']) expect(error.message).toContain(name);
    } finally {
      empty.cleanup();
    }
  });

  test('a missing 3D file, or images missing beside the jsonl, is a 404', async () => {
    const partial = tempDataDir();
    try {
      await writeCvBenchParquet(partial.dataDir);
      rmSync(join(partial.dataDir, 'cv-bench', 'test_3d.parquet'));
      expect(await loadBenchmark('cv-bench', { dataDir: partial.dataDir, split: 'test_2d' })).toMatchObject({ split: 'test_2d' });
      const error = await failure(loadBenchmark('cv-bench', { dataDir: partial.dataDir }));
      expect(error).toMatchObject({ status: 404, code: 'benchmark_data_missing', message: expect.stringContaining('test_3d.parquet') });
    } finally {
      partial.cleanup();
    }
    const noImages = tempDataDir();
    try {
      await writeCvBenchJsonl(noImages.dataDir);
      rmSync(join(noImages.dataDir, 'cv-bench', 'img'), { recursive: true });
      const error = await failure(loadBenchmark('cv-bench', { dataDir: noImages.dataDir }));
      expect(error).toMatchObject({ status: 404, code: 'benchmark_data_missing', message: expect.stringMatching(/img\/2D\/count\/ade20k_0\.png.*img\/ folder/) });
    } finally {
      noImages.cleanup();
    }
  });

  test('a parquet file without a needed column, or with garbage bytes, is a 422 naming the file', async () => {
    const broken = tempDataDir();
    try {
      await writeCvBenchParquet(broken.dataDir, { omitColumn: 'answer' });
      const missing = await failure(loadBenchmark('cv-bench', { dataDir: broken.dataDir }));
      expect(missing).toMatchObject({ status: 422, code: 'benchmark_data_malformed' });
      expect(missing.message).toMatch(/test_2d\.parquet: missing column answer \(found: idx, type, task, image/);

      writeFileSync(join(broken.dataDir, 'cv-bench', 'test_2d.parquet'), Buffer.from('this is not a parquet file at all'));
      const garbage = await failure(loadBenchmark('cv-bench', { dataDir: broken.dataDir }));
      expect(garbage).toMatchObject({ status: 422, code: 'benchmark_data_malformed' });
      expect(garbage.message).toContain(join(broken.dataDir, 'cv-bench', 'test_2d.parquet'));
      expect(garbage.message).toMatch(/not a readable parquet file/);
    } finally {
      broken.cleanup();
    }
  });

  test('an answer that is not an option letter is a 422 naming the line', async () => {
    const bad = tempDataDir();
    try {
      await writeCvBenchJsonl(bad.dataDir);
      const file = join(bad.dataDir, 'cv-bench', 'test_2d.jsonl');
      writeFileSync(file, readFileSync(file, 'utf8').replace('"(B)"', '"(F)"'));
      await expect(loadBenchmark('cv-bench', { dataDir: bad.dataDir })).rejects.toMatchObject({
        status: 422,
        code: 'benchmark_data_malformed',
        message: expect.stringMatching(/test_2d\.jsonl: line 2: answer \(F\) but only 2 choices/),
      });
    } finally {
      bad.cleanup();
    }
  });
});

describe('BLINK', () => {
  test('val loads Relative_Depth (folder layout) and Spatial_Relation (flat file) by default', async () => {
    const split = await loadBenchmark('blink', { dataDir: data.dataDir });
    expect(split.split).toBe('val');
    const records = split.items.map((i) => i.record);
    expect(records.map((r) => r.id)).toEqual(['blink/val/val_Relative_Depth_1', 'blink/val/val_Relative_Depth_2', 'blink/val/val_Spatial_Relation_4', 'blink/val/val_Spatial_Relation_5']);
    expect(records.map((r) => [r.answer, r.answer_text, r.task])).toEqual([
      ['A', 'A is closer', 'Relative_Depth'],
      ['B', 'B is closer', 'Relative_Depth'],
      ['B', 'no', 'Spatial_Relation'],
      ['A', 'yes', 'Spatial_Relation'],
    ]);
    expect(records[0]).toMatchObject({ source: 'BLINK', prompt: expect.stringContaining('(B) B is closer'), images: ['blink/Relative_Depth/val-00000-of-00001.parquet#0:image_1'] });
    const widths = await Promise.all(split.items.map(async (i) => widthOf((await i.loadImages())[0])));
    expect(widths).toEqual([21, 31, 51, 61]);
  });

  test('another subtask present on disk loads when named in subsets, with all its images in order', async () => {
    const split = await loadBenchmark('blink', { dataDir: data.dataDir, subsets: ['jigsaw'] });
    expect(split.items).toHaveLength(1);
    const item = split.items[0];
    expect(item.record.task).toBe('Jigsaw');
    expect(item.record.images).toHaveLength(3);
    const images = await item.loadImages();
    expect(await Promise.all(images.map(widthOf))).toEqual([71, 72, 73]);
  });

  test('the test split is refused: its answers are hidden', async () => {
    await expect(loadBenchmark('blink', { dataDir: data.dataDir, split: 'test' })).rejects.toMatchObject({
      status: 400,
      code: 'benchmark_split_unavailable',
      message: expect.stringMatching(/hidden.*use split "val"/),
    });
  });

  test('a missing subtask is a 404 naming its file and folder', async () => {
    const error = await failure(loadBenchmark('blink', { dataDir: data.dataDir, subsets: ['Counting'] }));
    expect(error).toMatchObject({ status: 404, code: 'benchmark_data_missing' });
    expect(error.message).toContain(`${join(data.dataDir, 'blink')}/Counting/val-00000-of-00001.parquet`);
    const empty = tempDataDir();
    try {
      const none = await failure(loadBenchmark('blink', { dataDir: empty.dataDir }));
      expect(none.message).toMatch(/Relative_Depth\/val-00000-of-00001\.parquet.*Spatial_Relation\/val-00000-of-00001\.parquet/);
    } finally {
      empty.cleanup();
    }
  });
});

describe('VSR', () => {
  test('random_test: captions posed as True/False, A for label 1, task = relation, COCO images found', async () => {
    const split = await loadBenchmark('vsr', { dataDir: data.dataDir });
    expect(split.split).toBe('random_test');
    const records = split.items.map((i) => i.record);
    expect(records.map((r) => r.id)).toEqual(['vsr/random_test/0', 'vsr/random_test/1', 'vsr/random_test/2', 'vsr/random_test/3']);
    expect(records.map((r) => r.answer)).toEqual(['A', 'B', 'A', 'B']);
    expect(records.map((r) => r.answer_text)).toEqual(['True', 'False', 'True', 'False']);
    expect(records.map((r) => r.task)).toEqual(VSR_RANDOM_TEST.map((r) => r.relation));
    expect(records[0]).toMatchObject({ choices: ['True', 'False'], source: 'VSR', question: expect.stringContaining('The cat is behind the laptop.'), images: ['coco/train2017/000000000011.jpg'] });
    expect(records[0].prompt).toBe(choicesPrompt(records[0].question, ['True', 'False']));
    expect(records[2].images).toEqual(['coco/val2017/000000000013.jpg']);
    expect(await widthOf((await split.items[2].loadImages())[0])).toBe(23);
  });

  test('zeroshot_test with images in vsr/images/', async () => {
    const split = await loadBenchmark('vsr', { dataDir: jsonl.dataDir, split: 'zeroshot_test' });
    expect(split.items.map((i) => [i.record.id, i.record.answer, i.record.images[0]])).toEqual([
      ['vsr/zeroshot_test/0', 'A', 'vsr/images/000000000021.jpg'],
      ['vsr/zeroshot_test/1', 'B', 'vsr/images/000000000022.jpg'],
    ]);
  });

  test('missing annotations or images are a 404 saying where to put them', async () => {
    const empty = tempDataDir();
    try {
      const none = await failure(loadBenchmark('vsr', { dataDir: empty.dataDir }));
      expect(none).toMatchObject({ status: 404, code: 'benchmark_data_missing' });
      expect(none.message).toMatch(/random\/test\.jsonl.*zeroshot\/test\.jsonl/);
      await writeVsr(empty.dataDir, { images: 'none' });
      const images = await failure(loadBenchmark('vsr', { dataDir: empty.dataDir }));
      expect(images).toMatchObject({ status: 404, code: 'benchmark_data_missing' });
      expect(images.message).toContain('4 of 4 images');
      expect(images.message).toContain(join(empty.dataDir, 'vsr', 'images'));
      expect(images.message).toContain(`${join(empty.dataDir, 'coco')}/train2017/`);
    } finally {
      empty.cleanup();
    }
  });

  test('a line that is not JSON is a 422 naming the file and line', async () => {
    const bad = tempDataDir();
    try {
      await writeVsr(bad.dataDir);
      const file = join(bad.dataDir, 'vsr', 'random', 'test.jsonl');
      writeFileSync(file, readFileSync(file, 'utf8') + '{not json\n');
      await expect(loadBenchmark('vsr', { dataDir: bad.dataDir })).rejects.toMatchObject({ status: 422, message: expect.stringMatching(/test\.jsonl: line 5 is not JSON/) });
    } finally {
      bad.cleanup();
    }
  });
});

describe('SAT', () => {
  test('val keeps single-image items, counts the skipped multi-image ones, and maps answers to letters', async () => {
    const split = await loadBenchmark('sat', { dataDir: data.dataDir });
    expect(split.split).toBe('val');
    expect(split.info.skipped).toEqual({ multi_image: 1 });
    expect(split.info.messages.join(' ')).toMatch(/skipped 1 multi-image/);
    const records = split.items.map((i) => i.record);
    expect(records.map((r) => r.id)).toEqual(['sat/val/0', 'sat/val/1', 'sat/val/3', 'sat/val/4']);
    expect(records.map((r) => r.answer)).toEqual(['B', 'B', 'B', 'A']);
    expect(records.map((r) => r.answer_text)).toEqual(['no', '3', 'lamp', 'yes']);
    expect(records.map((r) => r.task)).toEqual(['obj_relation', 'counting', 'depth', 'perspective']);
    expect(records[1]).toMatchObject({ question: SAT_VAL[1].question, choices: SAT_VAL[1].answers, source: 'SAT', prompt: choicesPrompt(SAT_VAL[1].question, SAT_VAL[1].answers) });
    // Rows 3 and 4 lie in the second and third row groups.
    expect(await Promise.all(split.items.map(async (i) => widthOf((await i.loadImages())[0])))).toEqual([10, 20, 40, 50]);
  });

  test('multi-image items are kept with all their images when asked', async () => {
    const split = await loadBenchmark('sat', { dataDir: data.dataDir, singleImageOnly: false });
    expect(split.items).toHaveLength(5);
    const two = split.items[2];
    expect(two.record.images).toEqual(['sat/SAT_val.parquet#2:image_bytes[0]', 'sat/SAT_val.parquet#2:image_bytes[1]']);
    expect(await Promise.all((await two.loadImages()).map(widthOf))).toEqual([30, 31]);
  });

  test('train from Hugging Face shards with raw image bytes: row ids run across the shards', async () => {
    const split = await loadBenchmark('sat', { dataDir: data.dataDir, split: 'train' });
    expect(split.info.files.map((f) => f.split('/').pop())).toEqual(['train-00000-of-00002.parquet', 'train-00001-of-00002.parquet']);
    expect(split.items.map((i) => i.record.id)).toEqual(['sat/train/0', 'sat/train/2', 'sat/train/3', 'sat/train/4', 'sat/train/5']);
    expect(split.items.map((i) => i.record.answer_text)).toEqual([0, 2, 3, 4, 5].map((r) => satTrain[r].correct_answer));
    expect(await widthOf((await split.items[2].loadImages())[0])).toBe(40);
  });

  test('limit stops reading once enough items are found; subsets select question types', async () => {
    const limited = await loadBenchmark('sat', { dataDir: data.dataDir, limit: 2 });
    expect(limited.items.map((i) => i.record.id)).toEqual(['sat/val/0', 'sat/val/1']);
    expect(limited.info.rows).toBeLessThan(SAT_VAL.length);
    const depth = await loadBenchmark('sat', { dataDir: data.dataDir, subsets: ['depth'] });
    expect(depth.items.map((i) => i.record.id)).toEqual(['sat/val/3']);
    await expect(loadBenchmark('sat', { dataDir: data.dataDir, subsets: ['nonsense'] })).rejects.toMatchObject({ status: 400, code: 'benchmark_subset_unknown' });
  });

  test('maxRows bounds the published rows looked at, before the single-image filter', async () => {
    const split = await loadBenchmark('sat', { dataDir: data.dataDir, maxRows: 3 });
    expect(split.items.map((i) => i.record.id)).toEqual(['sat/val/0', 'sat/val/1']);
    expect(split.info).toMatchObject({ rows: 3, skipped: { multi_image: 1 } });
    expect(split.info.messages.join(' ')).toMatch(/maxRows 3 reached/);
  });

  test('a missing split is a 404 naming SAT_<split>.parquet', async () => {
    const error = await failure(loadBenchmark('sat', { dataDir: data.dataDir, split: 'test' }));
    expect(error).toMatchObject({ status: 404, code: 'benchmark_data_missing' });
    expect(error.message).toContain(`SAT_test.parquet in ${join(data.dataDir, 'sat')}/`);
  });
});

describe('registry', () => {
  test('the four published benchmarks are registered; spatial-synth has no loader (splits.ts generates it)', async () => {
    expect(Object.keys(LOADERS).sort()).toEqual(['blink', 'cv-bench', 'sat', 'vsr']);
    await expect(loadBenchmark('spatial-synth', { dataDir: data.dataDir })).rejects.toMatchObject({ status: 404, code: 'benchmark_loader_missing' });
    await expect(loadBenchmark('nope' as never, { dataDir: data.dataDir })).rejects.toMatchObject({ status: 400, code: 'benchmark_unknown' });
  });

  test('expectedLayout names the files and folders of each benchmark', () => {
    expect(expectedLayout('cv-bench')).toMatch(/test_2d\.parquet and test_3d\.parquet .* in DATA_DIR\/cv-bench\/.*test_2d\.jsonl/);
    expect(expectedLayout('blink', '/data')).toContain('/data/blink/Relative_Depth/val-00000-of-00001.parquet');
    expect(expectedLayout('vsr', '/data')).toMatch(/\/data\/vsr\/.*\/data\/coco\/train2017/);
    expect(expectedLayout('sat', '/data')).toContain('SAT_val.parquet');
  });
});

describe('parquet windows', () => {
  test('small row groups are read whole, large ones in aligned windows', () => {
    expect(windowOf([100, 100], 150)).toEqual([100, 200]);
    expect(windowOf([5000], 300)).toEqual([2 * WINDOW_ROWS, 3 * WINDOW_ROWS]);
    expect(windowOf([10, 2000], 2009)).toEqual([10 + Math.floor(1999 / WINDOW_ROWS) * WINDOW_ROWS, 2010]);
    expect(() => windowOf([10], 10)).toThrow(RangeError);
    const all = windows([3, 2000]);
    expect(all[0]).toEqual([0, 3]);
    expect(all[all.length - 1][1]).toBe(2003);
    expect(all.every(([s, e], i) => e > s && (i === 0 || all[i - 1][1] === s))).toBe(true);
  });
});

describe('prepare', () => {
  test('SAT train round-trip: JSONL records, original image bytes, dataset.json', async () => {
    const out = join(data.dataDir, 'out-sat');
    const progress: number[] = [];
    const result = await prepare({ benchmark: 'sat', split: 'train', out, dataDir: data.dataDir, limit: 3, onProgress: (done) => progress.push(done) });
    expect(result).toMatchObject({ split: 'train', count: 3, skipped: { multi_image: 1 } });
    expect(progress).toEqual([1, 2, 3]);
    const lines = readFileSync(join(out, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as DatasetRecord);
    const source = await loadBenchmark('sat', { dataDir: data.dataDir, split: 'train', limit: 3 });
    expect(lines.map((r) => r.id)).toEqual(['sat/train/0', 'sat/train/2', 'sat/train/3']);
    for (const [i, record] of lines.entries()) {
      expect(record.images).toEqual([`images/train/train_${record.id.split('/').pop()}.png`]);
      const written = readFileSync(join(out, record.images[0]));
      expect(written.equals((await source.items[i].loadImages())[0])).toBe(true);
      expect({ ...record, images: [], meta: {} }).toEqual({ ...source.items[i].record, images: [], meta: {} });
      expect(record.meta.original_images).toEqual(source.items[i].record.images);
    }
    const dataset = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    expect(dataset).toMatchObject({ name: 'out-sat', benchmark: 'sat', licence: 'MIT', source: expect.stringContaining('array/SAT'), counts: { train: 3 } });
    expect(dataset.splits.train).toMatchObject({ count: 3, source_split: 'train', skipped: { multi_image: 1 }, source_files: ['sat/data/train-00000-of-00002.parquet', 'sat/data/train-00001-of-00002.parquet'] });
    expect(dataset.converter.settings.train).toMatchObject({ limit: 3, single_image_only: true });
  });

  test('splits accumulate in one folder; an existing split is replaced only with force', async () => {
    const out = join(data.dataDir, 'out-cv');
    await prepare({ benchmark: 'cv-bench', split: 'test_2d', out, dataDir: data.dataDir });
    await prepare({ benchmark: 'cv-bench', split: 'test_3d', out, dataDir: data.dataDir, outSplit: 'test' });
    const dataset = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    expect(dataset).toMatchObject({ benchmark: 'cv-bench', licence: 'Apache-2.0', counts: { test_2d: 3, test: 2 } });
    const record = JSON.parse(readFileSync(join(out, 'test.jsonl'), 'utf8').split('\n')[0]) as DatasetRecord;
    expect(record).toMatchObject({ id: 'cv-bench/test_3d/3', images: ['images/test/test_3d_3.jpg'], source: 'Omni3D' });
    expect(existsSync(join(out, 'images', 'test', 'test_3d_3.jpg'))).toBe(true);
    await expect(prepare({ benchmark: 'cv-bench', split: 'test_2d', out, dataDir: data.dataDir })).rejects.toMatchObject({ code: 'output_exists' });
    await expect(prepare({ benchmark: 'cv-bench', split: 'test_2d', out, dataDir: data.dataDir, force: true, limit: 1 })).resolves.toMatchObject({ count: 1 });
    await expect(prepare({ benchmark: 'sat', out, dataDir: data.dataDir })).rejects.toMatchObject({ code: 'output_conflict' });
  });

  test('command-line arguments: defaults, flags and bad values', () => {
    expect(parsePrepareArgs(['--benchmark', 'sat', '--split', 'train', '--out', 'data/sat-train', '--limit', '15000'], {})).toMatchObject({
      benchmark: 'sat',
      split: 'train',
      out: 'data/sat-train',
      limit: 15000,
      dataDir: 'data',
      singleImageOnly: true,
      force: false,
    });
    expect(parsePrepareArgs(['--benchmark', 'blink', '--out', 'o', '--subsets', 'Jigsaw, Counting', '--no-single-image-only'], { DATA_DIR: '/d' })).toMatchObject({
      dataDir: '/d',
      subsets: ['Jigsaw', 'Counting'],
      singleImageOnly: false,
    });
    expect(parsePrepareArgs(['--benchmark', 'sat', '--out', 'o', '--max-rows', '15000'], {})).toMatchObject({ maxRows: 15000, limit: undefined });
    expect(() => parsePrepareArgs(['--benchmark', 'sat', '--out', 'o', '--limit', '1.5'])).toThrow(UsageError);
    expect(() => parsePrepareArgs(['--out', 'o'])).toThrow(/--benchmark is required/);
    expect(() => parsePrepareArgs(['--benchmark', 'sat', '--out', 'o', '--bogus'])).toThrow(UsageError);
  });

  test('npm run prepare-data runs the CLI: exit 0 and a progress report on stderr', async () => {
    const out = join(data.dataDir, 'out-vsr');
    const { stderr } = await promisify(execFile)(join(process.cwd(), 'node_modules', '.bin', 'tsx'), ['src/cli/prepare.ts', '--benchmark', 'vsr', '--out', out, '--data-dir', data.dataDir], { cwd: process.cwd() });
    expect(stderr).toMatch(/prepare vsr \[#+\] +100\.0% 4\/4/);
    expect(stderr).toMatch(/wrote 4 items/);
    expect(readFileSync(join(out, 'random_test.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
    const missing = await promisify(execFile)(join(process.cwd(), 'node_modules', '.bin', 'tsx'), ['src/cli/prepare.ts', '--benchmark', 'blink', '--out', join(data.dataDir, 'out-blink'), '--data-dir', join(data.dataDir, 'nowhere')]).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('benchmark_data_missing') });
  });
});
