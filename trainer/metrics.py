"""The job folder's JSON-lines files (docs/training.md): per-step metrics and sampled rollouts.

Lines are written whole and flushed at once, so the job manager that follows the files never
reads half a record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Our metric name -> TRL's log key (TRL 1.16). The reward function names are "accuracy" and "format".
TRL_KEYS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "rewards/accuracy": "rewards/accuracy/mean",
    "rewards/format": "rewards/format/mean",
    "completion_length": "completions/mean_length",
    "kl": "kl",
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "entropy": "entropy",
    "clipped_ratio": "completions/clipped_ratio",
}


class JsonlWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False, default=_jsonable) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def step_record(step: int, total_steps: int, logs: dict[str, Any], reflection_rate: float, seconds: float,
                completion_tokens: int, answer_top_share: float | None = None) -> dict[str, Any]:
    """One metrics.jsonl line from TRL's logs of an optimizer step plus what we measure ourselves."""
    record: dict[str, Any] = {"step": step, "total_steps": total_steps}
    for ours, theirs in TRL_KEYS.items():
        record[ours] = _number(logs.get(theirs))
    record["reflection_rate"] = reflection_rate
    record["seconds"] = seconds
    record["rollout_tokens_per_second"] = completion_tokens / seconds if seconds > 0 else None
    record["answer_top_share"] = answer_top_share
    return record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
