// Items, splits and data sets on disk. Every item is a pure function of (seed, split, index):
// its scene comes from a random stream keyed by all three, so any item can be made alone, in any
// order, and the three splits never draw from the same stream (they share no scene). Tasks take
// turns (index mod 4) and each task's gold letters are dealt from shuffled blocks, so a split's
// letters are balanced per task to within one block.
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { invalidInput, ServiceError, unprocessable } from '../../errors';
import { DatasetRecord, EvalItem, choicesPrompt, optionLetter } from '../types';
import { describeScene } from './describe';
import { CHOICE_COUNT, Question, TASKS, TaskName, makeQuestion, objectNames, planCount } from './questions';
import { Rng } from './random';
import { renderScene, sceneSvg } from './render';
import { DEFAULT_CAMERA, Scene, SceneLayout, layoutScene, objectCenter, sampleScene } from './scene';

export const SPLITS = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

export const DATASET_NAME = 'spatial-synth';
/** Bumped whenever a change would alter any scene, question or image for the same seed. */
export const GENERATOR_VERSION = 1;
/** Ids carry six-digit indices. */
export const MAX_ITEMS_PER_SPLIT = 1_000_000;
/** Scenes tried per item before giving up; with the default options a few tries are typical. */
const MAX_ATTEMPTS = 1000;

export const LEVEL_NAMES = ['standard', 'easy'] as const;
export type LevelName = (typeof LEVEL_NAMES)[number];

/** What a level sets: the scene distribution and the default image size. Tasks, wording, choices and margins are the same at every level. */
export interface LevelSpec {
  /** Default image side in pixels (options.size/width/height override it). */
  size: number;
  /** Default objects per scene (options.minObjects/maxObjects override them); a Distance scene has at least 3. */
  minObjects: number;
  maxObjects: number;
  /** Ground depth range the objects' footprint centres are drawn in (world units). */
  zMin: number;
  zMax: number;
  /** Factor on the size classes' radii (small 0.4, large 0.7) and so on every dimension of every object. */
  scale: number;
}

/**
 * The levels. `standard` is the generator as it always was (the same items for the same seed).
 * `easy` is for a tiny model that sees 168x168 pixels (12x12 patches of 14 px): fewer objects,
 * larger and nearer, drawn at that resolution.
 */
export const LEVELS: Readonly<Record<LevelName, Readonly<LevelSpec>>> = {
  standard: Object.freeze({ size: 448, minObjects: 3, maxObjects: 8, zMin: 3.2, zMax: 11.5, scale: 1 }),
  easy: Object.freeze({ size: 168, minObjects: 2, maxObjects: 4, zMin: 3.6, zMax: 8, scale: 1.4 }),
};

export interface SynthOptions {
  /** Scene distribution and default image size (LEVELS). Default 'standard'. */
  level?: LevelName;
  /** Square image side in pixels, a shorthand for width and height. Default: the level's (448; easy 168). */
  size?: number;
  width?: number;
  height?: number;
  /** Objects per scene (fewer when a scene is crowded). Default: the level's (3 to 8; easy 2 to 4). */
  minObjects?: number;
  maxObjects?: number;
  /** Least visible share of any object a question depends on. Default 0.6 (at most 40% hidden). */
  minVisible?: number;
  /** Tasks in turn order. Default Count, Relation, Depth, Distance. */
  tasks?: readonly TaskName[];
  /** Add a scene description (describe.ts) to each record's meta. Default false. */
  describe?: boolean;
}

export interface ResolvedSynthOptions {
  level: LevelName;
  width: number;
  height: number;
  minObjects: number;
  maxObjects: number;
  minVisible: number;
  tasks: TaskName[];
  describe: boolean;
}

export const DEFAULT_SYNTH_OPTIONS: Readonly<ResolvedSynthOptions> = Object.freeze({
  level: 'standard',
  width: LEVELS.standard.size,
  height: LEVELS.standard.size,
  minObjects: LEVELS.standard.minObjects,
  maxObjects: LEVELS.standard.maxObjects,
  minVisible: 0.6,
  tasks: [...TASKS],
  describe: false,
});

function invalid(message: string): ServiceError {
  return invalidInput('invalid_synth_option', message);
}

function checkInt(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** Fills defaults and checks every option; errors name the option and the allowed range. */
export function resolveSynthOptions(options: SynthOptions = {}): ResolvedSynthOptions {
  const d = DEFAULT_SYNTH_OPTIONS;
  const levelName = options.level ?? d.level;
  if (!(LEVEL_NAMES as readonly string[]).includes(levelName)) throw invalid(`level must be one of ${LEVEL_NAMES.join(', ')}, got ${JSON.stringify(levelName)}`);
  const level = LEVELS[levelName];
  const resolved: ResolvedSynthOptions = {
    level: levelName,
    width: options.width ?? options.size ?? level.size,
    height: options.height ?? options.size ?? level.size,
    minObjects: options.minObjects ?? level.minObjects,
    maxObjects: options.maxObjects ?? level.maxObjects,
    minVisible: options.minVisible ?? d.minVisible,
    tasks: [...(options.tasks ?? d.tasks)],
    describe: options.describe ?? d.describe,
  };
  checkInt('width', resolved.width, 64, 4096);
  checkInt('height', resolved.height, 64, 4096);
  // Relation and Depth need two objects, Distance three (its scenes get at least three whatever
  // minObjects says), and Count's lowest window (0-3) room for three of a kind; more than 12 no
  // longer fit the view with room between them.
  checkInt('minObjects', resolved.minObjects, 2, 12);
  checkInt('maxObjects', resolved.maxObjects, Math.max(3, resolved.minObjects), 12);
  if (!(resolved.minVisible > 0 && resolved.minVisible <= 1)) throw invalid(`minVisible must be in (0, 1], got ${resolved.minVisible}`);
  if (resolved.tasks.length === 0) throw invalid('tasks must name at least one task');
  for (const t of resolved.tasks) if (!TASKS.includes(t)) throw invalid(`unknown task ${JSON.stringify(t)}; tasks are ${TASKS.join(', ')}`);
  // Each task's gold letters are dealt per task (goldPosition): a task listed twice would get them twice.
  if (new Set(resolved.tasks).size !== resolved.tasks.length) throw invalid(`tasks must not repeat, got ${resolved.tasks.join(', ')}`);
  return resolved;
}

function checkSplit(split: string): asserts split is SplitName {
  if (!SPLITS.includes(split as SplitName)) throw invalid(`split must be one of ${SPLITS.join(', ')}, got ${JSON.stringify(split)}`);
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalid(`seed must be a non-negative integer, got ${seed}`);
}

const pad6 = (index: number) => String(index).padStart(6, '0');

export function itemId(split: SplitName, index: number): string {
  return `${DATASET_NAME}/${split}/${pad6(index)}`;
}

/** The image's path relative to the data set folder. */
export function imagePath(split: SplitName, index: number): string {
  return `images/${split}/${pad6(index)}.png`;
}

/**
 * The gold option's position for the k-th item of a task: positions are dealt from a freshly
 * shuffled block of all positions every n items, so each letter takes exactly 1/n of every block
 * yet no fixed pattern repeats.
 */
export function goldPosition(seed: number, split: SplitName, task: TaskName, k: number, n: number): number {
  const block = new Rng(`${DATASET_NAME}|${seed}|${split}|gold|${task}|${Math.floor(k / n)}`).shuffle([...Array(n).keys()]);
  return block[k % n];
}

export interface SynthItem {
  record: DatasetRecord;
  scene: Scene;
  layout: SceneLayout;
  /** The picture as SVG (what render() rasterises). */
  svg(): string;
  /** The picture as PNG bytes. */
  render(): Promise<Buffer>;
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

function buildRecord(split: SplitName, index: number, seed: number, level: LevelName, attempt: number, scene: Scene, layout: SceneLayout, q: Question): DatasetRecord {
  const names = objectNames(scene, layout);
  return {
    id: itemId(split, index),
    images: [imagePath(split, index)],
    question: q.question,
    choices: q.choices,
    answer: optionLetter(q.answerIndex),
    answer_text: q.choices[q.answerIndex],
    prompt: choicesPrompt(q.question, q.choices),
    task: q.task,
    source: DATASET_NAME,
    meta: {
      generator: DATASET_NAME,
      version: GENERATOR_VERSION,
      level,
      seed,
      split,
      index,
      // Scenes drawn for this item before one carried a clear question (0 = the first).
      attempt,
      // Everything renderScene needs to redraw the picture.
      scene,
      // Derived per object, in scene.objects order: what the answers were computed from.
      objects: layout.objects.map((l, i) => {
        const c = objectCenter(scene.objects[i]);
        return {
          name: names[i],
          center_3d: [c.x, round(c.y, 4), c.z],
          center_2d: [round(l.center[0], 2), round(l.center[1], 2)],
          bbox_2d: l.bbox.map((v) => round(v, 1)),
          camera_distance: round(l.cameraDistance, 4),
          visible: round(l.visible, 3),
        };
      }),
      draw_order: layout.drawOrder,
      operands: q.operands,
    },
  };
}

/** Item `index` of a split: the same (split, index, seed, options) always gives the same item. */
export function generateItem(split: SplitName, index: number, seed: number, options: SynthOptions = {}): SynthItem {
  checkSplit(split);
  checkSeed(seed);
  checkInt('index', index, 0, MAX_ITEMS_PER_SPLIT - 1);
  const opts = resolveSynthOptions(options);
  const task = opts.tasks[index % opts.tasks.length];
  const gold = goldPosition(seed, split, task, Math.floor(index / opts.tasks.length), CHOICE_COUNT[task]);
  const rng = new Rng(`${DATASET_NAME}|${seed}|${split}|scene|${index}`);
  const image = { width: opts.width, height: opts.height };
  const { zMin, zMax, scale } = LEVELS[opts.level];
  // Distance asks about a reference and two candidates: its scenes have at least three objects.
  const minObjects = task === 'Distance' ? Math.max(3, opts.minObjects) : opts.minObjects;
  // A Count item decides its question first and has the scene built to fit it.
  const count = task === 'Count' ? planCount(rng, gold, opts.maxObjects) : undefined;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const scene = sampleScene(rng, image, { minObjects, maxObjects: opts.maxObjects, count, zMin, zMax, scale });
    if (!scene) continue;
    const layout = layoutScene(scene);
    const q = makeQuestion(task, scene, layout, { rng, gold, minVisible: opts.minVisible, count });
    if (!q) continue;
    const record = buildRecord(split, index, seed, opts.level, attempt, scene, layout, q);
    if (opts.describe) {
      // Its own random stream: describing a scene never changes the scene, question or picture.
      record.meta.description = describeScene(scene, layout, new Rng(`${DATASET_NAME}|${seed}|${split}|describe|${index}`), opts.minVisible);
    }
    return { record, scene, layout, svg: () => sceneSvg(scene, layout), render: () => renderScene(scene, layout) };
  }
  throw unprocessable('synth_failed', `no scene with a clear ${task} question in ${MAX_ATTEMPTS} tries (${itemId(split, index)}); relax the options`);
}

/** Items start .. start+count-1 of a split. */
export function generateItems(split: SplitName, count: number, seed: number, options: SynthOptions & { start?: number } = {}): SynthItem[] {
  const start = options.start ?? 0;
  checkInt('count', count, 0, MAX_ITEMS_PER_SPLIT);
  checkInt('start', start, 0, MAX_ITEMS_PER_SPLIT - count);
  return Array.from({ length: count }, (_, k) => generateItem(split, start + k, seed, options));
}

/** A split ready to evaluate, images rendered in memory on demand (nothing is written). */
export function syntheticSplit(split: SplitName, count: number, seed: number, options: SynthOptions = {}): EvalItem[] {
  return generateItems(split, count, seed, options).map((item) => ({
    record: item.record,
    loadImages: async () => [await item.render()],
  }));
}

export interface SynthProgress {
  split: SplitName;
  /** Items finished (record written and image on disk), over all splits. */
  done: number;
  total: number;
  splitDone: number;
  splitTotal: number;
}

export interface WriteDatasetOptions extends SynthOptions {
  train?: number;
  val?: number;
  test?: number;
  seed: number;
  /** Images rendered at once; sharp renders on libuv's thread pool. Default: 2 per CPU, at least 4. */
  concurrency?: number;
  onProgress?: (progress: SynthProgress) => void;
}

/** The contents of `<out>/dataset.json`. */
export interface DatasetInfo {
  name: string;
  description: string;
  source: string;
  licence: string;
  /** Items per split (only the splits written). */
  counts: Partial<Record<SplitName, number>>;
  /** Items per task, per split. */
  tasks: Partial<Record<SplitName, Record<string, number>>>;
  /** Gold letters per task, per split (the balance at a glance). */
  answers: Partial<Record<SplitName, Record<string, Record<string, number>>>>;
  files: Partial<Record<SplitName, string>>;
  generator: Record<string, unknown>;
}

/** Keeps up to `limit` jobs running; the first failure stops new work and is rethrown. */
class Pool {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  async add(job: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) throw this.failure.error;
    const p: Promise<void> = job()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.error;
  }
}

/**
 * Writes `<out>/<split>.jsonl`, `<out>/images/<split>/<index>.png` and, last, `<out>/dataset.json`.
 * Each JSONL file is written under a temporary name and renamed when complete, so a crashed run
 * never leaves a JSONL that looks finished. Splits with count 0 are not written.
 */
export async function writeDataset(outDir: string, options: WriteDatasetOptions): Promise<DatasetInfo> {
  checkSeed(options.seed);
  const opts = resolveSynthOptions(options);
  const counts: Partial<Record<SplitName, number>> = {};
  for (const split of SPLITS) {
    const n = options[split] ?? 0;
    checkInt(split, n, 0, MAX_ITEMS_PER_SPLIT);
    if (n > 0) counts[split] = n;
  }
  const concurrency = options.concurrency ?? Math.max(4, 2 * availableParallelism());
  checkInt('concurrency', concurrency, 1, 256);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (total === 0) throw invalid('nothing to write: train, val and test are all 0');

  await mkdir(outDir, { recursive: true });
  const info: DatasetInfo = {
    name: DATASET_NAME,
    description:
      'Synthetic spatial-reasoning questions about rendered 3-D scenes (objects on a ground plane), in the four CV-Bench tasks Count, Relation, Depth and Distance, with exact ground truth.',
    source: 'generated by this project',
    // The project's own licence (package.json): the generator and its output are ours.
    licence: 'Apache-2.0',
    counts,
    tasks: {},
    answers: {},
    files: {},
    generator: {
      name: DATASET_NAME,
      version: GENERATOR_VERSION,
      level: opts.level,
      seed: options.seed,
      width: opts.width,
      height: opts.height,
      min_objects: opts.minObjects,
      max_objects: opts.maxObjects,
      // The level's scene distribution (LEVELS): ground depth range and object size factor.
      depth_range: [LEVELS[opts.level].zMin, LEVELS[opts.level].zMax],
      object_scale: LEVELS[opts.level].scale,
      min_visible: opts.minVisible,
      tasks: opts.tasks,
      ...(opts.describe ? { describe: true } : {}),
      camera: DEFAULT_CAMERA,
      // PNG bytes are reproducible for the same renderer build.
      renderer: { sharp: sharp.versions.sharp, vips: sharp.versions.vips, rsvg: sharp.versions.rsvg },
      command: 'npm run synth',
    },
  };

  let done = 0;
  for (const split of SPLITS) {
    const n = counts[split];
    if (!n) continue;
    await mkdir(join(outDir, 'images', split), { recursive: true });
    const taskCounts: Record<string, number> = Object.fromEntries(opts.tasks.map((t) => [t, 0]));
    const letterCounts: Record<string, Record<string, number>> = Object.fromEntries(
      opts.tasks.map((t) => [t, Object.fromEntries([...Array(CHOICE_COUNT[t]).keys()].map((k) => [optionLetter(k), 0]))]),
    );
    const file = `${split}.jsonl`;
    const partial = join(outDir, `${file}.partial`);
    // Lines are appended synchronously, in index order: a few KB each, far cheaper than an image.
    const jsonl = openSync(partial, 'w');
    const pool = new Pool(concurrency);
    let splitDone = 0;
    try {
      for (let index = 0; index < n; index++) {
        // Records are made here in index order, images on the pool (the slow part).
        const item = generateItem(split, index, options.seed, opts);
        taskCounts[item.record.task] += 1;
        letterCounts[item.record.task][item.record.answer] += 1;
        writeSync(jsonl, `${JSON.stringify(item.record)}\n`);
        await pool.add(async () => {
          await writeFile(join(outDir, item.record.images[0]), await item.render());
          done++;
          splitDone++;
          options.onProgress?.({ split, done, total, splitDone, splitTotal: n });
        });
      }
      await pool.drain();
    } finally {
      closeSync(jsonl);
    }
    await rename(partial, join(outDir, file));
    info.tasks[split] = taskCounts;
    info.answers[split] = letterCounts;
    info.files[split] = file;
  }
  await writeFile(join(outDir, 'dataset.json'), `${JSON.stringify(info, null, 2)}\n`);
  return info;
}
