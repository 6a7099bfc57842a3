// Sampling parameters as a request gives them: transformers' names and defaults (temperature 0 is
// greedy), their ranges, and the one place that checks them.
import { EngineError } from '../errors';

export interface SamplingParams {
  /** 0 = greedy (argmax). Otherwise logits are divided by it before softmax. Default 0. */
  temperature: number;
  /** Keep the k most likely tokens (ties at the k-th logit kept, as transformers does); 0 = off. Default 0. */
  topK: number;
  /** Keep the smallest most-likely set whose probability reaches topP (at least one token); 1 = off. Default 1. */
  topP: number;
  /** >1 discourages tokens already in the history, <1 encourages them; 1 = off. Default 1. */
  repetitionPenalty: number;
  /** Seed of the sampler's PRNG; the same seed gives the same draws. Default: random. */
  seed?: number;
}

export const DEFAULT_SAMPLING_PARAMS: Readonly<SamplingParams> = Object.freeze({
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
});

/** Largest accepted temperature (above it the distribution is uniform for all practical purposes). */
export const MAX_TEMPERATURE = 100;
/** Largest accepted seed: seeds are non-negative safe integers. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;
function invalid(code: string, message: string): EngineError {
  return new EngineError('invalid_input', code, message);
}

/** The error for a seed that is not an integer in [0, MAX_SEED]. */
export function invalidSeed(seed: unknown): EngineError {
  return invalid('invalid_seed', `seed must be an integer in [0, ${MAX_SEED}], got ${seed}`);
}

/** Throws EngineError('invalid_input', 'invalid_<field>', ...) naming the allowed range. */
export function validateSamplingParams(params: SamplingParams): void {
  const { temperature, topK, topP, repetitionPenalty, seed } = params;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0 || temperature > MAX_TEMPERATURE) {
    throw invalid('invalid_temperature', `temperature must be a number in [0, ${MAX_TEMPERATURE}] (0 = greedy), got ${temperature}`);
  }
  if (typeof topK !== 'number' || !Number.isSafeInteger(topK) || topK < 0) {
    throw invalid('invalid_top_k', `top_k must be an integer >= 0 (0 = off), got ${topK}`);
  }
  if (typeof topP !== 'number' || !Number.isFinite(topP) || topP <= 0 || topP > 1) {
    throw invalid('invalid_top_p', `top_p must be a number in (0, 1] (1 = off), got ${topP}`);
  }
  if (typeof repetitionPenalty !== 'number' || !Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
    throw invalid('invalid_repetition_penalty', `repetition_penalty must be a finite number > 0 (1 = off), got ${repetitionPenalty}`);
  }
  if (seed !== undefined && (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0)) {
    throw invalidSeed(seed);
  }
}

/** Fills in the defaults, then validates. */
export function resolveSamplingParams(params: Partial<SamplingParams> = {}): SamplingParams {
  const resolved: SamplingParams = { ...DEFAULT_SAMPLING_PARAMS };
  for (const key of ['temperature', 'topK', 'topP', 'repetitionPenalty', 'seed'] as const) {
    if (params[key] !== undefined) resolved[key] = params[key];
  }
  validateSamplingParams(resolved);
  return resolved;
}
