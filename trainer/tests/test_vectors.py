"""The committed shared vectors and the committed random model are what our commands produce."""

from __future__ import annotations

import hashlib
from pathlib import Path

from trainer.export import export
from trainer.init_model import init_model
from trainer.vectors import DEFAULT_MODEL
from trainer.vectors import main as vectors_main

ROOT = Path(__file__).resolve().parents[2]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "README.md"
    }


def test_committed_vectors_are_current():
    assert vectors_main(["--check"]) == 0


def test_committed_tiny_random_model_is_reproducible(tmp_path):
    # The documented command (docs/architecture.md, "Shipped model folders"): init with seed 0, then export every dtype.
    out = tmp_path / "tiny-random"
    init_model("tiny", out, seed=0)
    export(out, out, ["fp32", "fp16", "q8", "q4"])
    assert _digest(out) == _digest(DEFAULT_MODEL)
