"""Can the model say where a named object is? A binding test of the nano base.

    python -m trainer.nano.binding --model build/nano/vision/model --data build/nano/pretrain \\
        --out build/binding [--readout-steps 1500] [--decoder-steps 1500 --fresh-decoder] \\
        [--form sentence|colour|relation|far --answer-only --balanced]

The relation probe (`trainer.nano.perception`) found that the base reads the colours in its
picture but no relation, while the vision stage's linear heads read each object's position off the
image tokens. Between the two lies one step: find the tokens of the object a sentence names and
hand on where they are. This module measures that step alone, on the simplest statement that
needs it:

    "The red cube is in the left half of the picture."

for each object whose colour-and-shape name is unique in its scene and whose centre is not near
the middle (more than `MARGIN` of the width away). A statement counts as read when the model gives
it a higher log-probability than the same sentence with left and right swapped; with another
scene's picture the same comparison is the text-only level (about 50%).

Two learners, each trained on the training scenes' statements and scored on held-out scenes:

- `readout`: one attention head over the frozen vision tower's tokens, its query made from the
  object's colour and shape, its answer left or right. Nothing but the tower's features and one
  lookup: the upper bound of what a decoder could read with a single attention step.
- `decoder`: the model's own language model trained on the statements as documents after their
  picture (tower frozen, `trainer.nano.lm`), from the given model or, with `--fresh-decoder`, from a
  newly initialised decoder beside the given tower.

A readout that reads the statements while the decoder does not puts the problem in the decoder
(how it learns to look up a named token), not in what the tower's tokens carry.

Options that take the decoder's difficulty apart (docs/embedded-model.md, "The binding test"):
`--form` (FORMS: the sentence above, the bare `red left.`, or a relation between two named
objects, near or far from the answer), `--answer-only` (no loss on the words before the answer, so the loss is not spent on
naming objects) and `--balanced` (as many statements against the shortcut as with it). Every
report gives `against_shortcut`: the accuracy on the held-out statements whose answer differs from
what a model that does not find the named object would say (Statement.shortcut).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from .vision import image_features, picture_size, read_scenes

MARGIN = 0.08  # objects whose centre is within 8% of the width of the middle are left out
HALVES = {"left": "right", "right": "left"}


# How a statement names its object and where the answer word stands:
#   sentence  "The red cube is in the left half of the picture." The word `left` is predicted at
#             `the`, five tokens after the name: the decoder must first carry the name there.
#   colour    "red left." for an object whose colour is unique in its scene. The word `left` is
#             predicted at `red` itself: the lookup needs no earlier step, as in the readout.
#   relation  "Seen from the brown cube, the pink sphere is on the right." for two objects with
#             unique names more than MARGIN of the width apart: two lookups and a comparison, with
#             the answer after both names (a causal model cannot compare with an object it has not
#             been told yet).
#   far       the relation with words between the names and the answer, "Seen from the brown cube,
#             the pink sphere, one of the objects on the plain ground of this picture, is on the
#             right.": does the lookup hold when the names are further back, as in a question?
FORMS = ("sentence", "colour", "relation", "far")
FAR = "one of the objects on the plain ground of this picture,"


class Statement(NamedTuple):
    colour: str
    shape: str
    half: str  # the answer: left or right
    reference: str = ""  # the relation form's other object ("brown cube")
    shortcut: str = ""  # what a model that does not find the named object(s) would answer


def crowd_half(record: dict) -> str:
    """The half the scene's objects lie in on average: the answer of a model that pools every
    object's position without finding the named one. Right for about two statements in three."""
    width, _ = picture_size(record)
    xs = [o["center_2d"][0] / width for o in record["meta"]["objects"]]
    return "left" if sum(xs) / len(xs) < 0.5 else "right"


def statements(record: dict, form: str = "sentence") -> list[Statement]:
    """The statements of a scene: for each object with a unique name (colour and shape, or with the
    `colour` form its colour) that stands clearly in one half of the picture, its half, with the
    crowd's half as the shortcut; with the `relation` form, for each ordered pair of uniquely named
    objects clearly apart, which side of the second the first is on, with the first's own half of
    the picture as the shortcut."""
    width, _ = picture_size(record)
    names = [(o["color"], o["shape"]) for o in record["meta"]["scene"]["objects"]]
    keys = [c for c, _ in names] if form == "colour" else names
    xs = [placed["center_2d"][0] / width for placed in record["meta"]["objects"]]
    unique = [keys.count(key) == 1 for key in keys]
    if form in ("relation", "far"):
        return [Statement(*names[a], "left" if xs[a] < xs[b] else "right", " ".join(names[b]),
                          "left" if xs[a] < 0.5 else "right")
                for a in range(len(names)) for b in range(len(names))
                if a != b and unique[a] and unique[b] and abs(xs[a] - xs[b]) > MARGIN]
    crowd = crowd_half(record)
    return [Statement(*name, "left" if x < 0.5 else "right", "", crowd)
            for name, x, alone in zip(names, xs, unique, strict=True) if alone and abs(x - 0.5) > MARGIN]


def balanced(records: list[dict], seed: int = 0, form: str = "sentence") -> list[tuple[int, Statement]]:
    """(scene index, statement) with as many statements whose answer is the shortcut's as statements
    whose answer is not, so that the shortcut (pooling every object's position; for relations, the
    first object's own half) tells nothing and only finding the named objects lowers the loss."""
    agree, disagree = [], []
    for n, record in enumerate(records):
        for s in statements(record, form):
            (agree if s.half == s.shortcut else disagree).append((n, s))
    rng = random.Random(seed)
    keep = min(len(agree), len(disagree))
    return rng.sample(agree, keep) + rng.sample(disagree, keep)


def sentence(statement: Statement, form: str = "sentence", half: str | None = None) -> str:
    """The statement's text (with `half`, the same text with that answer instead)."""
    colour, shape, answer, reference, _ = statement
    answer = half or answer
    if form == "colour":
        return f"{colour} {answer}."
    if form == "relation":
        return f"Seen from the {reference}, the {colour} {shape} is on the {answer}."
    if form == "far":
        return f"Seen from the {reference}, the {colour} {shape}, {FAR} is on the {answer}."
    return f"The {colour} {shape} is in the {answer} half of the picture."


def examples_of(records: list[dict], root: Path, balance: bool = False, seed: int = 0,
                form: str = "sentence", answer_only: bool = False) -> list[dict]:
    """`trainer.nano.lm` examples: the picture, then one statement (one example per statement; with
    `balance`, the `balanced` subset). With `answer_only` the words before the half are the prefix,
    so the loss is on the half and what follows it, not on naming the object."""
    chosen = (balanced(records, seed, form) if balance else
              [(n, s) for n, r in enumerate(records) for s in statements(r, form)])
    examples = []
    for n, s in chosen:
        text = sentence(s, form)
        cut = text.rindex(f" {s.half}") if answer_only else 0
        examples.append({"image": str(root / records[n]["images"][0]), "prefix": text[:cut], "target": text[cut:]})
    return examples


# ---------------------------------------------------------------------------------------------
# The readout: one attention head over frozen image tokens.

class Readout(torch.nn.Module):
    """Left or right for a named object: its colour and shape embeddings make a query, which attends
    over the picture's image tokens; the attended value decides."""

    def __init__(self, width: int, colours: int, shapes: int, dim: int = 64):
        super().__init__()
        self.colour = torch.nn.Embedding(colours, dim)
        self.shape = torch.nn.Embedding(shapes, dim)
        self.norm = torch.nn.LayerNorm(width)
        self.key = torch.nn.Linear(width, dim)
        self.value = torch.nn.Linear(width, dim)
        self.out = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, 2))

    def forward(self, tokens: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(tokens)  # (batch, image tokens, width)
        query = self.colour(colour) + self.shape(shape)  # (batch, dim)
        weights = torch.softmax(torch.einsum("bd,btd->bt", query, self.key(tokens)) / query.shape[-1] ** 0.5, -1)
        return self.out(torch.einsum("bt,btd->bd", weights, self.value(tokens)))


@torch.no_grad()
def tower_tokens(model, processor, records: list[dict], root: Path, batch_size: int = 64) -> torch.Tensor:
    """The merged image tokens the decoder receives, (scenes, tokens, width); all pictures of one size."""
    visual = model.model.visual.eval()
    out = []
    for i in range(0, len(records), batch_size):
        images = []
        for record in records[i:i + batch_size]:
            with Image.open(root / record["images"][0]) as image:
                images.append(image.convert("RGB"))
        inputs = processor(images=images, return_tensors="pt")
        features = image_features(visual, inputs["pixel_values"], inputs["image_grid_thw"])
        out.append(features.reshape(len(images), -1, features.shape[-1]))
    return torch.cat(out)


def readout_rows(records: list[dict], colours: dict, shapes: dict) -> list[tuple[int, int, int, int]]:
    """(scene, colour index, shape index, 1 if right else 0) of every statement."""
    return [(n, colours[s.colour], shapes[s.shape], int(s.half == "right")) for n, r in enumerate(records)
            for s in statements(r)]


def train_readout(train_tokens: torch.Tensor, train_rows: list, val_tokens: torch.Tensor, val_rows: list,
                  colours: int, shapes: int, steps: int, batch_size: int = 256, lr: float = 3e-3, seed: int = 0,
                  log=None) -> dict:
    """Train the readout; held-out accuracy with each scene's own picture and with another's."""
    torch.manual_seed(seed)
    readout = Readout(train_tokens.shape[-1], colours, shapes)
    optimizer = torch.optim.AdamW(readout.parameters(), lr=lr, weight_decay=0.01)
    rows = torch.tensor(train_rows)
    val = torch.tensor(val_rows)

    def accuracy(shift: int) -> float:
        readout.eval()
        with torch.no_grad():
            scene = (val[:, 0] + shift) % len(val_tokens)
            guess = readout(val_tokens[scene], val[:, 1], val[:, 2]).argmax(-1)
        readout.train()
        return float((guess == val[:, 3]).float().mean())

    curve = []
    for step in range(1, steps + 1):
        pick = rows[torch.randint(len(rows), (batch_size,))]
        logits = readout(train_tokens[pick[:, 0]], pick[:, 1], pick[:, 2])
        loss = torch.nn.functional.cross_entropy(logits, pick[:, 3])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 10) == 0 or step == steps:
            curve.append({"step": step, "loss": loss.item(), "val_accuracy": accuracy(0)})
            if log:
                log(f"[binding] readout step {step}: loss {loss.item():.3f}, held-out {curve[-1]['val_accuracy']:.3f}")
    return {"steps": steps, "train_statements": len(train_rows), "val_statements": len(val_rows),
            "own_picture": accuracy(0), "other_picture": accuracy(1), "curve": curve}


# ---------------------------------------------------------------------------------------------
# The decoder: the language model itself, scored on true against swapped statements.

@torch.no_grad()
def statement_accuracy(model, processor, records: list[dict], root: Path, batch_size: int = 32,
                       form: str = "sentence") -> dict:
    """Share of held-out statements whose true sentence gets a higher log-probability than the one
    with left and right swapped, with the scene's own picture and with the next scene's."""
    from .perception import prefers_true

    model.eval()
    pictures = []
    for record in records:
        with Image.open(root / record["images"][0]) as image:
            pictures.append(image.convert("RGB"))
    found = [(n, s) for n, r in enumerate(records) for s in statements(r, form)]
    reads = prefers_true(model, processor, pictures,
                         [(sentence(s, form), sentence(s, form, HALVES[s.half]), n) for n, s in found], batch_size)
    own = [o for o, _ in reads]
    other = [t for _, t in reads]
    # against_shortcut: the statements whose answer is not the shortcut's (Statement.shortcut), where
    # a model that takes the shortcut scores 0 and one that finds the named objects 1.
    against = [o for (_, s), (o, _) in zip(found, reads, strict=True) if s.half != s.shortcut]

    def share(values: list[float]) -> float:
        return sum(values) / max(1, len(values))

    return {"statements": len(own), "own_picture": share(own), "other_picture": share(other),
            "against_shortcut": share(against), "against_shortcut_statements": len(against)}


def fresh_decoder(given, model_dir: Path, out: Path, seed: int) -> Path:
    """A model folder with the vision tower of `given` (loaded from `model_dir`, whose tokenizer and
    processor files are copied) and a newly initialised decoder."""
    from transformers import Qwen2VLForConditionalGeneration

    from .lm import save

    torch.manual_seed(seed)
    fresh = Qwen2VLForConditionalGeneration(given.config)
    fresh.model.visual.load_state_dict(given.model.visual.state_dict())
    return save(fresh, model_dir, out)


def main(argv: list[str] | None = None) -> int:
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor
    from .lm import LMConfig, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="model folder (its vision tower is kept frozen)")
    parser.add_argument("--data", required=True, type=Path, help="described scenes (npm run synth -- --describe)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-items", type=int, default=8000, help="training scenes read")
    parser.add_argument("--val-items", type=int, default=128)
    parser.add_argument("--readout-steps", type=int, default=1500, help="0 skips the readout")
    parser.add_argument("--decoder-steps", type=int, default=0, help="language-model steps on the statements (0: "
                        "only score the model as it is)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fresh-decoder", action="store_true", help="start the decoder from new weights")
    parser.add_argument("--form", choices=FORMS, default="sentence", help="how a statement names its object "
                        "(the module's FORMS)")
    parser.add_argument("--answer-only", action="store_true", help="no loss on the words before the half (the "
                        "object's name): only the lookup is trained")
    parser.add_argument("--balanced", action="store_true", help="train on as many statements against the objects' "
                        "mean position as with it (pooling every object's position then tells nothing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the decoder steps run: cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train_scenes = read_scenes(args.data, "train", args.max_items)
    val_scenes = read_scenes(args.data, "val", args.val_items)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(args.model), dtype=torch.float32)
    processor = load_processor(args.model)
    report: dict = {"model": str(args.model), "margin": MARGIN}

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    if args.readout_steps:
        began = time.time()
        colours = {c: i for i, c in enumerate(sorted({o["color"] for r in train_scenes for o in r["meta"]["scene"]["objects"]}))}
        shapes = {s: i for i, s in enumerate(sorted({o["shape"] for r in train_scenes for o in r["meta"]["scene"]["objects"]}))}
        train_tokens = tower_tokens(model, processor.image_processor, train_scenes, args.data)
        val_tokens = tower_tokens(model, processor.image_processor, val_scenes, args.data)
        report["readout"] = train_readout(train_tokens, readout_rows(train_scenes, colours, shapes), val_tokens,
                                          readout_rows(val_scenes, colours, shapes), len(colours), len(shapes),
                                          args.readout_steps, seed=args.seed, log=log)
        report["readout"]["seconds"] = round(time.time() - began, 1)
        log(f"[binding] readout: held-out {report['readout']['own_picture']:.3f} "
            f"(another picture {report['readout']['other_picture']:.3f})")

    start = args.model
    if args.fresh_decoder:
        start = fresh_decoder(model, args.model, args.out / "start", args.seed)
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(start), dtype=torch.float32)
    report["decoder_before"] = statement_accuracy(model, processor, val_scenes, args.data, form=args.form)
    log(f"[binding] decoder before: {report['decoder_before']}")
    if args.decoder_steps:
        began = time.time()
        examples = examples_of(train_scenes, args.data, balance=args.balanced, seed=args.seed, form=args.form,
                               answer_only=args.answer_only)
        random.Random(args.seed).shuffle(examples)
        config = LMConfig(model=str(start), out=str(args.out / "lm"), steps=args.decoder_steps,
                          batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=min(50, args.decoder_steps // 10 + 1),
                          threads=args.threads, device=args.device, seed=args.seed, freeze_vision=True, length_window=0,
                          save_every=max(100, args.decoder_steps // 4))
        trained = train(config, examples, name="binding")
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(trained), dtype=torch.float32)
        report["decoder_after"] = {**statement_accuracy(model, processor, val_scenes, args.data, form=args.form),
                                   "steps": args.decoder_steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "train_statements": len(examples), "fresh_decoder": args.fresh_decoder,
                                   "balanced": args.balanced, "form": args.form, "answer_only": args.answer_only,
                                   "seconds": round(time.time() - began, 1)}
        log(f"[binding] decoder after {args.decoder_steps} steps: {report['decoder_after']}")
    (args.out / "binding.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
