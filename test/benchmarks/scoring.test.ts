// Evaluation scoring agrees with trainer/scoring.py: every case of test/vectors/scoring.json, plus a
// few hand-written cases where a naive JavaScript translation would disagree with Python.
import {
  extractAnswer,
  extractR1,
  extractStrict,
  EXTRACTION_STRATEGIES,
  isCorrect,
  letterTokens,
  normalizeGoldLetter,
  passesFormat,
  scorePredictions,
  type EvalScore,
  type ExtractionStrategy,
  type Prediction,
  type ScoreSummary,
} from '../../src/benchmarks/scoring';
import type { BenchmarkName } from '../../src/benchmarks/types';
import { loadVectors } from '../helpers/vectors';

type PerStrategy<T> = Record<ExtractionStrategy, T>;

interface MatchCase {
  name: string;
  response: string;
  gold: string;
  choices: string[];
  prompt_opens_think: boolean;
  passes_format: boolean;
  extracted: PerStrategy<string | null>;
  correct: PerStrategy<boolean>;
  correct_case_insensitive_text: PerStrategy<boolean>;
}

interface PyPrediction {
  task: string;
  source: string;
  correct: boolean;
  format_ok: boolean;
}

interface PyScore {
  n: number;
  accuracy: number;
  format_rate: number;
  by_task: Record<string, { n: number; accuracy: number }>;
  official: { name: string; score: number | null; detail?: string };
}

interface AggregationCase {
  name: string;
  benchmark: BenchmarkName;
  predictions: PyPrediction[];
  expected: PyScore;
}

const v = loadVectors<{ strategies: string[]; cases: MatchCase[]; aggregation: AggregationCase[] }>('scoring.json');

const toPrediction = (p: PyPrediction): Prediction => ({ task: p.task, source: p.source, correct: p.correct, formatOk: p.format_ok });
const toSummary = (s: PyScore): ScoreSummary => ({ n: s.n, accuracy: s.accuracy, formatRate: s.format_rate, byTask: s.by_task, official: s.official });

describe('scoring vectors (trainer/scoring.py)', () => {
  test('the strategies are the same', () => {
    expect([...EXTRACTION_STRATEGIES]).toEqual(v.strategies);
  });

  test.each(v.cases.map((c) => [c.name, c] as const))('match %s', (_name, c) => {
    expect(passesFormat(c.response, c.prompt_opens_think)).toBe(c.passes_format);
    for (const strategy of EXTRACTION_STRATEGIES) {
      const extracted = extractAnswer(c.response, strategy, c.prompt_opens_think);
      expect({ strategy, extracted }).toEqual({ strategy, extracted: c.extracted[strategy] });
      expect({ strategy, correct: isCorrect(extracted, c.gold, c.choices) }).toEqual({ strategy, correct: c.correct[strategy] });
      expect({ strategy, correct: isCorrect(extracted, c.gold, c.choices, true) }).toEqual({
        strategy,
        correct: c.correct_case_insensitive_text[strategy],
      });
    }
  });

  test.each(v.aggregation.map((c) => [c.name, c] as const))('aggregation %s', (_name, c) => {
    const score = scorePredictions(c.predictions.map(toPrediction), c.benchmark);
    expect(score).toEqual(toSummary(c.expected));
    // Sorted like Python's dict, and bit-identical floats.
    expect(Object.keys(score.byTask)).toEqual(Object.keys(c.expected.by_task));
    expect(score.official.score).toBe(c.expected.official.score);
    expect('detail' in score.official).toBe('detail' in c.expected.official);
  });
});

// Values computed with the Python reference (.venv/bin/python, `from trainer.scoring import ...`, Python 3.11.7).
describe('scoring rules (hand-written)', () => {
  test('r1: Python `.` (no DOTALL) and `\\s` translated, not JS `.`/`\\s`', () => {
    // Python `.` matches "\r" and U+2028; `\s` matches U+001C and U+0085 but not U+FEFF.
    expect(extractR1('<answer>A\r(B)</answer>')).toBe('A\r(B)');
    expect(extractR1('<answer>A\u2028B</answer>')).toBe('A\u2028B');
    expect(extractR1('<answer>\u001cB\u0085</answer>')).toBe('B');
    expect(extractR1('<answer>\ufeff</answer> x')).toBe('\ufeff');
    expect(extractR1('<answer>\u3000</answer> x')).toBe('<answer>\u3000</answer> x');
    // `\s*` crosses newlines even though the content may not.
    expect(extractR1('<answer>\n\nB\n\n</answer>')).toBe('B');
    expect(extractR1('<answer>A\nB</answer>')).toBe('<answer>A\nB</answer>');
  });

  test('strict: one well-formed answer block, or null', () => {
    expect(extractStrict(' r </think>\n<answer> B </answer>', true)).toBe('B');
    expect(extractStrict(' r </think>\u0085<answer>B</answer>', true)).toBe('B');
    expect(extractStrict(' r </think>\ufeff<answer>B</answer>', true)).toBeNull();
    expect(extractStrict(' r </think><answer>B</answer>\r', true)).toBeNull();
    expect(extractStrict(' r </think><answer>A</answer><answer>B</answer>', true)).toBeNull();
    expect(extractStrict('<think> r </think><answer>B</answer>', false)).toBe('B');
    expect(extractStrict(' r </think><answer>B</answer>', false)).toBeNull();
    expect(() => extractAnswer('A', 'lmms-eval' as ExtractionStrategy, true)).toThrow(/unknown extraction strategy/);
  });

  test('letters: ASCII word boundaries, lowercase only in parentheses, one distinct letter', () => {
    const lr = ['left', 'right'];
    expect(isCorrect('The answer is B.', 'B', lr)).toBe(true);
    expect(isCorrect('(b) right', 'B', lr)).toBe(true);
    expect(isCorrect('b is right', 'B', lr)).toBe(false);
    expect(isCorrect('A or B', 'B', lr)).toBe(false);
    expect(isCorrect('\u00e9B\u00e9', 'B', lr)).toBe(true); // JS `\b` and Python's Unicode `\b` would both refuse this
    expect(isCorrect('B\u0301', 'B', lr)).toBe(true); // a combining mark is not an ASCII word character
    expect(isCorrect('\ud835\udc01 B', 'B', lr)).toBe(true); // a non-BMP letter (two UTF-16 units) next to nothing
    expect([...letterTokens('A B C D E F', 'ABCD')].sort()).toEqual(['A', 'B', 'C', 'D']);
    expect(normalizeGoldLetter(' (c) ')).toBe('C');
    expect(() => normalizeGoldLetter('AB')).toThrow(/not an option letter/);
    expect(() => isCorrect('C', 'C', lr)).toThrow(/not one of the options/);
    expect(isCorrect(null, 'A', lr, true)).toBe(false);
  });

  test('option text: exact, or str.lower() in the labelled variant', () => {
    expect(isCorrect('Right', 'B', ['left', 'right'])).toBe(false);
    expect(isCorrect('Right', 'B', ['left', 'right'], true)).toBe(true);
    expect(isCorrect('\u0130', 'A', ['i\u0307', 'x'], true)).toBe(true); // 'İ'.lower() == 'i̇' in Python too
    expect(isCorrect('STRASSE', 'A', ['stra\u00dfe', 'x'], true)).toBe(false);
  });

  test('aggregation: sorted tasks by code point, integer-like task names, errors', () => {
    const p = (task: string, source: string, correct: boolean): Prediction => ({ task, source, correct, formatOk: correct });
    const score = scorePredictions([p('b', 'blink', true), p('10', 'blink', false), p('2', 'blink', true), p('\uff41', 'blink', true), p('\ud83d\ude00', 'blink', false)], 'blink');
    // Python: sorted(['b', '10', '2', '\uff41', '\U0001f600']); a JS object would list '2', '10' first.
    expect(Object.keys(score.byTask).sort()).toEqual(['10', '2', 'b', '\uff41', '\ud83d\ude00'].sort());
    expect(score.official).toEqual({ name: 'mean of subtask accuracies', score: 0.6 });
    expect(() => scorePredictions([], 'vsr')).toThrow(/no predictions/);
    expect(() => scorePredictions([p('a', 'x', true)], 'mmlu' as BenchmarkName)).toThrow(/unknown benchmark/);
    const labelled: EvalScore = { ...scorePredictions([p('a', 'vsr', true)], 'vsr'), strategy: 'r1', caseInsensitiveText: false, template: 'r1' };
    expect(labelled.official).toEqual({ name: 'accuracy', score: 1 });
  });
});
