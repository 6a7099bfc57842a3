// The arithmetic of picking tokens from a logits row without sorting the vocabulary: a
// platform-exact exp, argmax, the k-th largest logit (a size-k heap), top-k and top-p selection
// (three-way partitions; top-p over many candidates through a histogram of their mass), and the
// scratch buffers they share. `sampler.ts` puts them together in transformers' order.
//
// For a 151,936-token vocabulary: one pass finds the max, one pass collects the tokens whose
// probability is not negligible (scaled logit within NEGLIGIBLE_LOGIT of the max); a small top-k
// first finds the k-th largest logit with a size-k heap and raises that bar, a large one is a
// quickselect-style partition over the candidates; top-p first buckets the candidates' mass by
// scaled logit (a histogram) and only partitions the one bucket that holds the boundary. Nothing
// sorts the vocabulary. Probabilities use expNonPositive, a pure-arithmetic exp (relative error
// < 1e-8, identical on every platform, several times faster than Math.exp). Scratch buffers are
// shared by all samplers of a thread (`Sampler.next` is synchronous) and grow once to the
// vocabulary size.
import { EngineError } from '../errors';

/**
 * Tokens whose scaled logit is more than this below the max are dropped before top-k/top-p and the
 * draw: each has probability < e^-40 (4e-18) relative to the best token, under 1e-12 together
 * for a 151,936-token vocabulary.
 */
export const NEGLIGIBLE_LOGIT = 40;

// ---------------------------------------------------------------------------------------------
// exp for arguments in [-NEGLIGIBLE_LOGIT, 0] (and a little beyond): e^x = 2^k * e^t with
// k = round(x / ln 2), |t| <= ln(2) / 2, e^t by its degree-8 Taylor polynomial (truncation error
// about 2e-10, relative error < 1e-8 in all). Plain double arithmetic: the same bits on every
// platform, unlike Math.exp whose last bits may vary between engines.

const POW2_NEG = Float64Array.from({ length: 1075 }, (_v, k) => 2 ** -k);
const C2 = 1 / 2;
const C3 = 1 / 6;
const C4 = 1 / 24;
const C5 = 1 / 120;
const C6 = 1 / 720;
const C7 = 1 / 5040;
const C8 = 1 / 40320;

/** e^x for x <= 0 (0 below -744, Math.exp above 0); relative error < 1e-8. */
export function expNonPositive(x: number): number {
  if (!(x > -744)) return 0;
  if (x > 0) return Math.exp(x);
  const k = Math.floor(x * Math.LOG2E + 0.5) | 0; // round to nearest, in [-1073, 0]
  const t = x - k * Math.LN2;
  return (1 + t * (1 + t * (C2 + t * (C3 + t * (C4 + t * (C5 + t * (C6 + t * (C7 + t * C8)))))))) * POW2_NEG[-k];
}

/** Histogram resolution for top-p: buckets per unit of scaled logit below the max. */
const BUCKETS_PER_UNIT = 64;
const HISTOGRAM_BUCKETS = NEGLIGIBLE_LOGIT * BUCKETS_PER_UNIT + 1;
/** Below this many candidates top-p partitions them directly, without the histogram. */
export const HISTOGRAM_MIN_CANDIDATES = 2048;

// ---------------------------------------------------------------------------------------------
// Shared scratch space (one per thread: `Sampler.next` never yields, so samplers cannot interleave).

class Workspace {
  /** Penalised copy of a logits row. */
  row = new Float32Array(0);
  /** Candidate token ids. */
  ids = new Int32Array(0);
  /** Candidate logits, then their unnormalised probabilities. */
  values = new Float64Array(0);
  /** Histogram bucket of each candidate (top-p). */
  buckets = new Uint16Array(0);
  /** Candidates of the top-p boundary bucket, set aside while the others are compacted. */
  spillIds = new Int32Array(0);
  spillValues = new Float64Array(0);
  /** Probability mass per histogram bucket (top-p). */
  readonly mass = new Float64Array(HISTOGRAM_BUCKETS + 1);
  /** Min-heap of the k largest logits (top-k with a small k). */
  heap = new Float64Array(0);
  /** Sum of values[0, n) after Sampler.candidates. */
  total = 0;
  /** Result of partition3: [end of the greater block, end of the equal block]. */
  readonly bounds = new Int32Array(2);

  ensure(size: number): void {
    if (this.ids.length >= size) return;
    this.row = new Float32Array(size);
    this.ids = new Int32Array(size);
    this.values = new Float64Array(size);
    this.buckets = new Uint16Array(size);
    this.spillIds = new Int32Array(size);
    this.spillValues = new Float64Array(size);
  }
}

export const workspace = new Workspace();

/** values[j] = e^values[j] for the first n candidates (scaled logits minus the max); returns their sum. */
export function weigh(n: number): number {
  const values = workspace.values;
  let total = 0;
  for (let j = 0; j < n; j++) {
    const w = expNonPositive(values[j]);
    values[j] = w;
    total += w;
  }
  return total;
}

/** weigh, also filling the top-p histogram: buckets[j] and the mass of each bucket. */
export function weighWithHistogram(n: number): number {
  const { values, buckets, mass } = workspace;
  mass.fill(0);
  let total = 0;
  for (let j = 0; j < n; j++) {
    const scaled = values[j];
    const w = expNonPositive(scaled);
    const bucket = Math.min(HISTOGRAM_BUCKETS - 1, (-scaled * BUCKETS_PER_UNIT) | 0); // floor: -scaled >= 0
    values[j] = w;
    total += w;
    buckets[j] = bucket;
    mass[bucket] += w;
  }
  return total;
}

/** Largest top-k handled with a heap over the row; larger k select among the candidates. */
export const HEAP_MAX_K = 1024;

/**
 * The k-th largest value of `row` (NaN ignored; -Infinity when fewer than k values), with a
 * size-k min-heap: one pass, cheap when k is small, no candidate arrays.
 */
export function kthLargest(row: ArrayLike<number>, k: number): number {
  if (workspace.heap.length < k) workspace.heap = new Float64Array(k);
  const heap = workspace.heap;
  let size = 0;
  const length = row.length;
  let i = 0;
  for (; i < length && size < k; i++) {
    const x = row[i];
    if (x !== x) continue; // NaN
    // sift up
    let c = size++;
    while (c > 0) {
      const parent = (c - 1) >> 1;
      if (heap[parent] <= x) break;
      heap[c] = heap[parent];
      c = parent;
    }
    heap[c] = x;
  }
  if (size < k) return -Infinity;
  for (; i < length; i++) {
    const x = row[i];
    if (!(x > heap[0])) continue; // also skips NaN
    // replace the root, sift down
    let c = 0;
    for (;;) {
      const left = 2 * c + 1;
      if (left >= k) break;
      const right = left + 1;
      const child = right < k && heap[right] < heap[left] ? right : left;
      if (heap[child] >= x) break;
      heap[c] = heap[child];
      c = child;
    }
    heap[c] = x;
  }
  return heap[0];
}

export function checkRow(logits: Float32Array, offset: number, vocabLimit: number): void {
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(vocabLimit) || vocabLimit < 1 || offset + vocabLimit > logits.length) {
    throw new EngineError('model_error', 'logits_shape', `logits row [${offset}, ${offset + vocabLimit}) does not fit a buffer of ${logits.length}`);
  }
}

export function noUsableLogit(): EngineError {
  return new EngineError('model_error', 'invalid_logits', 'the logits row has no value above -Infinity (all masked or NaN)');
}

/**
 * Index of the largest value, ties to the lowest index (torch.argmax). NaN and -Infinity never win;
 * a row with nothing else is a model error.
 */
export function argmax(row: ArrayLike<number>, length = row.length): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const x = row[i];
    if (x > bestValue) {
      best = i;
      bestValue = x;
    }
  }
  if (best < 0) throw noUsableLogit();
  return best;
}

function median3(a: number, b: number, c: number): number {
  if (a < b) return b < c ? b : a < c ? c : a;
  return a < c ? a : b < c ? c : b;
}

/**
 * Three-way partition of [lo, hi) of the parallel arrays by `pivot`, descending:
 * [lo, bounds[0]) > pivot, [bounds[0], bounds[1]) == pivot, [bounds[1], hi) < pivot.
 */
function partition3(values: Float64Array, ids: Int32Array, lo: number, hi: number, pivot: number, bounds: Int32Array): void {
  let lt = lo;
  let i = lo;
  let gt = hi;
  while (i < gt) {
    const v = values[i];
    if (v > pivot) {
      swap(values, ids, lt++, i++);
    } else if (v < pivot) {
      swap(values, ids, i, --gt);
    } else {
      i++;
    }
  }
  bounds[0] = lt;
  bounds[1] = gt;
}

function swap(values: Float64Array, ids: Int32Array, a: number, b: number): void {
  const v = values[a];
  values[a] = values[b];
  values[b] = v;
  const id = ids[a];
  ids[a] = ids[b];
  ids[b] = id;
}

/**
 * TopKLogitsWarper over the first n candidates: moves every candidate whose value is >= the k-th
 * largest value to the front and returns their count (>= k when values tie at the k-th, as
 * transformers keeps `scores >= topk(scores, k)[-1]`).
 */
export function selectTopK(values: Float64Array, ids: Int32Array, n: number, k: number, bounds = workspace.bounds): number {
  if (k >= n) return n;
  let lo = 0;
  let hi = n;
  let need = k; // how many of the largest in [lo, hi) are still wanted
  for (;;) {
    const pivot = median3(values[lo], values[(lo + hi) >>> 1], values[hi - 1]);
    partition3(values, ids, lo, hi, pivot, bounds);
    const greater = bounds[0];
    const equalEnd = bounds[1];
    if (need <= greater - lo) {
      hi = greater;
    } else if (need <= equalEnd - lo) {
      return equalEnd; // the k-th largest value is the pivot: keep all its ties
    } else {
      need -= equalEnd - lo;
      lo = equalEnd;
    }
  }
}

/**
 * TopPLogitsWarper over the first n candidates, given their unnormalised probabilities: moves the
 * smallest most-probable set whose mass reaches topP of the total to the front and returns its size
 * (>= 1). transformers removes a token when the ascending cumulative probability up to it is
 * <= 1 - top_p, i.e. keeps it while the mass of the strictly more probable tokens is < top_p.
 * Ties at the boundary are broken by position, as torch.sort breaks them arbitrarily.
 */
export function selectTopP(weights: Float64Array, ids: Int32Array, n: number, topP: number, bounds = workspace.bounds): number {
  if (n <= 1 || topP >= 1) return n;
  let total = 0;
  for (let j = 0; j < n; j++) total += weights[j];
  return selectByMass(weights, ids, 0, n, 0, topP * total, bounds);
}

/**
 * Within [lo, hi), moves the most probable tokens to the front until `before` plus their mass
 * reaches `target`; returns the end of the kept block (> lo when lo < hi). Tokens before lo are
 * kept already and weigh `before`.
 */
function selectByMass(weights: Float64Array, ids: Int32Array, lo: number, hi: number, before: number, target: number, bounds: Int32Array): number {
  const start = lo;
  while (lo < hi) {
    const pivot = median3(weights[lo], weights[(lo + hi) >>> 1], weights[hi - 1]);
    partition3(weights, ids, lo, hi, pivot, bounds);
    const greater = bounds[0];
    const equalEnd = bounds[1];
    let greaterMass = 0;
    for (let j = lo; j < greater; j++) greaterMass += weights[j];
    if (greater > lo && before + greaterMass >= target) {
      hi = greater; // the boundary is among the greater ones
      continue;
    }
    before += greaterMass;
    // Tokens equal to the pivot, one by one (in bulk: ties can be numerous on flat rows).
    const count = equalEnd - greater;
    let take = pivot > 0 ? Math.min(count + 1, Math.max(1, Math.ceil((target - before) / pivot))) : count + 1;
    while (take > 1 && before + (take - 1) * pivot >= target) take--;
    while (take <= count && before + take * pivot < target) take++;
    if (take <= count) return greater + take;
    before += count * pivot;
    lo = equalEnd;
  }
  return Math.max(start + 1, lo); // rounding left the target just out of reach: keep everything examined
}

/**
 * Top-p for many candidates whose weights are `expNonPositive(-distance)`, with `buckets[j]` =
 * floor(distance * BUCKETS_PER_UNIT) already filled and `mass` holding each bucket's total: whole
 * buckets above the boundary are kept, buckets below dropped, and only the boundary bucket is
 * partitioned. Same result as selectTopP (up to the order of equal-mass ties and rounding).
 */
export function selectTopPByHistogram(n: number, topP: number, total: number): number {
  const { values, ids, buckets, mass, bounds, spillIds, spillValues } = workspace;
  const target = topP * total;
  let before = 0;
  let boundary = 0;
  while (boundary < HISTOGRAM_BUCKETS && before + mass[boundary] < target) before += mass[boundary++];
  if (boundary >= HISTOGRAM_BUCKETS) return n; // rounding: the buckets never reached the target
  // Compact the buckets above the boundary to the front, then append the boundary bucket.
  let kept = 0;
  let spilled = 0;
  for (let j = 0; j < n; j++) {
    const bucket = buckets[j];
    if (bucket < boundary) {
      ids[kept] = ids[j];
      values[kept++] = values[j];
    } else if (bucket === boundary) {
      spillIds[spilled] = ids[j];
      spillValues[spilled++] = values[j];
    }
  }
  ids.set(spillIds.subarray(0, spilled), kept);
  values.set(spillValues.subarray(0, spilled), kept);
  return selectByMass(values, ids, kept, kept + spilled, before, target, bounds);
}
