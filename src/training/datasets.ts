// The data set a training job names, and the spatial-synth splits the service makes itself.
//
// `spatial-synth` needs no preparation by hand (docs/training.md, "Data sets"): a job uses
// DATA_DIR/spatial-synth when `npm run synth` wrote the split there (at the level asked for), and
// otherwise STATE_DIR/datasets/spatial-synth-<level>, where the job manager generates a missing
// split while the job is `preparing` and every later job reuses it. STATE_DIR, not DATA_DIR: the
// service always writes STATE_DIR (DATA_DIR may be a read-only volume, k8s/pvc.yaml), and
// Kubernetes trainer pods mount STATE_DIR at the same path, so the generated folder reaches them.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { folderLevel } from '../benchmarks/splits';
import { DatasetInfo, LEVEL_NAMES, LevelName, SPLITS, SplitName, SynthProgress, writeDataset } from '../benchmarks/spatial_synth';
import { invalidInput } from '../errors';
import { NAMED_DATASETS, resolveDataset } from './paths';

/** The generated splits: seed 1 and `npm run synth`'s default sizes, so they are the first items of the documented data set. */
export const SYNTH_TRAINING = { seed: 1, items: { train: 20_000, val: 500, test: 1000 } as Readonly<Record<SplitName, number>> } as const;

/** Where the service generates spatial-synth splits of a level. */
export function generatedSynthDir(stateDir: string, level: LevelName): string {
  return join(stateDir, 'datasets', `spatial-synth-${level}`);
}

export interface DatasetChoice {
  /** The folder job.json names. */
  dir: string;
  /** spatial-synth: the level of its items. */
  level?: LevelName;
  /** spatial-synth: the split is missing from `dir` and is generated while the job is preparing. */
  generate?: boolean;
}

const isLevel = (value: string): value is LevelName => (LEVEL_NAMES as readonly string[]).includes(value);

/**
 * The folder of `dataset` (paths.ts for everything but spatial-synth). For spatial-synth:
 * DATA_DIR/spatial-synth when it holds the split at the level asked for (any level when none is
 * asked for), else the generated folder, which may not hold the split yet (`generate`).
 */
export function chooseDataset(value: string, options: { dataDir: string; stateDir: string; split: string; level?: LevelName }): DatasetChoice {
  const { dataDir, stateDir, split, level } = options;
  if (value !== 'spatial-synth') {
    if (level !== undefined) throw invalidInput('level_unsupported', `level applies to spatial-synth only, not to dataset "${value}"`);
    return { dir: resolveDataset(value, dataDir, split) };
  }
  const placed = join(dataDir, NAMED_DATASETS['spatial-synth'].folder);
  if (existsSync(join(placed, `${split}.jsonl`))) {
    const placedLevel = folderLevel(placed);
    if (level === undefined || placedLevel === level) return { dir: placed, ...(isLevel(placedLevel) ? { level: placedLevel } : {}) };
  }
  if (!(SPLITS as readonly string[]).includes(split)) {
    throw invalidInput('unknown_split', `spatial-synth has splits ${SPLITS.join(', ')}; got "${split}" (and ${placed} has no ${split}.jsonl)`);
  }
  const chosen = level ?? 'standard';
  const dir = generatedSynthDir(stateDir, chosen);
  return { dir, level: chosen, generate: !existsSync(join(dir, `${split}.jsonl`)) };
}

export interface GenerateOptions {
  items: number;
  seed?: number;
  /** Images rendered at once (writeDataset's default when omitted). */
  concurrency?: number;
  onProgress?: (progress: SynthProgress) => void;
  signal?: AbortSignal;
}

/**
 * Write spatial-synth's `split` at `level` into `dir`: generated in `dir/.partial-<split>/`, then
 * its images and, last, `<split>.jsonl` moved in (the JSONL's presence means the split is
 * complete); dataset.json lists every split the folder holds. Stopped by `signal`, it leaves nothing.
 */
export async function generateSynthSplit(dir: string, split: SplitName, level: LevelName, options: GenerateOptions): Promise<DatasetInfo> {
  const partial = join(dir, `.partial-${split}`);
  const stopped = () => new Error('stopped: the service is shutting down');
  if (options.signal?.aborted) throw stopped();
  rmSync(partial, { recursive: true, force: true });
  try {
    const info = await writeDataset(partial, {
      [split]: options.items,
      seed: options.seed ?? SYNTH_TRAINING.seed,
      level,
      concurrency: options.concurrency,
      onProgress: (progress) => {
        // A throw here stops writeDataset's pool: the way to interrupt it from outside.
        if (options.signal?.aborted) throw stopped();
        options.onProgress?.(progress);
      },
    });
    if (options.signal?.aborted) throw stopped();
    mkdirSync(join(dir, 'images'), { recursive: true });
    rmSync(join(dir, 'images', split), { recursive: true, force: true });
    renameSync(join(partial, 'images', split), join(dir, 'images', split));
    renameSync(join(partial, `${split}.jsonl`), join(dir, `${split}.jsonl`));
    const merged = mergeInfo(readInfo(dir), info);
    writeFileSync(join(dir, 'dataset.json'), `${JSON.stringify(merged, null, 2)}\n`);
    return merged;
  } finally {
    try {
      rmSync(partial, { recursive: true, force: true });
    } catch {
      // An image write still settling raced the removal: the next generation clears it first.
    }
  }
}

function readInfo(dir: string): DatasetInfo | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as DatasetInfo;
  } catch {
    return null;
  }
}

/** dataset.json of a folder the splits were added to one at a time. */
function mergeInfo(before: DatasetInfo | null, added: DatasetInfo): DatasetInfo {
  const generator = { ...added.generator, command: 'POST /admin/train (the job manager, src/training/datasets.ts)' };
  if (!before) return { ...added, generator };
  return {
    ...added,
    counts: { ...before.counts, ...added.counts },
    tasks: { ...before.tasks, ...added.tasks },
    answers: { ...before.answers, ...added.answers },
    files: { ...before.files, ...added.files },
    generator,
  };
}
