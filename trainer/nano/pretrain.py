"""Base pre-training of the embedded model: language modelling of the documented corpus mixture
(trainer/nano/corpus.py: scene descriptions, generic markup, other-domain question/answer text;
never a question of the four evaluated families).

    python -m trainer.nano.pretrain --data build/nano/pretrain --questions build/nano/spatial-synth \\
        --out build/nano/base [--preset nano --steps 1500 --batch-size 16 --lr 2e-3 --seed 0 --device auto]

1. trains the byte-level BPE tokenizer on the pre-training documents plus the question split's
   prompt texts (r1 and direct templates) and writes a random-initialised model of the preset to
   `<out>/init` (trainer.init_model);
2. trains it on the documents (trainer.nano.lm: loss on the document tokens only), tracking the
   validation loss and the image gap on held-out scenes, and writes the base model to
   `<out>/model` (safetensors; export it with trainer.export). Run again with the same `--out`, it
   resumes from `<out>/checkpoint`.

`--data` is a folder written by `npm run synth -- --describe`: its train split gives the
documents, its val split the held-out scenes. `--questions` is a spatial-synth folder whose train
split gives the prompt texts the tokenizer should know.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..init_model import init_model
from .corpus import Mixture, mixture_report, pretrain_examples, prompt_texts, tokenizer_corpus
from .lm import LMConfig, train

# The image bound of the nano model: 224x224 pixels (16x16 patches, 64 image tokens). Also the
# bound its preprocessor_config keeps for serving.
MAX_PIXELS = 224 * 224


def build_init(examples: list[dict], questions: Path | None, out: Path, preset: str, seed: int, max_pixels: int) -> Path:
    docs = [e["target"] for e in examples]
    prompts = list(prompt_texts(questions)) if questions else []
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        return out  # made by an earlier, interrupted run with the same arguments
    return init_model(preset, out, seed=seed, corpus=tokenizer_corpus(docs, prompts), preprocessor={
        "max_pixels": max_pixels, "size": {"shortest_edge": 3136, "longest_edge": max_pixels},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="spatial-synth folder written with --describe")
    parser.add_argument("--questions", type=Path, help="spatial-synth folder whose train prompts the tokenizer learns")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-items", type=int, default=0, help="use only the first N scenes (0 = all)")
    parser.add_argument("--val-items", type=int, default=128, help="held-out scenes (val split) for the validation losses")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--workers", type=int, default=0, help="batch-encoding worker processes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=200, help="checkpoint every N steps (resume point)")
    parser.add_argument("--eval-every", type=int, default=0, help="validation losses and image gap every N steps")
    parser.add_argument("--max-seconds", type=float, default=0, help="stop early, saving everything, after this long")
    parser.add_argument("--stop-at", type=int, default=0,
                        help="end after this step, with the schedule of --steps (a checkpoint of a longer run)")
    parser.add_argument("--fit-to-time", action="store_true",
                        help="with --max-seconds: shorten --steps to what the measured speed fits, so the schedule completes")
    parser.add_argument("--length-window", type=int, default=LMConfig.length_window,
                        help="batch documents of similar length within runs of this many batches (0 = random batches)")
    parser.add_argument("--init-only", action="store_true",
                        help="write the tokenizer and the random-initialised model to <out>/init, and stop")
    parser.add_argument("--freeze-vision", action="store_true",
                        help="keep the vision tower as it is (a tower pre-trained by trainer.nano.vision)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixture", type=json.loads, default={},
                        help='shares replacing the corpus defaults, as JSON: \'{"text_qa": 0.3, "description": 0.5}\'')
    parser.add_argument("--continue-from", type=Path,
                        help="a model folder to keep training (a second stage; no new tokenizer or initial model)")
    args = parser.parse_args(argv)

    try:
        mixture = Mixture(**args.mixture)
    except (TypeError, ValueError) as error:
        parser.error(f"--mixture: {error}")
    examples = pretrain_examples(args.data, "train", seed=args.seed, max_items=args.max_items, mixture=mixture)
    # Held-out scenes in their description documents: the validation loss and the image gap.
    held_out = pretrain_examples(args.data, "val", seed=args.seed + 1, max_items=args.val_items,
                                 mixture=Mixture(description=1.0, markup=0.0, text_qa=0.0, image_qa=0.0))
    report = mixture_report(examples)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixture.json").write_text(json.dumps({"mixture": mixture.__dict__, "measured": report}, indent=2) + "\n")
    print(f"[pretrain] {len(examples)} documents: {json.dumps(report.get('kinds', report))}", file=sys.stderr)
    if args.continue_from:
        init = args.continue_from
    else:
        init = build_init(examples, args.questions, args.out / "init", args.preset, args.seed, args.max_pixels)
        print(f"[pretrain] initial model and tokenizer in {init}", file=sys.stderr)
        if args.init_only:
            return 0
    config = LMConfig(model=str(init), out=str(args.out), steps=args.steps, batch_size=args.batch_size,
                      learning_rate=args.lr, warmup_steps=args.warmup, max_pixels=args.max_pixels,
                      seed=args.seed, threads=args.threads, device=args.device, workers=args.workers,
                      save_every=args.save_every, eval_every=args.eval_every, max_seconds=args.max_seconds,
                      fit_to_time=args.fit_to_time, stop_at=args.stop_at,
                      length_window=args.length_window, freeze_vision=args.freeze_vision)
    model = train(config, examples, name="pretrain", validation=held_out)
    print(f"[pretrain] base model in {model}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
