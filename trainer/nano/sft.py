"""The SFT baseline: the base model fine-tuned on training questions with direct answers (the
paper's "+SFT" row), as a comparison for GRPO.

    python -m trainer.nano.sft --model build/nano/base/model --dataset build/nano/spatial-synth \\
        --out build/nano/sft [--steps 300 --batch-size 16 --lr 5e-4]

Each training item becomes the `direct` prompt (prompts.py: the conversation without the sentence
about thinking, ending in "Assistant: ") with the CV-Bench style question and lettered choices
(the text `/evaluate` sends), and the target is the gold option text (`--answer letter`: the gold
option's letter, for a base that answers with letters) followed by <|endoftext|>; the loss covers
the target only (trainer.lm). Evaluate it with `--template direct`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import read_split
from ..prompts import IMAGE_PLACEHOLDER, render_prompt
from .lm import LMConfig, train

ANSWERS = ("text", "letter")


def sft_examples(dataset_dir: str | Path, split: str = "train", max_items: int = 0, answer: str = "text") -> list[dict]:
    if answer not in ANSWERS:
        raise ValueError(f"answer {answer!r}: choose one of {ANSWERS}")
    items, _ = read_split(dataset_dir, split, max_items)
    examples = []
    for item in items:
        prompt = render_prompt("direct", item.prompt, has_image=True)
        assert prompt.startswith(IMAGE_PLACEHOLDER)
        target = item.answer_text if answer == "text" else item.answer.strip("() ")
        examples.append({"image": str(item.image), "prefix": prompt[len(IMAGE_PLACEHOLDER):], "target": target})
    return examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="base model folder (safetensors)")
    parser.add_argument("--dataset", required=True, type=Path, help="spatial-synth folder (train split)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-items", type=int, default=0)
    parser.add_argument("--answer", choices=ANSWERS, default="text", help="the target: the gold option's text or its letter")
    parser.add_argument("--val-split", default="val", help="split for a validation loss ('' = none)")
    parser.add_argument("--max-pixels", type=int, default=224 * 224)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--workers", type=int, default=0, help="batch-encoding worker processes")
    parser.add_argument("--save-every", type=int, default=200, help="checkpoint every N steps (resume point)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    examples = sft_examples(args.dataset, "train", args.max_items, args.answer)
    validation = sft_examples(args.dataset, args.val_split, 64, args.answer) if args.val_split else None
    config = LMConfig(model=str(args.model), out=str(args.out), steps=args.steps, batch_size=args.batch_size,
                      learning_rate=args.lr, warmup_steps=args.warmup, max_pixels=args.max_pixels, seed=args.seed,
                      threads=args.threads, device=args.device, workers=args.workers, save_every=args.save_every)
    model = train(config, examples, name="sft", validation=validation)
    print(f"[sft] model in {model}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
