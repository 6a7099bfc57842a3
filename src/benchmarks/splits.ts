// Which items an evaluation request means. spatial-synth reads DATA_DIR/spatial-synth/<split>.jsonl
// when the synth command has written it at the level asked for, and otherwise generates the split
// in memory (same seed and level, same items); the published benchmarks come from their loaders.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { invalidInput, notFound } from '../errors';
import { datasetItems } from './dataset';
import { loadBenchmark } from './loaders';
import type { SplitLoader, SplitSelection } from './runs';
import { LEVEL_NAMES, LevelName, SPLITS, syntheticSplit } from './spatial_synth';
import { BenchmarkSplit } from './types';

/** The generated test split used when no spatial-synth folder exists (docs/spatial-synth.md). */
export const SYNTH_DEFAULTS = { seed: 1, test: 1000, val: 500 } as const;

/** The level a spatial-synth folder was written at: its dataset.json's generator.level, standard when it names none. */
export function folderLevel(dir: string): string {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as { generator?: { level?: unknown } };
    return typeof info.generator?.level === 'string' ? info.generator.level : 'standard';
  } catch {
    // No dataset.json (files placed by hand, or a run still writing): written before levels existed.
    return 'standard';
  }
}

export function splitLoader(dataDir: string): SplitLoader {
  return async (params: SplitSelection): Promise<BenchmarkSplit> => {
    if (params.benchmark !== 'spatial-synth') {
      if (params.level !== undefined) {
        throw invalidInput('level_unsupported', `level applies to spatial-synth only, not to ${params.benchmark}`);
      }
      return loadBenchmark(params.benchmark, { dataDir, split: params.split, subsets: params.subsets, limit: params.limit });
    }
    const split = params.split ?? 'test';
    if (!(SPLITS as readonly string[]).includes(split)) {
      throw invalidInput('unknown_split', `spatial-synth has splits ${SPLITS.join(', ')}; got "${split}"`);
    }
    const level: LevelName = params.level ?? 'standard';
    if (!(LEVEL_NAMES as readonly string[]).includes(level)) {
      throw invalidInput('unknown_level', `spatial-synth has levels ${LEVEL_NAMES.join(', ')}; got "${level}"`);
    }
    const dir = join(dataDir, 'spatial-synth');
    // A folder written at another level does not hold this level's items.
    if (existsSync(join(dir, `${split}.jsonl`)) && folderLevel(dir) === level) {
      return { benchmark: 'spatial-synth', split, items: datasetItems(dir, split, params.limit) };
    }
    if (split === 'train') {
      const flag = level === 'standard' ? '' : ` --level ${level}`;
      throw notFound('benchmark_data_missing', `no spatial-synth train split of level ${level} in ${dir}; write it with npm run synth -- --out ${dir}${flag}`);
    }
    // Item i is the same whatever the count, so a limit just takes a prefix of a longer split.
    // Nothing is cached here: each load generates the items again (a run keeps its own, runs.ts).
    const count = params.limit ?? SYNTH_DEFAULTS[split as 'test' | 'val'];
    return { benchmark: 'spatial-synth', split, items: syntheticSplit(split as 'test' | 'val', count, SYNTH_DEFAULTS.seed, { level }) };
  };
}
