"""Evaluation scoring as pure functions: answer extraction, multiple-choice matching and aggregation.

This is the reference for a shared rule: src/benchmarks/scoring.ts computes the same values, pinned
by test/vectors/scoring.json (written by `python -m trainer.vectors`).

Extraction strategies (docs/evaluation.md, "Extraction"):
- `r1` (the paper's evaluation): the first `<answer>\\s*(.*?)\\s*</answer>` span, `.` without
  DOTALL (so the content stays on one line, while the surrounding `\\s*` may cross newlines); when
  there is none or it is empty, the whole response stripped. Always a string (maybe empty).
- `strict`: only a well-formed response counts. It must pass the training format rule
  (`trainer.rewards.format_reward`, which reads the completion as following the r1 prompt's
  `<think>`); for templates whose prompt does not open the think block, the response must itself
  start with `<think>` and the rest must pass. The answer is the answer block the format pattern
  delimits (after the first `</think>` that is followed by whitespace and `<answer>`, up to the
  final `</answer>`), stripped. None when the format fails, the block is empty, or the block holds
  another `<answer>`/`</answer>` tag (several answer blocks are not one well-formed answer).

Matching (`is_correct`), for multiple choice with a gold letter (docs/evaluation.md, "Matching"); `extracted` is
stripped (Python `str.strip`) first and None is never correct:
1. exact forms: it equals `G`, `g`, `(G)` or `(g)` for the gold letter G;
2. standalone letter: the option letters it contains as tokens are exactly {G}. A token is an
   uppercase option letter with no ASCII letter, digit or `_` on either side ("B", "(B) right",
   "B. right", "The answer is B"), or a lowercase option letter in parentheses ("(b)"). Option
   letters are the letters of `choices` (A-F when `choices` is empty); a bare lowercase letter in
   running text is not a token (it is usually the article "a"). Several distinct letters ("A or B")
   are not correct;
3. option text: it equals the gold option text (stripped), case-sensitively; with
   `case_insensitive_text=True` (a labelled variant) after `str.lower()` of both.

Aggregation (`score_predictions`, docs/evaluation.md, "Aggregation"): plain accuracy, format rate, accuracy per task,
and the official score of the benchmark: CV-Bench `((acc_ADE20K + acc_COCO)/2 + acc_Omni3D)/2`
with accuracy per `source` (None with a reason when a source group is missing or a source is
unknown); BLINK the unweighted mean of the per-subtask (`task`) accuracies; VSR, SAT and
spatial-synth plain accuracy. Means are summed left to right in sorted-key order so that the
TypeScript side gets bit-identical floats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .rewards import accuracy_reward, extract_answer_text, format_reward

STRATEGIES = ("r1", "strict")
BENCHMARKS = ("cv-bench", "blink", "vsr", "sat", "spatial-synth")
CV_BENCH_SOURCES = ("ADE20K", "COCO", "Omni3D")
DEFAULT_OPTION_LETTERS = "ABCDEF"

# docs/evaluation.md, "Extraction" (`r1`): the first `<answer>\s*(.*?)\s*</answer>` without DOTALL, as the paper's script.
R1_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>")
# docs/evaluation.md, "Extraction" (`strict`): the answer block of the format pattern
# (docs/method.md, "Rewards"), DOTALL, full match.
STRICT_LAYOUT = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)
ANSWER_TAG = re.compile(r"</?answer>")
THINK_OPEN = "<think>"
# docs/evaluation.md, "Matching": a letter as a whole word (ASCII word characters), or a lowercase letter in parentheses.
UPPER_TOKEN = re.compile(r"(?<![A-Za-z0-9_])([A-Z])(?![A-Za-z0-9_])")
LOWER_PAREN_TOKEN = re.compile(r"\(([a-z])\)")
GOLD_LETTER = re.compile(r"([A-Za-z])|\(([A-Za-z])\)")


# ---------------------------------------------------------------------------------------------
# Extraction


def passes_format(response: str, prompt_opens_think: bool) -> bool:
    """The training format rule (docs/method.md, "Rewards"); without the prompt's `<think>` the response must open it."""
    if prompt_opens_think:
        return format_reward(response) == 1.0
    return response.startswith(THINK_OPEN) and format_reward(response[len(THINK_OPEN):]) == 1.0


def extract_r1(response: str) -> str:
    """docs/evaluation.md, "Extraction", `r1`: the first single-line answer span, else (none or empty) the whole response stripped."""
    match = R1_ANSWER.search(response)
    answer = match.group(1).strip() if match else ""
    return answer if answer else response.strip()


def extract_strict(response: str, prompt_opens_think: bool) -> str | None:
    """docs/evaluation.md, "Extraction", `strict`: the single answer block of a well-formed response, stripped; else None."""
    if not passes_format(response, prompt_opens_think):
        return None
    body = response if prompt_opens_think else response[len(THINK_OPEN):]
    match = STRICT_LAYOUT.fullmatch(THINK_OPEN + body)
    if match is None:  # cannot happen once the format passed; kept as a guard
        return None
    answer = match.group(1)
    if ANSWER_TAG.search(answer):
        return None
    answer = answer.strip()
    return answer or None


def extract_answer(response: str, strategy: str, prompt_opens_think: bool) -> str | None:
    """Dispatch to the named strategy (`r1` or `strict`)."""
    if strategy == "r1":
        return extract_r1(response)
    if strategy == "strict":
        return extract_strict(response, prompt_opens_think)
    raise ValueError(f"unknown extraction strategy {strategy!r}; choose one of {STRATEGIES}")


# ---------------------------------------------------------------------------------------------
# Matching


def normalize_gold_letter(gold_letter: str) -> str:
    """`A`, `a`, `(A)` or `(a)` (surrounding whitespace allowed) -> `A`; anything else is an error."""
    match = GOLD_LETTER.fullmatch(gold_letter.strip())
    if match is None:
        raise ValueError(f"gold answer {gold_letter!r} is not an option letter")
    return (match.group(1) or match.group(2)).upper()


def option_letters(choices: Sequence[str]) -> str:
    """The letters of the options (A, B, ... one per choice); A-F when the choices are unknown."""
    if not choices:
        return DEFAULT_OPTION_LETTERS
    if len(choices) > 26:
        raise ValueError(f"{len(choices)} choices: at most 26 can be lettered")
    return "".join(chr(65 + i) for i in range(len(choices)))


def letter_tokens(text: str, letters: str) -> set[str]:
    """Option letters standing alone in `text` (docs/evaluation.md, "Matching", rule 2)."""
    found = {m.group(1) for m in UPPER_TOKEN.finditer(text)}
    found |= {m.group(1).upper() for m in LOWER_PAREN_TOKEN.finditer(text)}
    return {letter for letter in found if letter in letters}


def is_correct(extracted: str | None, gold_letter: str, choices: Sequence[str],
               case_insensitive_text: bool = False) -> bool:
    """Whether an extracted answer names the gold option (rules in the module docstring)."""
    gold = normalize_gold_letter(gold_letter)
    letters = option_letters(choices)
    if gold not in letters:
        raise ValueError(f"gold letter {gold} is not one of the options {letters}")
    if extracted is None:
        return False
    answer = extracted.strip()
    # docs/evaluation.md, "Matching", rule 1: the gold letter in any of the forms A, a, (A), (a).
    if answer in (gold, gold.lower(), f"({gold})", f"({gold.lower()})"):
        return True
    # docs/evaluation.md, "Matching", rule 2: a standalone letter; a second distinct letter voids it.
    if letter_tokens(answer, letters) == {gold}:
        return True
    if not choices:
        return False
    gold_text = choices[ord(gold) - 65].strip()
    # docs/evaluation.md, "Matching", rule 3: the gold option text (exact, case-sensitive).
    if answer == gold_text:
        return True
    # docs/evaluation.md, "Matching": the case-insensitive variant, reported only with its label.
    return case_insensitive_text and answer.lower() == gold_text.lower()


def lettered_accuracy_reward(completion: str, gold: str, gold_letter: str, choices: Sequence[str]) -> float:
    """The accuracy reward of a question that lists lettered choices (docs/method.md, "Rewards"):
    1 for the gold option's text (rewards.accuracy_reward), and for any answer evaluation's matching
    counts as the gold option (`B`, `(B)`, `b`, a standalone `B`), so training rewards what
    evaluation scores. The answer is the reward's extraction (the first one-line answer span)."""
    if accuracy_reward(completion, gold):
        return 1.0
    return 1.0 if is_correct(extract_answer_text(completion), gold_letter, choices) else 0.0


# ---------------------------------------------------------------------------------------------
# Aggregation


def _accuracy(rows: Sequence[Mapping[str, Any]]) -> float:
    return sum(1 for r in rows if r["correct"]) / len(rows)


def _mean(values: Iterable[float]) -> float:
    total, count = 0.0, 0
    for value in values:
        total += value
        count += 1
    return total / count


def _group(predictions: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for p in predictions:
        groups.setdefault(p[key], []).append(p)
    return {k: groups[k] for k in sorted(groups)}


def _cv_bench_official(predictions: Sequence[Mapping[str, Any]]) -> dict:
    name = "((acc_ADE20K + acc_COCO)/2 + acc_Omni3D)/2"
    by_source = _group(predictions, "source")
    unknown = [s for s in by_source if s not in CV_BENCH_SOURCES]
    if unknown:
        return {"name": name, "score": None, "detail": f"unknown source(s): {', '.join(unknown)}"}
    missing = [s for s in CV_BENCH_SOURCES if s not in by_source]
    if missing:
        return {"name": name, "score": None, "detail": f"no predictions from source(s): {', '.join(missing)}"}
    acc = {s: _accuracy(by_source[s]) for s in CV_BENCH_SOURCES}
    return {"name": name, "score": ((acc["ADE20K"] + acc["COCO"]) / 2 + acc["Omni3D"]) / 2}


def score_predictions(predictions: Sequence[Mapping[str, Any]], benchmark: str) -> dict:
    """Scores of one evaluation run; a prediction is {task, source, correct, format_ok}.

    Returns {n, accuracy, format_rate, by_task: {task: {n, accuracy}}, official: {name, score[, detail]}};
    `detail` (the reason) is present only when the official score is None.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    if not predictions:
        raise ValueError("no predictions to score")
    by_task = {task: {"n": len(rows), "accuracy": _accuracy(rows)} for task, rows in _group(predictions, "task").items()}
    accuracy = _accuracy(predictions)
    if benchmark == "cv-bench":
        official = _cv_bench_official(predictions)
    elif benchmark == "blink":
        official = {"name": "mean of subtask accuracies", "score": _mean(t["accuracy"] for t in by_task.values())}
    else:
        official = {"name": "accuracy", "score": accuracy}
    return {
        "n": len(predictions),
        "accuracy": accuracy,
        "format_rate": sum(1 for p in predictions if p["format_ok"]) / len(predictions),
        "by_task": by_task,
        "official": official,
    }
