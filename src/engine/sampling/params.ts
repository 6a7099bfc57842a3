// Sampling parameters: transformers' names and defaults (temperature 0 is greedy) and the bounds
// the request schemas check them against.

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

// The accepted ranges. Requests are checked against them once, where they come in (the request
// schemas, src/server/schemas.ts; the evaluate CLI); the engine and its workers trust what they get.
/** Largest accepted temperature (above it the distribution is uniform for all practical purposes). */
export const MAX_TEMPERATURE = 100;
/** Largest accepted top_k (0 = off); larger values keep the whole vocabulary anyway. */
export const MAX_TOP_K = 1_000_000;
/** Largest accepted repetition_penalty (it must be above 0; 1 = off). */
export const MAX_REPETITION_PENALTY = 10;
/** Largest accepted seed: seeds are non-negative safe integers. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** Fills in the defaults for the fields not given (no checks: the caller validated them). */
export function resolveSamplingParams(params: Partial<SamplingParams> = {}): SamplingParams {
  const resolved: SamplingParams = { ...DEFAULT_SAMPLING_PARAMS };
  for (const key of ['temperature', 'topK', 'topP', 'repetitionPenalty', 'seed'] as const) {
    if (params[key] !== undefined) resolved[key] = params[key];
  }
  return resolved;
}
