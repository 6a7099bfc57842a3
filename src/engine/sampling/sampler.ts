// Next-token selection from one row of logits, with transformers' semantics and order
// (generation/utils.py `_get_logits_processor`): RepetitionPenaltyLogitsProcessor, then
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, then a draw from the softmax.
// Temperature 0 is greedy decoding (argmax after the repetition penalty). `Sampler.next` reads in
// that order; the selection arithmetic is in selection.ts, the parameters in params.ts, the
// random numbers in prng.ts.
//
// Logit rows may be longer than the tokenizer (Qwen2-VL's 151,936 rows vs. its vocabulary): ids at
// or above `vocabLimit` are never read, hence never chosen (docs/qwen2-vl.md, "Tokens").
//
// No onnxruntime, no HTTP: pure apart from the seed drawn from node:crypto when none is given.
import { EngineError } from '../errors';
import { resolveSamplingParams, SamplingParams } from './params';
import { Prng, randomSeed } from './prng';
import {
  argmax,
  checkRow,
  HEAP_MAX_K,
  HISTOGRAM_MIN_CANDIDATES,
  kthLargest,
  NEGLIGIBLE_LOGIT,
  noUsableLogit,
  selectTopK,
  selectTopP,
  selectTopPByHistogram,
  weigh,
  weighWithHistogram,
  workspace,
} from './selection';

/**
 * transformers' RepetitionPenaltyLogitsProcessor on one row, into `out` (the caller's buffer is not
 * touched): `out[0, vocabLimit)` = the row, then for each distinct id in `history` below vocabLimit
 * the logit is multiplied by the penalty if negative, else divided by it. Each id is penalised once
 * however often it occurs (the processor gathers from the unpenalised scores). float32 arithmetic,
 * as torch does on float32 scores. Returns `out.subarray(0, vocabLimit)`.
 */
export function applyRepetitionPenalty(
  logits: Float32Array,
  offset: number,
  vocabLimit: number,
  history: ArrayLike<number>,
  penalty: number,
  out: Float32Array,
): Float32Array {
  checkRow(logits, offset, vocabLimit);
  if (out.length < vocabLimit) throw new EngineError('model_error', 'logits_shape', `penalty buffer holds ${out.length} values, needs ${vocabLimit}`);
  const row = out.subarray(0, vocabLimit);
  row.set(logits.subarray(offset, offset + vocabLimit));
  const p = Math.fround(penalty);
  for (let i = 0; i < history.length; i++) {
    const id = history[i];
    if (!(id >= 0 && id < vocabLimit) || !Number.isInteger(id)) continue;
    const score = logits[offset + id];
    row[id] = score < 0 ? score * p : score / p; // stored as float32, i.e. rounded like torch
  }
  return row;
}

/** The filtered distribution a sampler draws from (for tests, logprobs and debugging). */
export interface TokenDistribution {
  ids: Int32Array;
  /** Normalised probabilities, same order as ids. */
  probs: Float64Array;
}

/**
 * Picks next tokens for one sequence. Create one per sequence: it owns the sequence's PRNG.
 * The caller's logits buffer is never modified.
 *
 * Between the steps, the candidates live in the shared workspace: their ids in
 * `workspace.ids[0, n)` and their values in `workspace.values[0, n)` (scaled logits minus the
 * scaled max after the temperature step, unnormalised probabilities after the top-p step, whose
 * sum is then `workspace.total`).
 */
export class Sampler {
  readonly params: Readonly<SamplingParams>;
  /** The seed in use (drawn from crypto when params.seed is absent), to reproduce a run. */
  readonly seed: number;
  private readonly prng: Prng;

  /** `params` are trusted (checked where the request came in); absent fields take the defaults. */
  constructor(params: Partial<SamplingParams> = {}) {
    const resolved = resolveSamplingParams(params);
    this.seed = resolved.seed ?? randomSeed();
    this.params = Object.freeze({ ...resolved, seed: this.seed });
    this.prng = new Prng(this.seed);
  }

  get greedy(): boolean {
    return this.params.temperature === 0;
  }

  /**
   * Next token id from `logits[offset, offset + vocabLimit)`; ids >= vocabLimit are never chosen.
   * `history`: the sequence's ids so far (prompt + generated), for the repetition penalty.
   * Greedy draws nothing from the PRNG.
   */
  next(logits: Float32Array, offset: number, vocabLimit: number, history: ArrayLike<number>): number {
    const row = this.repetitionPenalty(logits, offset, vocabLimit, history);
    if (this.greedy) return argmax(row);
    return this.draw(this.candidates(row));
  }

  /** The distribution `next` would draw from (greedy: the argmax with probability 1). */
  distribution(logits: Float32Array, offset: number, vocabLimit: number, history: ArrayLike<number>): TokenDistribution {
    const row = this.repetitionPenalty(logits, offset, vocabLimit, history);
    if (this.greedy) return { ids: Int32Array.of(argmax(row)), probs: Float64Array.of(1) };
    const n = this.candidates(row);
    const ids = workspace.ids.slice(0, n);
    const probs = workspace.values.slice(0, n);
    const total = workspace.total;
    for (let j = 0; j < n; j++) probs[j] /= total;
    return { ids, probs };
  }

  /** Temperature, top-k, top-p: the kept candidates (their count; the workspace holds them). */
  private candidates(row: Float32Array): number {
    return this.topP(this.topK(this.temperature(row)));
  }

  /** 1. RepetitionPenaltyLogitsProcessor: the row itself when the penalty is off, else a penalised copy. */
  private repetitionPenalty(logits: Float32Array, offset: number, vocabLimit: number, history: ArrayLike<number>): Float32Array {
    checkRow(logits, offset, vocabLimit);
    if (this.params.repetitionPenalty === 1) return logits.subarray(offset, offset + vocabLimit);
    workspace.ensure(vocabLimit);
    return applyRepetitionPenalty(logits, offset, vocabLimit, history, this.params.repetitionPenalty, workspace.row);
  }

  /**
   * 2. TemperatureLogitsWarper: collects the candidates, tokens whose probability relative to the
   * best token is at least e^-NEGLIGIBLE_LOGIT, with their scaled logits minus the scaled max, in
   * [-NEGLIGIBLE_LOGIT, 0]: dividing by T > 0 keeps the order, so top-k selects on them exactly as
   * on transformers' scores. A small top-k is applied in the same pass: it raises the bar to the
   * k-th largest logit (ties kept, like transformers), so only about k candidates are collected.
   */
  private temperature(row: Float32Array): number {
    const { temperature, topK } = this.params;
    const size = row.length;
    workspace.ensure(size);
    const { ids, values } = workspace;
    let max = -Infinity;
    for (let i = 0; i < size; i++) {
      const x = row[i];
      if (x > max) max = x;
    }
    if (max === -Infinity) throw noUsableLogit(); // all -Infinity or NaN
    const invT = 1 / temperature;
    let n = 0;
    if (max === Infinity) {
      for (let i = 0; i < size; i++) {
        if (row[i] === Infinity) {
          ids[n] = i;
          values[n++] = 0;
        }
      }
      return n;
    }
    const kth = topK > 0 && topK <= HEAP_MAX_K ? kthLargest(row, topK) : -Infinity;
    const threshold = Math.max(kth, max - NEGLIGIBLE_LOGIT * temperature);
    for (let i = 0; i < size; i++) {
      const x = row[i];
      if (x >= threshold) {
        ids[n] = i;
        values[n++] = (x - max) * invT;
      }
    }
    return n;
  }

  /** 3. TopKLogitsWarper for a large k (a small one was applied while collecting the candidates). */
  private topK(n: number): number {
    const { topK } = this.params;
    return topK > HEAP_MAX_K ? selectTopK(workspace.values, workspace.ids, n, topK) : n;
  }

  /**
   * 4. TopPLogitsWarper: turns the candidates' values into unnormalised probabilities, keeps the
   * smallest most probable set whose mass reaches topP, and leaves its mass in workspace.total.
   */
  private topP(n: number): number {
    const { topP } = this.params;
    if (topP >= 1) {
      workspace.total = weigh(n);
      return n;
    }
    if (n < HISTOGRAM_MIN_CANDIDATES) {
      weigh(n);
      n = selectTopP(workspace.values, workspace.ids, n, topP);
    } else {
      n = selectTopPByHistogram(n, topP, weighWithHistogram(n));
    }
    const values = workspace.values;
    let total = 0;
    for (let j = 0; j < n; j++) total += values[j];
    workspace.total = total;
    return n;
  }

  /** 5. The draw: a token with probability proportional to its weight, from the PRNG. */
  private draw(n: number): number {
    const { ids, values, total } = workspace;
    let r = this.prng.nextFloat() * total;
    let last = 0;
    for (let j = 0; j < n; j++) {
      const w = values[j];
      if (w <= 0) continue;
      last = j;
      r -= w;
      if (r < 0) return ids[j];
    }
    return ids[last]; // r ended a rounding error short of the total
  }
}
