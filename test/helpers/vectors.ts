// Loading of the shared JSON vectors (test/vectors/), written by `python -m trainer.vectors`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const REPO_ROOT = join(__dirname, '..', '..');
export const TINY_MODEL_DIR = join(REPO_ROOT, 'models', 'tiny-random');

export function loadVectors<T>(name: string): T {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'test', 'vectors', name), 'utf8')) as T;
}

export interface TinyLogitsVectors {
  tokenizer_size: number;
  prompts: string[];
  input_ids: number[][];
  attention_mask: number[][];
  pixel_values: number[][];
  image_grid_thw: number[][];
  position_ids: number[][][];
  rope_deltas: number[];
  prefill_last_logits: number[][];
  forced_tokens: number[][];
  decode_logits: number[][][];
  greedy_tokens: number[][];
  greedy_tokens_in_vocab: number[][];
  image: string;
  greedy_cases: { image: string; prompt: string; greedy_tokens_in_vocab: number[] }[];
}

export interface ImageCase {
  name: string;
  png_base64: string;
  height: number;
  width: number;
  grid_thw: number[];
  pixel_values?: number[][];
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
