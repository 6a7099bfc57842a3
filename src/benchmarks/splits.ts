// Which items an evaluation request means. spatial-synth reads DATA_DIR/spatial-synth/<split>.jsonl
// when the synth command has written it, and otherwise generates the split in memory (same seed,
// same items); the published benchmarks come from their loaders.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError } from '../engine/errors';
import { datasetItems } from './dataset';
import { loadBenchmark } from './loaders';
import type { EvaluateParams, SplitLoader } from './runs';
import { SPLITS, syntheticSplit } from './spatial_synth';
import { BenchmarkSplit } from './types';

/** The generated test split used when no spatial-synth folder exists (docs/spatial-synth.md). */
export const SYNTH_DEFAULTS = { seed: 1, test: 1000, val: 500 } as const;

export function splitLoader(dataDir: string): SplitLoader {
  return async (params: EvaluateParams): Promise<BenchmarkSplit> => {
    if (params.benchmark !== 'spatial-synth') {
      return loadBenchmark(params.benchmark, { dataDir, split: params.split, subsets: params.subsets, limit: params.limit });
    }
    const split = params.split ?? 'test';
    if (!(SPLITS as readonly string[]).includes(split)) {
      throw new EngineError('invalid_input', 'unknown_split', `spatial-synth has splits ${SPLITS.join(', ')}; got "${split}"`);
    }
    const dir = join(dataDir, 'spatial-synth');
    if (existsSync(join(dir, `${split}.jsonl`))) {
      return { benchmark: 'spatial-synth', split, items: datasetItems(dir, split, params.limit) };
    }
    if (split === 'train') {
      throw new EngineError('not_found', 'benchmark_data_missing', `no spatial-synth train split in ${dir}; write it with npm run synth -- --out ${dir}`);
    }
    // Item i is the same whatever the count, so a limit just takes a prefix of a longer split.
    const count = params.limit ?? SYNTH_DEFAULTS[split as 'test' | 'val'];
    return { benchmark: 'spatial-synth', split, items: syntheticSplit(split as 'test' | 'val', count, SYNTH_DEFAULTS.seed) };
  };
}
