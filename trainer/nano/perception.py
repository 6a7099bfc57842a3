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

`relations` asks whether the base reads relations off the picture: each relation fact of the
scene's description ("The pink sphere is to the right of the brown cube.", above/below, closer to
the camera, closer to another object) is put right after the picture, alone, and beside it the
same sentence made false (right/left, above/below, closer to/farther from flipped; for closer to
another object, the two candidates swapped).
The fact counts as read when the model gives the true sentence the higher log-probability. Alone,
because in a description the left-to-right object list comes first and gives horizontal relations
away. The same comparison with another scene's picture is the text-only level (about 50%).
A control, `colour`, does the same with the object list and the list with its first object's
colour changed to one absent from the scene: it shows the comparison detects what a model does
read off its picture.
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
from .corpus import COLOR_NAMES, description_of

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


FLIPS = {"left": "right", "right": "left", "above": "below", "below": "above",
         "closer to": "farther from", "farther from": "closer to"}
FLIP = re.compile(r"\b(left|right|above|below|closer to|farther from)\b")
RELATION_KINDS = ("horizontal", "vertical", "depth", "distance")


DISTANCE = re.compile(r"^(.+?) is closer to (.+?) than (.+?) is\.$")


def flipped(sentence: str) -> str:
    """The sentence made false: for a distance fact ("A is closer to R than B is.") A and B swap
    places, since the descriptions only ever say "closer to" there; otherwise every relation word
    turns into its opposite."""
    distance = DISTANCE.match(sentence)
    if distance:
        a, reference, b = distance.groups()
        return f"{b[0].upper()}{b[1:]} is closer to {reference} than {a[0].lower()}{a[1:]} is."
    return FLIP.sub(lambda m: FLIPS[m.group(1)], sentence)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


def held_out_scenes(data: Path, split: str, items: int, with_relations: bool = False) -> list[tuple]:
    """(image path, gold object-list sentence) of the first `items` scenes of a described split;
    with `with_relations`, a third element: the scene's (kind, sentence) relation facts."""
    scenes = []
    with (data / f"{split}.jsonl").open() as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            facts = description_of(record)["facts"]
            gold = next(f["text"] for f in facts if f["kind"] == "objects")
            relations = [(f["kind"], f["text"]) for f in facts if f["kind"] in RELATION_KINDS]
            scenes.append((str(data / record["images"][0]), gold, relations) if with_relations else
                          (str(data / record["images"][0]), gold))
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


@torch.no_grad()
def sentence_logprobs(model, processor, images: list, sentences: list[str], device: str) -> list[float]:
    """Sum of the log-probabilities of each sentence's tokens right after its picture."""
    processor.tokenizer.padding_side = "right"
    inputs = processor(text=[IMAGE_PLACEHOLDER + s for s in sentences], images=images, return_tensors="pt",
                       padding=True).to(device)
    logits = model(**inputs).logits[:, :-1].float()
    targets = inputs["input_ids"][:, 1:]
    token = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    # Only the sentence: after the image block's last token, not padding.
    end_of_image = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    after = (inputs["input_ids"] == end_of_image).long().cumsum(-1)[:, :-1] > 0
    mask = after & inputs["attention_mask"][:, 1:].bool()
    return (token * mask).sum(-1).tolist()


@torch.no_grad()
def prefers_true(model, processor, pictures: list, pairs: list[tuple[str, str, int]], batch_size: int = 32,
                 device: str = "cpu") -> list[tuple[float, float]]:
    """For each (true sentence, false sentence, scene index) pair: 1.0 where the model gives the true
    sentence the higher log-probability right after the scene's picture, else 0.0; and the same
    after the next scene's picture (the text-only level)."""
    cases = [(true, false, picture) for true, false, n in pairs for picture in (n, (n + 1) % len(pictures))]
    reads = []
    for i in range(0, len(cases), batch_size):
        chunk = cases[i:i + batch_size]
        scores = sentence_logprobs(model, processor, [pictures[p] for *_, p in chunk for _ in range(2)],
                                   [t for true, false, _ in chunk for t in (true, false)], device)
        reads += [float(scores[2 * j] > scores[2 * j + 1]) for j in range(len(chunk))]
    return list(zip(reads[0::2], reads[1::2], strict=True))


@torch.no_grad()
def relation_probe(model_dir: Path, data: Path, split: str = "val", items: int = 64, batch_size: int = 32,
                   device: str = "cpu") -> dict:
    """Share of relation facts whose true sentence the model prefers to the flipped one, per kind,
    with the scene's own picture and with another scene's (the module's docstring)."""
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    processor = load_processor(model_dir)
    scenes = held_out_scenes(data, split, items, with_relations=True)
    pictures = []
    for path, _, _ in scenes:
        with Image.open(path) as image:
            pictures.append(image.convert("RGB"))
    colours = sorted(COLOR_NAMES)
    pairs = []  # (kind, true sentence, false sentence, scene)
    for n, (_, gold, relations) in enumerate(scenes):
        pairs += [(kind, sentence, flipped(sentence), n) for kind, sentence in relations]
        objects = parse_objects(gold)[1]
        absent = [c for c in colours if c not in {c for _, c, _ in objects}]
        if objects and absent:
            first = re.search(rf"\b{objects[0][0]} ({objects[0][1]})\b", gold)
            pairs.append(("colour", gold, gold[:first.start(1)] + absent[n % len(absent)] + gold[first.end(1):], n))
    reads = prefers_true(model, processor, pictures, [(true, false, n) for _, true, false, n in pairs], batch_size, device)
    right: dict[tuple[str, str], list[float]] = {}
    for (kind, *_), (own, other) in zip(pairs, reads, strict=True):
        right.setdefault((kind, "own"), []).append(own)
        right.setdefault((kind, "other"), []).append(other)
    report = {}
    for kind in (*RELATION_KINDS, "colour"):
        own, other = right.get((kind, "own"), []), right.get((kind, "other"), [])
        if own:
            report[kind] = {"facts": len(own), "own_picture": sum(own) / len(own),
                            "other_picture": sum(other) / len(other)}
    every_own = [v for (kind, which), values in right.items() if which == "own" and kind != "colour" for v in values]
    every_other = [v for (kind, which), values in right.items() if which == "other" and kind != "colour" for v in values]
    report["all"] = {"facts": len(every_own), "own_picture": sum(every_own) / max(len(every_own), 1),
                     "other_picture": sum(every_other) / max(len(every_other), 1)}
    return report


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
    report["relations"] = relation_probe(args.model, args.data, args.split, args.items, device=args.device)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    s, c = report["scores"], report["chance"]
    print(" ".join(f"{k} {s[k]:.2f} (chance {c[k]:.2f})" for k in s), file=sys.stderr)
    print("relations read off the picture: " + ", ".join(
        f"{k} {v['own_picture']:.2f} (another picture {v['other_picture']:.2f}, {v['facts']} facts)"
        for k, v in report["relations"].items()), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
