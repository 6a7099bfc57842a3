"""The paper's rewards and the completion parser (shared rules: the TypeScript side computes the
same values, pinned by test/vectors/rewards.json).

Format (docs/method.md, "Rewards"): `"<think>" + completion` must *fully* match
`<think>.*?</think>\\s*<answer>.*?</answer>` with dot-matches-newline; anything after `</answer>`
fails it. Accuracy: the first `<answer>(.*?)</answer>` span (no dot-all), stripped, or else the
whole completion stripped, equal (case-sensitive) to the gold option text; for a question that
lists lettered choices, `scoring.lettered_accuracy_reward` also takes an answer that names the gold
option by its letter. Accuracy does not require the format. Both are computed on the completion alone (the prompt's `<think>` is not part
of it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
ANSWER_SPAN = re.compile(r"<answer>(.*?)</answer>")
# Self-reflection words counted per completion for the "aha moment" curves (docs/method.md, "Self-reflection").
# ASCII word boundaries, so the TypeScript regex (whose \b and \w are ASCII) decides alike.
REFLECTION_PATTERN = re.compile(
    r"\b(?:wait|re-?check\w*|check\w*|verif(?:y|ied|ies|ying|ication)|aha|possibl[ey]|yet|re-?evaluat\w*)\b",
    re.IGNORECASE | re.ASCII,
)
THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def format_reward(completion: str) -> float:
    return 1.0 if FORMAT_PATTERN.fullmatch("<think>" + completion) else 0.0


def extract_answer_text(completion: str) -> str:
    """What the accuracy reward compares: the first single-line answer span, else everything."""
    match = ANSWER_SPAN.search(completion)
    return match.group(1).strip() if match else completion.strip()


def accuracy_reward(completion: str, gold: str) -> float:
    """For a question that lists lettered choices, see scoring.lettered_accuracy_reward."""
    return 1.0 if extract_answer_text(completion) == gold.strip() else 0.0


def length_reward(num_tokens: int, weight: float = 0.001) -> float:
    """Tried by the paper and found ineffective; off unless a job enables it."""
    return weight * num_tokens


def has_reflection(text: str) -> bool:
    return REFLECTION_PATTERN.search(text) is not None


@dataclass(frozen=True)
class ParsedCompletion:
    think: str | None
    answer: str | None
    format_ok: bool


def parse_completion(completion: str, prompt_opens_think: bool) -> ParsedCompletion:
    """Split a completion into its think and answer text for display.

    `think` is the first think block (or what follows an unclosed `<think>`), `answer` the first
    answer block (multi-line allowed), both stripped; None where absent. When the prompt opened the
    think block (template r1), the completion is read as if it began with `<think>`.
    """
    text = "<think>" + completion if prompt_opens_think else completion
    think = THINK_BLOCK.search(text)
    answer = ANSWER_BLOCK.search(text)
    return ParsedCompletion(
        think=think.group(1).strip() if think else None,
        answer=answer.group(1).strip() if answer else None,
        format_ok=format_reward(completion) == 1.0,
    )
