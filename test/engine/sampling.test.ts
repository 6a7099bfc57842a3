// Next-token sampling: transformers' processors (repetition penalty, temperature, top-k, top-p) in
// its order, greedy decoding, the vocabulary limit, the seeded PRNG and the parameters' defaults
// (their bounds are checked where requests come in: test/server/schemas.test.ts).
import { DEFAULT_SAMPLING_PARAMS, resolveSamplingParams } from '../../src/engine/sampling/params';
import { Prng } from '../../src/engine/sampling/prng';
import { applyRepetitionPenalty, Sampler } from '../../src/engine/sampling/sampler';
import { argmax, expNonPositive, kthLargest, selectTopK, selectTopP } from '../../src/engine/sampling/selection';
import { expectEngineError } from '../helpers/errors';


const softmax = (xs: number[]): number[] => {
  const max = Math.max(...xs);
  const exps = xs.map((x) => Math.exp(x - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
};

/** Draw `draws` tokens and return the frequency of each id in [0, size). */
function frequencies(sampler: Sampler, row: Float32Array, vocabLimit: number, draws: number, history: number[] = []): number[] {
  const counts = new Array<number>(row.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.next(row, 0, vocabLimit, history)]++;
  return counts.map((c) => c / draws);
}

// Computed with transformers 5.17 (torch float32) from these logits (ids 0..9 only; the ids beyond
// the vocabulary limit hold larger logits on purpose) and history [3, 1, 3, 7, 0, 7, 7]:
// RepetitionPenaltyLogitsProcessor(1.3) / (0.7), and the softmax after penalty 1.3, temperature 0.8,
// top-k 6, top-p 0.85.
const TORCH_LOGITS = [
  0.0020000000949949026, 0.597000002861023, -0.5479999780654907, -1.781000018119812, -0.9089999794960022, -1.9830000400543213,
  0.11999999731779099, 2.680000066757202, -0.984000027179718, -1.2410000562667847,
];
const TORCH_HISTORY = [3, 1, 3, 7, 0, 7, 7];
const TORCH_PENALTY_1_3 = [
  0.0015384616563096642, 0.45923078060150146, -0.5479999780654907, -2.3152999877929688, -0.9089999794960022, -1.9830000400543213,
  0.11999999731779099, 2.0615386962890625, -0.984000027179718, -1.2410000562667847,
];
const TORCH_PENALTY_0_7 = [
  0.002857143059372902, 0.8528571724891663, -0.5479999780654907, -1.2467000484466553, -0.9089999794960022, -1.9830000400543213,
  0.11999999731779099, 3.8285715579986572, -0.984000027179718, -1.2410000562667847,
];
const TORCH_PROBS = [0, 0.11031681299209595, 0, 0, 0, 0, 0.07219118624925613, 0.8174920678138733, 0, 0];
/** The 10-token row followed by two ids beyond the vocabulary limit with the largest logits. */
const torchRow = (): Float32Array => Float32Array.from([...TORCH_LOGITS, 5, 9]);

describe('parameters', () => {
  test('defaults are greedy with every filter off', () => {
    expect(DEFAULT_SAMPLING_PARAMS).toEqual({ temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 });
    expect(resolveSamplingParams()).toEqual(DEFAULT_SAMPLING_PARAMS);
    expect(resolveSamplingParams({ temperature: 1, seed: 5 })).toEqual({ ...DEFAULT_SAMPLING_PARAMS, temperature: 1, seed: 5 });
  });

});

describe('PRNG', () => {
  const draw = (seed: number, n = 16): number[] => {
    const prng = new Prng(seed);
    return Array.from({ length: n }, () => prng.nextUint32());
  };

  test('the same seed gives the same stream; different seeds differ', () => {
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    // seeds that differ only above bit 32 differ too
    expect(draw(5)).not.toEqual(draw(5 + 2 ** 32));
  });

  test('the stream is fixed: xoshiro128** seeded by splitmix32 (values from an independent Python model)', () => {
    // Pinned: a change of the generator would silently change every seeded result.
    expect(draw(0, 4)).toEqual([3809008728, 1133695204, 53579671, 2891528803]);
    expect(draw(123456789, 4)).toEqual([4284103975, 1001954530, 2701803082, 2658065534]);
    expect(draw(Number.MAX_SAFE_INTEGER, 4)).toEqual([1764558986, 454499448, 3403771407, 2889321516]);
    expect(new Prng(42).nextFloat()).toBe(0.6606157208001621);
  });

  test('floats are uniform in [0, 1)', () => {
    const prng = new Prng(7);
    const bins = new Array<number>(10).fill(0);
    const n = 100000;
    let inRange = true;
    for (let i = 0; i < n; i++) {
      const x = prng.nextFloat();
      inRange &&= x >= 0 && x < 1;
      bins[Math.floor(x * 10)]++;
    }
    expect(inRange).toBe(true);
    for (const b of bins) expect(Math.abs(b / n - 0.1)).toBeLessThan(0.006);
  });
});

describe('greedy (temperature 0)', () => {
  test('argmax restricted to the vocabulary limit', () => {
    const row = Float32Array.from([0.1, 2, 0.5, -1, 50, 99]); // 50 and 99 lie beyond the limit
    const sampler = new Sampler();
    expect(sampler.next(row, 0, 4, [])).toBe(1);
    expect(sampler.next(row, 0, 5, [])).toBe(4);
  });

  test('ties go to the lowest id', () => {
    expect(new Sampler().next(Float32Array.from([1, 3, 0, 3, 3]), 0, 5, [])).toBe(1);
    expect(argmax([Number.NaN, -Infinity, 2, 2])).toBe(2);
  });

  test('reads the row at an offset of a batch buffer', () => {
    const batch = Float32Array.from([9, 0, 0, 0, /* row 1 */ 0, 0, 7, 0, /* row 2 */ 0, 8, 0, 0]);
    const sampler = new Sampler();
    expect(sampler.next(batch, 4, 4, [])).toBe(2);
    expect(sampler.next(batch, 8, 3, [])).toBe(1);
  });

  test('applies the repetition penalty first', () => {
    const row = Float32Array.from([2.0, 1.9, -3]);
    expect(new Sampler().next(row, 0, 3, [0])).toBe(0);
    expect(new Sampler({ repetitionPenalty: 1.2 }).next(row, 0, 3, [0])).toBe(1); // 2.0 / 1.2 < 1.9
  });

  test('a row with nothing usable is a model error', () => {
    expectEngineError(() => new Sampler().next(Float32Array.from([-Infinity, Number.NaN]), 0, 2, []), 'model_error', 'invalid_logits');
    expectEngineError(() => new Sampler({ temperature: 1 }).next(Float32Array.from([-Infinity, Number.NaN]), 0, 2, []), 'model_error', 'invalid_logits');
  });

  test('a row that does not fit the buffer is a model error', () => {
    expectEngineError(() => new Sampler().next(new Float32Array(4), 2, 3, []), 'model_error', 'logits_shape');
    expectEngineError(() => new Sampler().next(new Float32Array(4), 0, 0, []), 'model_error', 'logits_shape');
  });
});

describe('repetition penalty (transformers RepetitionPenaltyLogitsProcessor)', () => {
  test.each([
    [1.3, TORCH_PENALTY_1_3],
    [0.7, TORCH_PENALTY_0_7],
  ])('penalty %d matches torch exactly, once per distinct id', (penalty, expected) => {
    const row = torchRow();
    const before = Float32Array.from(row);
    const out = applyRepetitionPenalty(row, 0, 10, [...TORCH_HISTORY, 11, -1, 10], penalty, new Float32Array(16));
    expect(Array.from(out)).toEqual(expected);
    expect(row).toEqual(before); // the caller's buffer is untouched
  });

  test('hand-computed: negative logits are multiplied, others divided', () => {
    const row = Float32Array.from([4, -4, 0, 1]);
    const out = applyRepetitionPenalty(row, 0, 4, [0, 1, 2, 0, 0], 2, new Float32Array(4));
    expect(Array.from(out)).toEqual([2, -8, 0, 1]);
  });

  test('the sampler does not modify the caller\'s logits', () => {
    const row = torchRow();
    const before = Float32Array.from(row);
    const sampler = new Sampler({ temperature: 0.8, topK: 6, topP: 0.85, repetitionPenalty: 1.3, seed: 1 });
    for (let i = 0; i < 50; i++) sampler.next(row, 0, 10, TORCH_HISTORY);
    expect(row).toEqual(before);
  });
});

describe('sampling (temperature, top-k, top-p)', () => {
  test('penalty 1.3, temperature 0.8, top-k 6, top-p 0.85: the distribution transformers computes', () => {
    const sampler = new Sampler({ temperature: 0.8, topK: 6, topP: 0.85, repetitionPenalty: 1.3, seed: 3 });
    const { ids, probs } = sampler.distribution(torchRow(), 0, 10, TORCH_HISTORY);
    const dense = new Array<number>(10).fill(0);
    ids.forEach((id, j) => (dense[id] = probs[j]));
    dense.forEach((p, id) => expect(p).toBeCloseTo(TORCH_PROBS[id], 6));

    const freq = frequencies(sampler, torchRow(), 10, 20000, TORCH_HISTORY);
    freq.forEach((f, id) => (id < 10 && TORCH_PROBS[id] > 0 ? expect(Math.abs(f - TORCH_PROBS[id])).toBeLessThan(0.015) : expect(f).toBe(0)));
  });

  test('the same seed gives the same samples, a different seed different ones', () => {
    const row = Float32Array.from(Array.from({ length: 64 }, (_v, i) => Math.sin(i)));
    const run = (seed: number): number[] => {
      const sampler = new Sampler({ temperature: 1, seed });
      return Array.from({ length: 40 }, () => sampler.next(row, 0, 64, []));
    };
    expect(run(11)).toEqual(run(11));
    expect(run(11)).not.toEqual(run(12));
    const sampler = new Sampler({ temperature: 1 });
    expect(Number.isSafeInteger(sampler.seed)).toBe(true);
    expect(sampler.params.seed).toBe(sampler.seed);
  });

  test.each([0.5, 1, 2])('temperature %d: frequencies follow softmax(logits / T) over 20k draws', (temperature) => {
    const row = Float32Array.from([0, 1, 2, 30]); // id 3 lies beyond the limit
    const freq = frequencies(new Sampler({ temperature, seed: 100 }), row, 3, 20000);
    const expected = softmax([0, 1, 2].map((x) => x / temperature));
    expected.forEach((p, id) => expect(Math.abs(freq[id] - p)).toBeLessThan(0.015));
    expect(freq[3]).toBe(0);
  });

  test('top-k keeps the k largest logits only', () => {
    const row = Float32Array.from([0, 3, 1, 2.5, 40]);
    const freq = frequencies(new Sampler({ temperature: 1, topK: 2, seed: 5 }), row, 4, 20000);
    const expected = softmax([3, 2.5]);
    expect(freq[0]).toBe(0);
    expect(freq[2]).toBe(0);
    expect(freq[4]).toBe(0);
    expect(Math.abs(freq[1] - expected[0])).toBeLessThan(0.015);
    expect(Math.abs(freq[3] - expected[1])).toBeLessThan(0.015);
  });

  test('top-k keeps ties at the k-th logit, like transformers', () => {
    const { ids } = new Sampler({ temperature: 1, topK: 2, seed: 1 }).distribution(Float32Array.from([1, 5, 3, 3, 0]), 0, 5, []);
    expect(Array.from(ids).sort()).toEqual([1, 2, 3]);
  });

  test('top-p keeps the smallest set reaching p', () => {
    // softmax([0, 1, 2]) = [0.090, 0.245, 0.665]: p = 0.8 needs ids 2 and 1.
    const row = Float32Array.from([0, 1, 2]);
    const freq = frequencies(new Sampler({ temperature: 1, topP: 0.8, seed: 9 }), row, 3, 20000);
    const expected = softmax([1, 2]);
    expect(freq[0]).toBe(0);
    expect(Math.abs(freq[1] - expected[0])).toBeLessThan(0.015);
    expect(Math.abs(freq[2] - expected[1])).toBeLessThan(0.015);
    // p = 0.6 is reached by id 2 alone; p = 0.67 is not.
    expect(Array.from(new Sampler({ temperature: 1, topP: 0.6 }).distribution(row, 0, 3, []).ids)).toEqual([2]);
    expect(Array.from(new Sampler({ temperature: 1, topP: 0.67 }).distribution(row, 0, 3, []).ids).sort()).toEqual([1, 2]);
  });

  test('top-k 1 and a tiny top-p reduce to greedy, within the vocabulary limit', () => {
    const row = Float32Array.from(Array.from({ length: 300 }, (_v, i) => Math.cos(i * 0.37) * 3));
    row[250] = 100; // beyond the limit
    const limit = 200;
    const greedy = new Sampler().next(row, 0, limit, []);
    const topK = new Sampler({ temperature: 1.5, topK: 1, seed: 2 });
    const topP = new Sampler({ temperature: 1.5, topP: 1e-6, seed: 2 });
    for (let i = 0; i < 100; i++) {
      expect(topK.next(row, 0, limit, [])).toBe(greedy);
      expect(topP.next(row, 0, limit, [])).toBe(greedy);
    }
  });

  test('ids beyond the vocabulary limit are never drawn, even with the largest logits', () => {
    const row = new Float32Array(20);
    row.fill(1000, 10); // ids 10..19 dominate
    const sampler = new Sampler({ temperature: 2, seed: 4 });
    for (let i = 0; i < 2000; i++) expect(sampler.next(row, 0, 10, [])).toBeLessThan(10);
  });

  test('a realistic vocabulary: flat and peaked rows sample from the right set', () => {
    const vocab = 151936;
    const limit = 151646;
    const prng = new Prng(77);
    const row = new Float32Array(vocab);
    for (let i = 0; i < vocab; i++) row[i] = prng.nextFloat() * 2; // a nearly flat row (random weights)
    row.fill(50, limit);
    const sampler = new Sampler({ temperature: 1, topK: 50, topP: 0.9, repetitionPenalty: 1.1, seed: 8 });
    const history = Array.from({ length: 1000 }, (_v, i) => (i * 7919) % vocab);
    const { ids, probs } = sampler.distribution(row, 0, limit, history);
    expect(ids.length).toBeGreaterThanOrEqual(40);
    expect(ids.length).toBeLessThanOrEqual(50);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    for (let i = 0; i < 200; i++) expect(Array.from(ids)).toContain(sampler.next(row, 0, limit, history));
    const all = new Sampler({ temperature: 1, topP: 0.5, seed: 8 }).distribution(row, 0, limit, []);
    expect(all.ids.length).toBeGreaterThan(limit / 5);
    expect(all.ids.every((id) => id < limit)).toBe(true);
  });
});

describe('top-k on a large row (heap for small k, selection for large k)', () => {
  test.each([1, 50, 1024, 1500, 5000])('k = %d keeps exactly the ids whose logit is >= the k-th largest', (k) => {
    const size = 30000;
    const prng = new Prng(k);
    // Rounded values: many ties, also at the k-th value.
    const row = Float32Array.from({ length: size }, () => Math.round(prng.nextFloat() * 2000) / 100);
    const kth = Array.from(row).sort((a, b) => b - a)[k - 1];
    const expected = Array.from(row.keys()).filter((id) => row[id] >= kth);
    const { ids } = new Sampler({ temperature: 3, topK: k, seed: 1 }).distribution(row, 0, size, []);
    expect(Array.from(ids).sort((a, b) => a - b)).toEqual(expected);
  });

  test('kthLargest ignores NaN and reports -Infinity when fewer than k values', () => {
    const prng = new Prng(3);
    const values = Array.from({ length: 500 }, () => (prng.nextFloat() < 0.05 ? Number.NaN : Math.floor(prng.nextFloat() * 40)));
    const sorted = values.filter((x) => !Number.isNaN(x)).sort((a, b) => b - a);
    for (const k of [1, 2, 7, 100, sorted.length]) expect(kthLargest(values, k)).toBe(sorted[k - 1]);
    expect(kthLargest(values, sorted.length + 1)).toBe(-Infinity);
    expect(kthLargest([-Infinity, 1], 2)).toBe(-Infinity);
  });

  test('+Infinity logits take all the probability', () => {
    const row = Float32Array.from([1, Infinity, 3, Infinity, -Infinity]);
    const { ids, probs } = new Sampler({ temperature: 1, seed: 1 }).distribution(row, 0, 5, []);
    expect(Array.from(ids)).toEqual([1, 3]);
    expect(Array.from(probs)).toEqual([0.5, 0.5]);
  });
});

describe('top-p on large candidate sets (histogram path)', () => {
  test.each([
    ['flat', 0.9, (x: number) => x * 2],
    ['flat', 0.3, (x: number) => x * 2],
    ['peaked', 0.95, (x: number) => x * 30 - 20],
    ['peaked', 0.5, (x: number) => (x > 0.999 ? 8 : x * 12)],
    ['spiky', 0.8, (x: number) => (x > 0.9995 ? 15 : x * 2)],
  ] as const)('%s row, top-p %d: the kept set is the smallest top set reaching p', (_name, topP, shape) => {
    const size = 30000; // all candidates (within 40 of the max): well over the histogram threshold
    const prng = new Prng(31);
    const row = Float32Array.from({ length: size }, () => shape(prng.nextFloat()));
    const { ids, probs } = new Sampler({ temperature: 0.9, topP, seed: 1 }).distribution(row, 0, size, []);
    const full = softmax(Array.from(row, (x) => x / 0.9));
    const kept = new Set(ids);
    let keptMass = 0;
    let minKept = Infinity;
    let maxDropped = 0;
    full.forEach((p, id) => {
      if (kept.has(id)) {
        keptMass += p;
        minKept = Math.min(minKept, p);
      } else {
        maxDropped = Math.max(maxDropped, p);
      }
    });
    expect(minKept).toBeGreaterThanOrEqual(maxDropped * (1 - 1e-9)); // a top set
    expect(keptMass).toBeGreaterThanOrEqual(topP - 1e-9); // reaches p
    expect(keptMass - minKept).toBeLessThan(topP + 1e-9); // and is the smallest that does
    probs.forEach((p, j) => expect(p).toBeCloseTo(full[ids[j]] / keptMass, 9));
  });
});

describe('selection helpers', () => {
  test('expNonPositive matches Math.exp to 1e-8 relative', () => {
    let worst = 0;
    for (let x = 0; x >= -60; x -= 0.001237) worst = Math.max(worst, Math.abs(expNonPositive(x) / Math.exp(x) - 1));
    expect(worst).toBeLessThan(1e-8);
    expect(expNonPositive(0)).toBe(1);
    expect(expNonPositive(-Infinity)).toBe(0);
    expect(expNonPositive(-800)).toBe(0);
  });

  const shuffled = (values: number[]): { values: Float64Array; ids: Int32Array } => ({
    values: Float64Array.from(values),
    ids: Int32Array.from(values.map((_v, i) => i)),
  });

  test('selectTopK moves the k largest (and their ties) to the front', () => {
    const data = [5, 1, 9, 3, 9, 7, 2, 7, 0];
    const { values, ids } = shuffled(data);
    const m = selectTopK(values, ids, data.length, 3);
    expect(m).toBe(4); // 9, 9, 7, 7 (tie at the third)
    expect(Array.from(ids.subarray(0, m)).sort()).toEqual([2, 4, 5, 7]);
    expect(selectTopK(values, ids, data.length, 20)).toBe(data.length);
  });

  test('selectTopP keeps tokens while the mass before them is below p', () => {
    const weights = [0.1, 0.4, 0.2, 0.3];
    const run = (p: number): number[] => {
      const { values, ids } = shuffled(weights);
      return Array.from(ids.subarray(0, selectTopP(values, ids, weights.length, p))).sort();
    };
    expect(run(0.39)).toEqual([1]);
    expect(run(0.41)).toEqual([1, 3]);
    expect(run(0.7)).toEqual([1, 3]);
    expect(run(0.89)).toEqual([1, 2, 3]);
    expect(run(0.95)).toEqual([0, 1, 2, 3]);
    expect(run(1e-9)).toEqual([1]);
  });

  test('selectTopP on many equal weights takes just enough of them', () => {
    const n = 1000;
    const values = new Float64Array(n).fill(1);
    const ids = Int32Array.from({ length: n }, (_v, i) => i);
    expect(selectTopP(values, ids, n, 0.25)).toBe(250);
    expect(selectTopP(values, ids, n, 0.2505)).toBe(251);
  });
});
