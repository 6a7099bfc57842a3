// The rewards and completion parser agree with trainer/rewards.py: every case of
// test/vectors/rewards.json, plus cases where Python `re`/`str.strip` and JavaScript regexes/trim()
// would disagree if translated naively.
import {
  accuracyReward,
  extractAnswerText,
  formatReward,
  hasReflection,
  isPySpace,
  lengthReward,
  parseCompletion,
  pyStrip,
  REFLECTION_WORDS,
} from '../../src/engine/rewards';
import { letteredAccuracyReward } from '../../src/benchmarks/scoring';
import { loadVectors } from '../helpers/vectors';

interface RewardCase {
  completion: string;
  gold: string;
  prompt_opens_think: boolean;
  format_reward: number;
  accuracy_reward: number;
  extracted_answer: string;
  think: string | null;
  answer: string | null;
  reflection: boolean;
}

interface LetterCase {
  completion: string;
  gold: string;
  gold_letter: string;
  choices: string[];
  accuracy_reward: number;
}

const v = loadVectors<{ cases: RewardCase[]; letter_cases: LetterCase[] }>('rewards.json');

// Values computed with the Python reference (.venv/bin/python, `from trainer.rewards import ...`,
// Python 3.11.7): [completion, gold, prompt_opens_think, format, accuracy, extracted, think, answer, reflection].
type Row = [string, string, boolean, number, number, string, string | null, string | null, boolean];
const PYTHON_CASES: Row[] = [
  // Python `.` (no DOTALL) matches "\r", U+2028, U+2029: the answer span still counts.
  [' t </think><answer>le\rft</answer>', 'le\rft', true, 1, 1, 'le\rft', 't', 'le\rft', false],
  [' t </think><answer>left\r</answer>', 'left', true, 1, 1, 'left', 't', 'left', false],
  [' t </think><answer>le\u2028ft</answer>', 'le\u2028ft', true, 1, 1, 'le\u2028ft', 't', 'le\u2028ft', false],
  [' t </think><answer>le\u2029ft</answer>', 'left', true, 1, 0, 'le\u2029ft', 't', 'le\u2029ft', false],
  // "\n" does end the single-line span: no span, so the whole completion is stripped.
  [' \r t \r</think><answer>\r\nleft\r\n</answer>', 'left', true, 1, 0, 't \r</think><answer>\r\nleft\r\n</answer>', 't', 'left', false],
  // str.strip(): U+FEFF is not whitespace; U+001C..U+001F and U+0085 are.
  [' t </think><answer>\ufeffleft\ufeff</answer>', 'left', true, 1, 0, '\ufeffleft\ufeff', 't', '\ufeffleft\ufeff', false],
  [' t </think><answer>\u001cleft\u001f</answer>', 'left', true, 1, 1, 'left', 't', 'left', false],
  [' t </think><answer>\u0085left\u0085</answer>', 'left', true, 1, 1, 'left', 't', 'left', false],
  ['\ufeff left \ufeff', 'left', true, 0, 0, '\ufeff left \ufeff', '\ufeff left \ufeff', null, false],
  ['\u001d left \u0085', 'left', true, 0, 1, 'left', 'left', null, false],
  ['<think>\ufeffa\ufeff', 'left', false, 0, 0, '<think>\ufeffa\ufeff', '\ufeffa\ufeff', null, false],
  // Python `\s` between </think> and <answer>: U+0085, U+001C, U+3000 count, U+FEFF does not.
  [' t </think>\u0085<answer>left</answer>', 'left', true, 1, 1, 'left', 't', 'left', false],
  [' t </think>\ufeff<answer>left</answer>', 'left', true, 0, 1, 'left', 't', 'left', false],
  [' t </think>\u3000\u001c\n<answer>left</answer>', 'left', true, 1, 1, 'left', 't', 'left', false],
  // Full match: nothing may follow </answer>, not even "\r" or U+FEFF.
  [' t </think><answer>left</answer>\r', 'left', true, 0, 1, 'left', 't', 'left', false],
  [' t </think><answer>left</answer>\ufeff', 'left', true, 0, 1, 'left', 't', 'left', false],
  // re.ASCII | re.IGNORECASE: ASCII word boundaries and ASCII-only case folding.
  ['aha\u00e9 then', 'x', true, 0, 0, 'aha\u00e9 then', 'aha\u00e9 then', null, true],
  ['\u00e9wait', 'x', true, 0, 0, '\u00e9wait', '\u00e9wait', null, true],
  ['chec\u212a it', 'x', true, 0, 0, 'chec\u212a it', 'chec\u212a it', null, false],
  ['po\u017fsible', 'x', true, 0, 0, 'po\u017fsible', 'po\u017fsible', null, false],
  ['CHECKING', 'x', true, 0, 0, 'CHECKING', 'CHECKING', null, true],
  ['wait_a_moment', 'x', true, 0, 0, 'wait_a_moment', 'wait_a_moment', null, false],
  ['re-evaluating', 'x', true, 0, 0, 're-evaluating', 're-evaluating', null, true],
  ['yet2', 'x', true, 0, 0, 'yet2', 'yet2', null, false],
];

const title = (text: string) => JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function expectLikePython(c: RewardCase): void {
  expect(formatReward(c.completion)).toBe(c.format_reward);
  expect(accuracyReward(c.completion, c.gold)).toBe(c.accuracy_reward);
  expect(extractAnswerText(c.completion)).toBe(c.extracted_answer);
  expect(hasReflection(c.completion)).toBe(c.reflection);
  expect(parseCompletion(c.completion, c.prompt_opens_think)).toEqual({
    think: c.think,
    answer: c.answer,
    formatOk: c.format_reward === 1,
  });
}

describe('completion rules (trainer/rewards.py)', () => {
  test.each(v.cases.map((c) => [title(c.completion), c] as const))('vector %s', (_name, c) => {
    expectLikePython(c);
  });

  test.each(v.letter_cases.map((c) => [title(c.completion), c.gold_letter, c] as const))(
    'lettered choices %s, gold %s',
    (_name, _letter, c) => {
      expect(letteredAccuracyReward(c.completion, c.gold, c.gold_letter, c.choices)).toBe(c.accuracy_reward);
    },
  );

  test.each(PYTHON_CASES.map((row) => [title(row[0]), row] as const))('python %s', (_name, row) => {
    const [completion, gold, opens, format, accuracy, extracted, think, answer, reflection] = row;
    expectLikePython({
      completion,
      gold,
      prompt_opens_think: opens,
      format_reward: format,
      accuracy_reward: accuracy,
      extracted_answer: extracted,
      think,
      answer,
      reflection,
    });
  });

  test('pyStrip follows str.isspace, not trim()', () => {
    // Python: [c for c in map(chr, range(0x10000)) if c.isspace()] (Python 3.11, Unicode 14).
    const pythonSpaces = [
      0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
      0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
    ];
    const spaces: number[] = [];
    for (let code = 0; code < 0x10000; code++) if (isPySpace(String.fromCharCode(code))) spaces.push(code);
    expect(spaces).toEqual(pythonSpaces);
    expect(pyStrip('\ufeff x \ufeff')).toBe('\ufeff x \ufeff');
    expect(pyStrip('\u001c\u0085 x y\u3000\n')).toBe('x y');
    expect(pyStrip(' \t\n ')).toBe('');
    expect(pyStrip('')).toBe('');
  });

  test('gold text is stripped too', () => {
    expect(accuracyReward('<answer>left</answer>', ' left\u0085')).toBe(1);
    expect(accuracyReward('<answer>left</answer>', '\ufeffleft')).toBe(0);
  });

  test('reflection words and the optional length reward', () => {
    for (const word of REFLECTION_WORDS) expect(hasReflection(`so ${word === 'possibl' ? 'possible' : word}, then`)).toBe(true);
    expect(lengthReward(700)).toBeCloseTo(0.7);
    expect(lengthReward(10, 0)).toBe(0);
  });
});
