"""Does the base model see? A perception probe on held-out described scenes.

    python -m trainer.nano.perception --model build/nano/base/model --data build/nano/pretrain --split val \\
        [--items 64 --out probe.json]

For each scene the model continues `<image block>In the picture there are` greedily, and the
object list it writes ("3 objects, from left to right: a small red cube, a large blue sphere and
...") is scored against the scene's own description (`npm run synth -- --describe`), fact by fact:

- `count`: the number of objects is right;
- `colors`, `shapes`: Jaccard overlap of the sets of colours / shapes named with the true sets;
- `order`: the share of positions of the left-to-right list whose colour and shape are right;
- `exact`: the whole list is right.

Chance levels are printed beside them (the same scores for a caption of another held-out scene),
so a model that writes plausible text without looking scores near chance, not zero.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from PIL import Image

from ..prompts import IMAGE_PLACEHOLDER
from .corpus import description_of

OPENING = "In the picture there are"
LIST = re.compile(r"(\d+) objects?, from left to right: (.*?)(?:\.|$)")
OBJECT = re.compile(r"(?:a|an) (small|large) (\w+) (cube|sphere|cylinder|cone)")


def parse_objects(text: str) -> tuple[int | None, list[tuple[str, str, str]]]:
    """(count, [(size, colour, shape), ...]) of an object-list sentence; (None, []) if there is none."""
    match = LIST.search(text)
    if not match:
        return None, []
    return int(match.group(1)), OBJECT.findall(match.group(2))


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def score(predicted: str, gold: str) -> dict[str, float]:
    count, objects = parse_objects(predicted)
    gold_count, gold_objects = parse_objects(gold)
    if gold_count is None:
        raise ValueError(f"the gold description has no object list: {gold[:80]!r}")
    pairs = [(c, s) for _, c, s in objects]
    gold_pairs = [(c, s) for _, c, s in gold_objects]
    hits = sum(1 for p, g in zip(pairs, gold_pairs, strict=False) if p == g)
    return {
        "count": float(count == gold_count),
        "colors": _jaccard({c for c, _ in pairs}, {c for c, _ in gold_pairs}),
        "shapes": _jaccard({s for _, s in pairs}, {s for _, s in gold_pairs}),
        "order": hits / max(len(gold_pairs), len(pairs), 1),
        "exact": float(pairs == gold_pairs),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


def held_out_scenes(data: Path, split: str, items: int) -> list[tuple[str, str]]:
    """(image path, gold object-list sentence) of the first `items` scenes of a described split."""
    scenes = []
    with (data / f"{split}.jsonl").open() as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            facts = description_of(record)["facts"]
            gold = next(f["text"] for f in facts if f["kind"] == "objects")
            scenes.append((str(data / record["images"][0]), gold))
            if len(scenes) >= items:
                break
    if not scenes:
        raise ValueError(f"no scenes in {data}/{split}.jsonl")
    return scenes


@torch.no_grad()
def probe(model_dir: Path, data: Path, split: str = "val", items: int = 64, max_pixels: int | None = None,
          batch_size: int = 16, device: str = "cpu", max_new_tokens: int = 80) -> dict:
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    overrides = {"max_pixels": max_pixels} if max_pixels else {}
    processor = load_processor(model_dir, **overrides)
    processor.tokenizer.padding_side = "left"
    eos = [processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    scenes = held_out_scenes(data, split, items)
    rows, chance, samples = [], [], []
    for i in range(0, len(scenes), batch_size):
        chunk = scenes[i:i + batch_size]
        images = []
        for path, _ in chunk:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        inputs = processor(text=[IMAGE_PLACEHOLDER + OPENING] * len(chunk), images=images, return_tensors="pt",
                           padding=True).to(device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                pad_token_id=processor.tokenizer.pad_token_id)
        texts = processor.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for j, ((_, gold), text) in enumerate(zip(chunk, texts, strict=True)):
            predicted = OPENING + text
            rows.append(score(predicted, gold))
            other = scenes[(i + j + 1) % len(scenes)][1]
            chance.append(score(other, gold))
            if len(samples) < 6:
                samples.append({"gold": gold, "predicted": predicted.split(".")[0] + "."})
    return {"items": len(rows), "scores": _mean(rows), "chance": _mean(chance), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a folder written by npm run synth -- --describe")
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = probe(args.model, args.data, args.split, args.items, device=args.device)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    s, c = report["scores"], report["chance"]
    print(" ".join(f"{k} {s[k]:.2f} (chance {c[k]:.2f})" for k in s), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
