// The paper's rewards and the completion parser, a shared rule with trainer/rewards.py (pinned by
// test/vectors/rewards.json). The Python regexes are translated so that JavaScript decides alike:
// Python `.` without DOTALL excludes only "\n" (JS `.` also excludes "\r", U+2028, U+2029), so it
// becomes `[^\n]`; `.` with DOTALL becomes `[\s\S]`; `\Z` and a full match become `$` without the
// `m` flag; Python's `\s` and `str.strip()` use `str.isspace`, which differs from JS `\s`/`trim()`
// (PY_SPACE below). No `u` flag anywhere: it would make `\w`/`\b` Unicode-aware under `i`.

// Python's `str.isspace()` set, which is also what `\s` matches in a `str` pattern (Python 3.11,
// Unicode 14): unlike JS it includes U+001C..U+001F and U+0085, and excludes U+FEFF.
const PY_SPACE_CLASS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE = new RegExp(`[${PY_SPACE_CLASS}]`);

// docs/method.md, "Rewards": `<think>.*?</think>\s*<answer>.*?</answer>` with DOTALL, as a full match.
const FORMAT_PATTERN = new RegExp(`^<think>[\\s\\S]*?</think>[${PY_SPACE_CLASS}]*<answer>[\\s\\S]*?</answer>$`);
// docs/method.md, "Rewards": the first `<answer>(.*?)</answer>` without DOTALL: the span stays on one line.
const ANSWER_SPAN = /<answer>([^\n]*?)<\/answer>/;
// Python: `<think>(.*?)(?:</think>|\Z)` with DOTALL.
const THINK_BLOCK = /<think>([\s\S]*?)(?:<\/think>|$)/;
// Python: `<answer>(.*?)</answer>` with DOTALL.
const ANSWER_BLOCK = /<answer>([\s\S]*?)<\/answer>/;

/** Self-reflection words counted for the "aha moment" curves (docs/method.md, "Self-reflection"). */
export const REFLECTION_WORDS: readonly string[] = ['wait', 'check', 'verify', 'aha', 'possibl', 'yet', 're-evaluate'];
// Python compiles it with re.IGNORECASE | re.ASCII: ASCII `\b`/`\w` and ASCII-only case folding,
// which is what JS gives with the `i` flag and no `u` flag.
export const REFLECTION_PATTERN = /\b(?:wait|re-?check\w*|check\w*|verif(?:y|ied|ies|ying|ication)|aha|possibl[ey]|yet|re-?evaluat\w*)\b/i;

/** Whether `ch` (one UTF-16 unit) is whitespace for Python's `str.isspace()`. */
export function isPySpace(ch: string): boolean {
  return PY_SPACE.test(ch);
}

/** Python's `str.strip()` with no argument (not JS `trim()`: they disagree on U+FEFF, U+001C..U+001F, U+0085). */
export function pyStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isPySpace(text[start])) start++;
  while (end > start && isPySpace(text[end - 1])) end--;
  return text.slice(start, end);
}

/** Format reward (docs/method.md, "Rewards"): `"<think>" + completion` fully matches the think/answer layout. */
export function formatReward(completion: string): 0 | 1 {
  return FORMAT_PATTERN.test(`<think>${completion}`) ? 1 : 0;
}

/** What the accuracy reward compares (docs/method.md, "Rewards"): the first single-line answer span, else everything, stripped. */
export function extractAnswerText(completion: string): string {
  const match = ANSWER_SPAN.exec(completion);
  return pyStrip(match ? match[1] : completion);
}

/** Accuracy reward (docs/method.md, "Rewards"): exact, case-sensitive equality with the gold option text; no format needed. */
export function accuracyReward(completion: string, gold: string): 0 | 1 {
  return extractAnswerText(completion) === pyStrip(gold) ? 1 : 0;
}

/** Optional length reward (docs/method.md, "Rewards": tried by the paper, ineffective; off unless enabled). */
export function lengthReward(numTokens: number, weight = 0.001): number {
  return weight * numTokens;
}

/** Whether `text` contains a self-reflection word (docs/method.md, "Self-reflection"). */
export function hasReflection(text: string): boolean {
  return REFLECTION_PATTERN.test(text);
}

export interface ParsedCompletion {
  /** The first think block (or what follows an unclosed `<think>`), stripped; null when absent. */
  think: string | null;
  /** The first answer block (multi-line allowed), stripped; null when absent. */
  answer: string | null;
  /** `formatReward(completion) === 1`. */
  formatOk: boolean;
}

/**
 * Split a completion into its think and answer text for display. When the prompt opened the think
 * block (template r1), the completion is read as if it began with `<think>`.
 */
export function parseCompletion(completion: string, promptOpensThink: boolean): ParsedCompletion {
  const text = promptOpensThink ? `<think>${completion}` : completion;
  const think = THINK_BLOCK.exec(text);
  const answer = ANSWER_BLOCK.exec(text);
  return {
    think: think ? pyStrip(think[1]) : null,
    answer: answer ? pyStrip(answer[1]) : null,
    formatOk: formatReward(completion) === 1,
  };
}
