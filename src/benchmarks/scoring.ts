// Evaluation scoring as pure functions: answer extraction, multiple-choice matching and aggregation.
// A shared rule with trainer/scoring.py (the reference; the full rules are in its docstring), pinned
// by test/vectors/scoring.json. Regexes are translated as in src/engine/rewards.ts: Python `.`
// without DOTALL becomes `[^\n]`, with DOTALL `[\s\S]`; a full match is `^...$` without the `m`
// flag; Python `\s` is `str.isspace`, whose class is derived here from `isPySpace` (not JS `\s`);
// word boundaries are spelled out with ASCII classes (no `u` flag, no `\b`).
import { accuracyReward, extractAnswerText, formatReward, isPySpace, pyStrip } from '../engine/rewards';
import { BENCHMARKS, type BenchmarkName } from './types';

export type ExtractionStrategy = 'r1' | 'strict';
/** Alias of ExtractionStrategy (the name src/benchmarks/runs.ts imports). */
export type Strategy = ExtractionStrategy;
export const EXTRACTION_STRATEGIES: readonly ExtractionStrategy[] = ['r1', 'strict'];
export const CV_BENCH_SOURCES = ['ADE20K', 'COCO', 'Omni3D'] as const;
const DEFAULT_OPTION_LETTERS = 'ABCDEF';
const THINK_OPEN = '<think>';

/** The character class body of Python's `\s` (= `str.isspace`, BMP; there is none above it), built from `isPySpace`. */
function pySpaceClass(): string {
  const hex = (code: number) => `\\u${code.toString(16).padStart(4, '0')}`;
  const parts: string[] = [];
  let code = 0;
  while (code <= 0xffff) {
    if (!isPySpace(String.fromCharCode(code))) {
      code++;
      continue;
    }
    const start = code;
    while (code + 1 <= 0xffff && isPySpace(String.fromCharCode(code + 1))) code++;
    parts.push(start === code ? hex(start) : `${hex(start)}-${hex(code)}`);
    code++;
  }
  return parts.join('');
}
const S = `[${pySpaceClass()}]`;

// docs/evaluation.md, "Extraction" (`r1`): Python `<answer>\s*(.*?)\s*</answer>` without DOTALL, as the paper's script.
const R1_ANSWER = new RegExp(`<answer>${S}*([^\\n]*?)${S}*</answer>`);
// docs/evaluation.md, "Extraction" (`strict`): the answer block of the format pattern
// (docs/method.md, "Rewards"), DOTALL, full match.
const STRICT_LAYOUT = new RegExp(`^<think>[\\s\\S]*?</think>${S}*<answer>([\\s\\S]*?)</answer>$`);
const ANSWER_TAG = /<\/?answer>/;
// docs/evaluation.md, "Matching": a letter as a whole word (ASCII word characters), or a lowercase letter in parentheses.
const UPPER_TOKEN = /(?<![A-Za-z0-9_])([A-Z])(?![A-Za-z0-9_])/g;
const LOWER_PAREN_TOKEN = /\(([a-z])\)/g;
const GOLD_LETTER = /^(?:([A-Za-z])|\(([A-Za-z])\))$/;

// ---------------------------------------------------------------------------------------------
// Extraction

/** The training format rule (docs/method.md, "Rewards"); without the prompt's `<think>` the response must open it. */
export function passesFormat(response: string, promptOpensThink: boolean): boolean {
  if (promptOpensThink) return formatReward(response) === 1;
  return response.startsWith(THINK_OPEN) && formatReward(response.slice(THINK_OPEN.length)) === 1;
}

/** docs/evaluation.md, "Extraction", `r1`: the first single-line answer span, else (none or empty) the whole response stripped. */
export function extractR1(response: string): string {
  const match = R1_ANSWER.exec(response);
  const answer = match ? pyStrip(match[1]) : '';
  return answer !== '' ? answer : pyStrip(response);
}

/** docs/evaluation.md, "Extraction", `strict`: the single answer block of a well-formed response, stripped; else null. */
export function extractStrict(response: string, promptOpensThink: boolean): string | null {
  if (!passesFormat(response, promptOpensThink)) return null;
  const body = promptOpensThink ? response : response.slice(THINK_OPEN.length);
  const match = STRICT_LAYOUT.exec(THINK_OPEN + body);
  if (match === null) return null; // cannot happen once the format passed; kept as a guard
  if (ANSWER_TAG.test(match[1])) return null;
  const answer = pyStrip(match[1]);
  return answer !== '' ? answer : null;
}

/** Dispatch to the named strategy. `r1` ignores `promptOpensThink`. */
export function extractAnswer(response: string, strategy: ExtractionStrategy, promptOpensThink: boolean): string | null {
  switch (strategy) {
    case 'r1':
      return extractR1(response);
    case 'strict':
      return extractStrict(response, promptOpensThink);
    default:
      throw new Error(`unknown extraction strategy ${JSON.stringify(strategy)}; choose one of ${EXTRACTION_STRATEGIES.join(', ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Matching

/** `A`, `a`, `(A)` or `(a)` (surrounding whitespace allowed) -> `A`; anything else throws. */
export function normalizeGoldLetter(goldLetter: string): string {
  const match = GOLD_LETTER.exec(pyStrip(goldLetter));
  if (match === null) throw new Error(`gold answer ${JSON.stringify(goldLetter)} is not an option letter`);
  return (match[1] ?? match[2]).toUpperCase();
}

/** The letters of the options (A, B, ... one per choice); A-F when the choices are unknown. */
export function optionLetters(choices: readonly string[]): string {
  if (choices.length === 0) return DEFAULT_OPTION_LETTERS;
  if (choices.length > 26) throw new Error(`${choices.length} choices: at most 26 can be lettered`);
  return choices.map((_c, i) => String.fromCharCode(65 + i)).join('');
}

/** Option letters standing alone in `text` (docs/evaluation.md, "Matching", rule 2). */
export function letterTokens(text: string, letters: string): Set<string> {
  const found = new Set<string>();
  for (const m of text.matchAll(UPPER_TOKEN)) if (letters.includes(m[1])) found.add(m[1]);
  for (const m of text.matchAll(LOWER_PAREN_TOKEN)) {
    const letter = m[1].toUpperCase();
    if (letters.includes(letter)) found.add(letter);
  }
  return found;
}

/** Whether an extracted answer names the gold option (rules: trainer/scoring.py's docstring). */
export function isCorrect(extracted: string | null, goldLetter: string, choices: readonly string[], caseInsensitiveText = false): boolean {
  const gold = normalizeGoldLetter(goldLetter);
  const letters = optionLetters(choices);
  if (!letters.includes(gold)) throw new Error(`gold letter ${gold} is not one of the options ${letters}`);
  if (extracted === null) return false;
  const answer = pyStrip(extracted);
  const lower = gold.toLowerCase();
  // docs/evaluation.md, "Matching", rule 1: the gold letter in any of the forms A, a, (A), (a).
  if (answer === gold || answer === lower || answer === `(${gold})` || answer === `(${lower})`) return true;
  // docs/evaluation.md, "Matching", rule 2: a standalone letter; a second distinct letter voids it.
  const tokens = letterTokens(answer, letters);
  if (tokens.size === 1 && tokens.has(gold)) return true;
  if (choices.length === 0) return false;
  const goldText = pyStrip(choices[gold.charCodeAt(0) - 65]);
  // docs/evaluation.md, "Matching", rule 3: the gold option text (exact, case-sensitive).
  if (answer === goldText) return true;
  // docs/evaluation.md, "Matching": the case-insensitive variant, reported only with its label (Python str.lower()).
  return caseInsensitiveText && answer.toLowerCase() === goldText.toLowerCase();
}

/**
 * The accuracy reward of a question that lists lettered choices (trainer/scoring.py
 * lettered_accuracy_reward): the gold option's text, or any answer isCorrect counts as the gold option,
 * read from the reward's extraction (the first one-line answer span).
 */
export function letteredAccuracyReward(completion: string, gold: string, goldLetter: string, choices: readonly string[]): 0 | 1 {
  if (accuracyReward(completion, gold) === 1) return 1;
  return isCorrect(extractAnswerText(completion), goldLetter, choices) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Aggregation

/** One scored item. */
export interface Prediction {
  task: string;
  source: string;
  correct: boolean;
  formatOk: boolean;
}

export interface TaskScore {
  n: number;
  accuracy: number;
}

export interface OfficialScore {
  /** What the score is, e.g. "((acc_ADE20K + acc_COCO)/2 + acc_Omni3D)/2". */
  name: string;
  /** null when it cannot be computed from these predictions (see `detail`). */
  score: number | null;
  /** The reason, present only when `score` is null. */
  detail?: string;
}

/** What `scorePredictions` computes. */
export interface ScoreSummary {
  n: number;
  /** Plain accuracy: correct / n. */
  accuracy: number;
  /** Share of responses that pass the format check. */
  formatRate: number;
  byTask: Record<string, TaskScore>;
  official: OfficialScore;
}

/** A labelled score as reported: the summary plus the labels the caller fills in. */
export interface EvalScore extends ScoreSummary {
  strategy: ExtractionStrategy;
  /** true: option text was compared ignoring case (the labelled variant of docs/evaluation.md, "Matching"); absent or false: exact. */
  caseInsensitiveText?: boolean;
  /** The prompt template used (a PromptTemplate, or "chat"). */
  template: string;
}

/** Python's `sorted()` order for strings: by code point (JS's default sort compares UTF-16 units). */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = (x[i].codePointAt(0) as number) - (y[i].codePointAt(0) as number);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function accuracyOf(rows: readonly Prediction[]): number {
  return rows.filter((r) => r.correct).length / rows.length;
}

function groupBy(predictions: readonly Prediction[], key: 'task' | 'source'): Map<string, Prediction[]> {
  const groups = new Map<string, Prediction[]>();
  for (const p of predictions) {
    const rows = groups.get(p[key]);
    if (rows) rows.push(p);
    else groups.set(p[key], [p]);
  }
  return new Map([...groups.keys()].sort(byCodePoint).map((k) => [k, groups.get(k) as Prediction[]]));
}

function cvBenchOfficial(predictions: readonly Prediction[]): OfficialScore {
  const name = '((acc_ADE20K + acc_COCO)/2 + acc_Omni3D)/2';
  const bySource = groupBy(predictions, 'source');
  const known: readonly string[] = CV_BENCH_SOURCES;
  const unknown = [...bySource.keys()].filter((s) => !known.includes(s));
  if (unknown.length > 0) return { name, score: null, detail: `unknown source(s): ${unknown.join(', ')}` };
  const missing = known.filter((s) => !bySource.has(s));
  if (missing.length > 0) return { name, score: null, detail: `no predictions from source(s): ${missing.join(', ')}` };
  const acc = (s: string) => accuracyOf(bySource.get(s) as Prediction[]);
  return { name, score: ((acc('ADE20K') + acc('COCO')) / 2 + acc('Omni3D')) / 2 };
}

/** Scores of one evaluation run (docs/evaluation.md, "Aggregation"); throws on an unknown benchmark or no predictions. */
export function scorePredictions(predictions: readonly Prediction[], benchmark: BenchmarkName): ScoreSummary {
  if (!BENCHMARKS.includes(benchmark)) throw new Error(`unknown benchmark ${JSON.stringify(benchmark)}; choose one of ${BENCHMARKS.join(', ')}`);
  if (predictions.length === 0) throw new Error('no predictions to score');
  // Sorted by code point like Python's dict; summed in that order (a JS object would put integer-like keys first).
  const tasks = [...groupBy(predictions, 'task')].map(([task, rows]) => [task, { n: rows.length, accuracy: accuracyOf(rows) }] as const);
  const byTask: Record<string, TaskScore> = Object.fromEntries(tasks);
  const accuracy = accuracyOf(predictions);
  let official: OfficialScore;
  if (benchmark === 'cv-bench') {
    official = cvBenchOfficial(predictions);
  } else if (benchmark === 'blink') {
    let total = 0;
    for (const [, t] of tasks) total += t.accuracy;
    official = { name: 'mean of subtask accuracies', score: total / tasks.length };
  } else {
    official = { name: 'accuracy', score: accuracy };
  }
  return {
    n: predictions.length,
    accuracy,
    formatRate: predictions.filter((p) => p.formatOk).length / predictions.length,
    byTask,
    official,
  };
}

// ---------------------------------------------------------------------------------------------
// Several responses per item: pass@k, majority vote, response statistics (docs/evaluation.md,
// "Several samples per item" and "Response statistics"). TypeScript only: the Python side has no
// multi-sample evaluation.

/**
 * The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on
 * Code", section 2.1) for one item with n responses of which c are correct:
 * 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the
 * binomials (they overflow doubles near n = 1,030).
 */
export function passAtK(n: number, c: number, k: number): number {
  if (!Number.isInteger(n) || !Number.isInteger(c) || !Number.isInteger(k) || n < 1 || c < 0 || c > n || k < 1 || k > n) {
    throw new Error(`pass@k needs integers 0 <= c <= n and 1 <= k <= n; got n=${n}, c=${c}, k=${k}`);
  }
  if (n - c < k) return 1; // every k-subset holds a correct response
  let allWrong = 1;
  for (let i = n - c + 1; i <= n; i++) allWrong *= 1 - k / i;
  return 1 - allWrong;
}

/** The k reported for n responses per item: 1, 2, 4, ... (powers of two up to n), and n itself. */
export function passKs(n: number): number[] {
  const ks: number[] = [];
  for (let k = 1; k <= n; k *= 2) ks.push(k);
  if (ks[ks.length - 1] !== n) ks.push(n);
  return ks;
}

/** The letters of the options an extracted answer names (by isCorrect's rules); none for no answer. */
export function matchedOptions(extracted: string | null, choices: readonly string[]): string[] {
  if (extracted === null) return [];
  return [...optionLetters(choices)].filter((letter) => isCorrect(extracted, letter, choices));
}

/**
 * What a response votes for in a majority vote: the option it names when it names exactly one
 * (so `B`, `(B)` and the text of option B are one vote), else its stripped extracted text; null
 * (no vote) when nothing was extracted or the extraction is empty.
 */
export function voteKey(extracted: string | null, choices: readonly string[]): string | null {
  if (extracted === null) return null;
  const options = matchedOptions(extracted, choices);
  if (options.length === 1) return `option:${options[0]}`;
  const text = pyStrip(extracted);
  return text === '' ? null : `text:${text}`;
}

export interface Vote {
  /** voteKey() of the response; null abstains. */
  key: string | null;
  correct: boolean;
}

/**
 * The majority answer of one item's responses, in sample order. Responses with the same key are
 * either all correct or all wrong (the key decides correctness), so the winner's correctness is the
 * item's. Ties go to the key that appeared first (the lowest sample number): deterministic and
 * independent of how keys sort. No votes at all: wrong.
 */
export function majorityVote(votes: readonly Vote[]): { key: string | null; correct: boolean; count: number } {
  const tally = new Map<string, { count: number; correct: boolean }>();
  for (const vote of votes) {
    if (vote.key === null) continue;
    const entry = tally.get(vote.key);
    if (entry) entry.count += 1;
    else tally.set(vote.key, { count: 1, correct: vote.correct });
  }
  let best: { key: string | null; correct: boolean; count: number } = { key: null, correct: false, count: 0 };
  // Map iteration is insertion order, i.e. first appearance; only a strictly larger count wins.
  for (const [key, entry] of tally) if (entry.count > best.count) best = { key, correct: entry.correct, count: entry.count };
  return best;
}

/** Linear-interpolation quantile of sorted values (numpy's default, "type 7"). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error('no values');
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.min(lower + 1, sorted.length - 1);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower);
}

/** One scored response of a multi-sample run. */
export interface ScoredResponse extends Prediction {
  item: string;
  sample: number;
  /** voteKey() of its extracted answer. */
  vote: string | null;
  /** Its extracted answer names none of the item's options (nothing extracted counts too). */
  offOption: boolean;
  /** hasReflection() of the response text (the shared rule, src/engine/rewards.ts). */
  reflection: boolean;
  /** Generated tokens; null when unknown (uploaded predictions without a count). */
  completionTokens: number | null;
}

export interface LengthStats {
  mean: number;
  min: number;
  p25: number;
  p50: number;
  p75: number;
  p90: number;
  max: number;
}

export interface ResponseStats {
  /** Completion length in tokens over all responses; null when some response has no count. */
  completion_tokens: LengthStats | null;
  /** Share of responses with a self-reflection word. */
  reflection_rate: number;
  /** Share of responses whose extracted answer names none of the options. */
  off_option_rate: number;
}

/** What a group of items (all of them, or one task) scores beyond plain accuracy. */
export interface SampleScores {
  /** pass@k by k (as a string key: "1", "2", ...), averaged over items. */
  pass_at_k: Record<string, number>;
  /** Items whose majority answer is correct / items. */
  majority_accuracy: number;
  format_rate: number;
  stats: ResponseStats;
}

export interface RunScore extends ScoreSummary, SampleScores {
  /** Responses per item. */
  samples: number;
  /** Responses scored (n * samples). */
  responses: number;
  byTask: Record<string, TaskScore & SampleScores>;
}

function lengthStats(rows: readonly ScoredResponse[]): LengthStats | null {
  const lengths: number[] = [];
  for (const r of rows) {
    if (r.completionTokens === null) return null;
    lengths.push(r.completionTokens);
  }
  lengths.sort((a, b) => a - b);
  let sum = 0;
  for (const x of lengths) sum += x;
  return {
    mean: sum / lengths.length,
    min: lengths[0],
    p25: quantile(lengths, 0.25),
    p50: quantile(lengths, 0.5),
    p75: quantile(lengths, 0.75),
    p90: quantile(lengths, 0.9),
    max: lengths[lengths.length - 1],
  };
}

function sampleScores(items: readonly ScoredResponse[][], samples: number): SampleScores {
  const rows = items.flat();
  const ks = passKs(samples);
  const passAt: Record<string, number> = {};
  for (const k of ks) {
    let total = 0;
    for (const item of items) total += passAtK(samples, item.filter((r) => r.correct).length, k);
    passAt[String(k)] = total / items.length;
  }
  let majority = 0;
  for (const item of items) if (majorityVote(item.map((r) => ({ key: r.vote, correct: r.correct }))).correct) majority += 1;
  const share = (test: (r: ScoredResponse) => boolean) => rows.filter(test).length / rows.length;
  return {
    pass_at_k: passAt,
    majority_accuracy: majority / items.length,
    format_rate: share((r) => r.formatOk),
    stats: { completion_tokens: lengthStats(rows), reflection_rate: share((r) => r.reflection), off_option_rate: share((r) => r.offOption) },
  };
}

/**
 * Scores of a run with `samples` responses per item (1 for a greedy run). Accuracy, format rate and
 * the official score are over all responses (accuracy is then pass@1); `n` counts items. Throws
 * unless every item has responses 0 .. samples-1 exactly once.
 */
export function scoreRun(responses: readonly ScoredResponse[], benchmark: BenchmarkName, samples: number): RunScore {
  if (!Number.isInteger(samples) || samples < 1) throw new Error(`samples must be a positive integer, got ${samples}`);
  const base = scorePredictions(responses, benchmark);
  const byItem = new Map<string, ScoredResponse[]>();
  for (const r of responses) {
    const rows = byItem.get(r.item);
    if (rows) rows.push(r);
    else byItem.set(r.item, [r]);
  }
  for (const [item, rows] of byItem) {
    const seen = new Set(rows.map((r) => r.sample));
    if (rows.length !== samples || seen.size !== samples || rows.some((r) => !Number.isInteger(r.sample) || r.sample < 0 || r.sample >= samples)) {
      throw new Error(`item ${item} has ${rows.length} response(s) numbered ${[...seen].join(', ')}; expected samples 0 to ${samples - 1}`);
    }
    rows.sort((a, b) => a.sample - b.sample);
  }
  const items = [...byItem.values()];
  const byTask: Record<string, TaskScore & SampleScores> = {};
  for (const task of Object.keys(base.byTask)) {
    const taskItems = items.filter((rows) => rows[0].task === task);
    byTask[task] = { n: taskItems.length, accuracy: base.byTask[task].accuracy, ...sampleScores(taskItems, samples) };
  }
  return { ...base, n: items.length, samples, responses: responses.length, byTask, ...sampleScores(items, samples) };
}
