// pass@k, majority vote and the multi-sample run score (docs/evaluation.md, "Several samples per
// item"): the estimator against a direct computation, the documented tie-breaking, and scoreRun.
import {
  majorityVote,
  matchedOptions,
  passAtK,
  passKs,
  quantile,
  scoreRun,
  voteKey,
  type ScoredResponse,
} from '../../src/benchmarks/scoring';

/** C(n, k) exactly. */
function binomial(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n;
  let result = 1n;
  for (let i = 0; i < k; i++) result = (result * BigInt(n - i)) / BigInt(i + 1);
  return result;
}

/** The definition by enumeration: the share of k-subsets of the n responses holding a correct one. */
function passAtKByEnumeration(n: number, c: number, k: number): number {
  let hit = 0;
  let all = 0;
  for (let mask = 0; mask < 1 << n; mask++) {
    let bits = 0;
    for (let i = 0; i < n; i++) if (mask & (1 << i)) bits++;
    if (bits !== k) continue;
    all++;
    // Responses 0 .. c-1 are the correct ones.
    if (mask & ((1 << c) - 1)) hit++;
  }
  return hit / all;
}

describe('pass@k (Chen et al. 2021)', () => {
  test('equals 1 - C(n-c, k)/C(n, k) and the subset enumeration on every small case', () => {
    for (let n = 1; n <= 10; n++) {
      for (let c = 0; c <= n; c++) {
        for (let k = 1; k <= n; k++) {
          const direct = 1 - Number(binomial(n - c, k)) / Number(binomial(n, k));
          expect(passAtK(n, c, k)).toBeCloseTo(direct, 12);
          expect(passAtK(n, c, k)).toBeCloseTo(passAtKByEnumeration(n, c, k), 12);
        }
      }
    }
  });

  test('worked values: pass@1 is c/n; no correct response is 0; n - c < k is 1', () => {
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 15);
    expect(passAtK(4, 1, 2)).toBeCloseTo(0.5, 15); // 3 of the 6 pairs hold the correct one
    expect(passAtK(5, 0, 5)).toBe(0);
    expect(passAtK(5, 4, 2)).toBe(1);
  });

  test('stays finite where the binomials overflow doubles', () => {
    // C(2000, 1000) is about 2e600: the ratio form would be Infinity/Infinity.
    expect(binomial(2000, 1000).toString().length).toBeGreaterThan(308);
    const value = passAtK(2000, 3, 1000);
    const exact = 1 - Number((binomial(1997, 1000) * 10n ** 15n) / binomial(2000, 1000)) / 1e15;
    expect(Number.isFinite(value)).toBe(true);
    expect(value).toBeCloseTo(exact, 12);
  });

  test('refuses impossible counts', () => {
    expect(() => passAtK(4, 5, 1)).toThrow(/0 <= c <= n/);
    expect(() => passAtK(4, 1, 5)).toThrow(/1 <= k <= n/);
    expect(() => passAtK(4, 1, 0)).toThrow();
    expect(() => passAtK(2.5, 1, 1)).toThrow();
  });

  test('k runs over powers of two up to n, and n', () => {
    expect(passKs(1)).toEqual([1]);
    expect(passKs(4)).toEqual([1, 2, 4]);
    expect(passKs(6)).toEqual([1, 2, 4, 6]);
    expect(passKs(16)).toEqual([1, 2, 4, 8, 16]);
  });
});

describe('majority vote', () => {
  const choices = ['red', 'blue', 'green'];

  test('an option is one vote whatever its spelling; other text votes as itself; nothing extracted abstains', () => {
    expect(voteKey('B', choices)).toBe('option:B');
    expect(voteKey('(b)', choices)).toBe('option:B');
    expect(voteKey('blue', choices)).toBe('option:B');
    expect(voteKey('  purple ', choices)).toBe('text:purple');
    expect(voteKey('A or B', choices)).toBe('text:A or B');
    expect(voteKey(null, choices)).toBeNull();
    expect(voteKey('   ', choices)).toBeNull();
    expect(matchedOptions('purple', choices)).toEqual([]);
    expect(matchedOptions('C', choices)).toEqual(['C']);
  });

  test('the most frequent answer wins', () => {
    const result = majorityVote([
      { key: 'option:A', correct: false },
      { key: 'option:B', correct: true },
      { key: 'option:B', correct: true },
      { key: null, correct: false },
      { key: null, correct: false },
      { key: null, correct: false },
    ]);
    expect(result).toEqual({ key: 'option:B', correct: true, count: 2 });
  });

  test('a tie goes to the answer that appeared first (lowest sample number)', () => {
    const votes = [
      { key: 'option:C', correct: false },
      { key: 'option:A', correct: true },
      { key: 'option:A', correct: true },
      { key: 'option:C', correct: false },
    ];
    expect(majorityVote(votes)).toEqual({ key: 'option:C', correct: false, count: 2 });
    expect(majorityVote([votes[1], votes[0], votes[3], votes[2]])).toEqual({ key: 'option:A', correct: true, count: 2 });
  });

  test('no votes at all is wrong', () => {
    expect(majorityVote([{ key: null, correct: false }])).toEqual({ key: null, correct: false, count: 0 });
    expect(majorityVote([])).toMatchObject({ correct: false });
  });
});

describe('scoreRun', () => {
  const response = (item: string, task: string, sample: number, correct: boolean, extra: Partial<ScoredResponse> = {}): ScoredResponse => ({
    item,
    task,
    source: 'spatial-synth',
    sample,
    correct,
    formatOk: true,
    vote: correct ? 'option:A' : 'option:B',
    offOption: false,
    reflection: false,
    completionTokens: 10,
    ...extra,
  });

  test('per task and in total: pass@k, majority accuracy, format rate and response statistics', () => {
    const rows = [
      // item a (Count): 1 of 4 correct; majority B (wrong).
      response('a', 'Count', 0, true, { completionTokens: 4, reflection: true }),
      response('a', 'Count', 1, false, { completionTokens: 8 }),
      response('a', 'Count', 2, false, { completionTokens: 12 }),
      response('a', 'Count', 3, false, { completionTokens: 16, formatOk: false }),
      // item b (Depth): 2 of 4 correct; majority A (2 votes against 1; sample 3 abstains).
      response('b', 'Depth', 3, false, { vote: null, offOption: true }),
      response('b', 'Depth', 0, true),
      response('b', 'Depth', 1, false),
      response('b', 'Depth', 2, true),
    ];
    const score = scoreRun(rows, 'spatial-synth', 4);
    expect(score).toMatchObject({ n: 2, samples: 4, responses: 8, accuracy: 3 / 8, format_rate: 7 / 8, majority_accuracy: 1 / 2 });
    expect(score.pass_at_k).toEqual({ '1': (1 / 4 + 2 / 4) / 2, '2': (passAtK(4, 1, 2) + passAtK(4, 2, 2)) / 2, '4': 1 });
    expect(score.byTask.Count).toMatchObject({ n: 1, accuracy: 1 / 4, majority_accuracy: 0, format_rate: 3 / 4, pass_at_k: { '1': 1 / 4, '2': 1 / 2, '4': 1 } });
    expect(score.byTask.Count.stats).toEqual({
      completion_tokens: { mean: 10, min: 4, p25: 7, p50: 10, p75: 13, p90: 14.8, max: 16 },
      reflection_rate: 1 / 4,
      off_option_rate: 0,
    });
    expect(score.byTask.Depth).toMatchObject({ n: 1, majority_accuracy: 1, stats: { off_option_rate: 1 / 4 } });
    expect(score.stats).toMatchObject({ reflection_rate: 1 / 8, off_option_rate: 1 / 8 });
    expect(score.official).toEqual({ name: 'accuracy', score: 3 / 8 });
  });

  test('one sample per item: pass@1 is the accuracy and the majority answer is the answer', () => {
    const rows = [response('a', 'Count', 0, true), response('b', 'Count', 0, false), response('c', 'Depth', 0, false, { vote: null })];
    const score = scoreRun(rows, 'spatial-synth', 1);
    expect(score).toMatchObject({ n: 3, responses: 3, accuracy: 1 / 3, majority_accuracy: 1 / 3, pass_at_k: { '1': 1 / 3 } });
  });

  test('unknown token counts give no length statistics; a missing or repeated sample is refused', () => {
    expect(scoreRun([response('a', 'Count', 0, true, { completionTokens: null })], 'spatial-synth', 1).stats.completion_tokens).toBeNull();
    expect(() => scoreRun([response('a', 'Count', 0, true)], 'spatial-synth', 2)).toThrow(/item a has 1 response/);
    expect(() => scoreRun([response('a', 'Count', 0, true), response('a', 'Count', 0, true)], 'spatial-synth', 2)).toThrow(/expected samples 0 to 1/);
  });

  test('quantiles interpolate linearly between order statistics', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([5], 0.9)).toBe(5);
    expect(quantile([0, 10], 0.9)).toBeCloseTo(9, 12);
  });
});
