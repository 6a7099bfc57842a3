"""Base pre-training of the embedded model: language modelling of images paired with scene
descriptions (no questions, no answers, no think/answer tags; see nano_corpus.py).

    python -m trainer.nano.pretrain --data build/nano/pretrain --questions build/nano/spatial-synth \\
        --out build/nano/pretrain-run [--preset nano --steps 1500 --batch-size 16 --lr 2e-3 --seed 0]

1. trains the byte-level BPE tokenizer on the pre-training documents plus the question split's
   prompt texts (r1 and direct templates) and writes a random-initialised model of the preset to
   `<out>/init` (trainer.init_model);
2. trains it on the documents (trainer.lm: loss on the description tokens only) and writes the
   base model to `<out>/model` (safetensors; export it with trainer.export).

`--data` is a folder written by `npm run synth -- --describe` (its train split); `--questions` a
spatial-synth folder whose train split gives the prompt texts the tokenizer should know.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from ..init_model import init_model
from .corpus import pretrain_examples, prompt_texts, tokenizer_corpus, vocabulary_names
from .lm import LMConfig, train

# Images are resized to at most 168x168 (12x12 patches, 36 image tokens): small enough for CPU
# training, and the bound the shipped model's preprocessor_config keeps for serving.
MAX_PIXELS = 168 * 168


def build_init(data: Path, questions: Path | None, out: Path, preset: str, seed: int, max_pixels: int) -> Path:
    docs = [e["target"] for e in pretrain_examples(data, seed=seed)]
    prompts = list(prompt_texts(questions)) if questions else []
    corpus = tokenizer_corpus(docs, prompts)
    folder = init_model(preset, out, seed=seed, corpus=corpus, preprocessor={
        "max_pixels": max_pixels, "size": {"shortest_edge": 3136, "longest_edge": max_pixels},
    })
    return folder


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
    parser.add_argument("--val-items", type=int, default=64, help="scenes held out for a validation loss")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=0, help="also save the model every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markup-share", type=float, default=0.5, help="share of markup documents (the rest prose)")
    parser.add_argument("--sections-share", type=float, default=0.0,
                        help="share of sections documents (nano_corpus.make_sections_document); the rest as --markup-share says")
    parser.add_argument("--names-from-vocabulary", action="store_true",
                        help="sections documents draw names from the whole tokenizer vocabulary (nano_corpus.vocabulary_names)")
    parser.add_argument("--continue-from", type=Path,
                        help="a model folder to keep training (a second stage; no new tokenizer or initial model)")
    args = parser.parse_args(argv)

    if args.continue_from:
        init = args.continue_from
    else:
        init = build_init(args.data, args.questions, args.out / "init", args.preset, args.seed, args.max_pixels)
        print(f"[pretrain] initial model and tokenizer in {init}", file=sys.stderr)
    names = vocabulary_names(Path(init) / "tokenizer.json") if args.names_from_vocabulary else None
    examples = pretrain_examples(args.data, seed=args.seed, max_items=args.max_items, markup_share=args.markup_share,
                                 sections_share=args.sections_share, names_pool=names)
    random.Random(args.seed).shuffle(examples)
    validation, examples = examples[:args.val_items], examples[args.val_items:]
    config = LMConfig(model=str(init), out=str(args.out), steps=args.steps, batch_size=args.batch_size,
                      learning_rate=args.lr, warmup_steps=args.warmup, max_pixels=args.max_pixels,
                      seed=args.seed, threads=args.threads, save_every=args.save_every)
    model = train(config, examples, name="pretrain", validation=validation)
    print(f"[pretrain] base model in {model}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
