"""Grounding statements: facts about a picture worded so that the answer comes last, for a
pre-training phase whose loss is on the answers only.

The binding test (`trainer.nano.binding`, docs/embedded-model.md) found what the nano decoder
needs before it reads a relation off its picture: statements that name an object (or two) and end
in what the picture says about it, with the loss on that last word. Trained on whole documents it
pools every object in the picture; trained on the answers of one-object statements it learns to
find a named object; from there, on two-object statements, to compare two. It also learnt each
wording on its own, which is why every kind here comes in several wordings (subject or reference
named first, names near or far from the answer; none copies an evaluated question's wording),
much as "Physics of Language Models: Part 3.1" (Allen-Zhu and Li, arXiv 2309.14316) finds that
facts stated in varied wordings during pre-training are the ones a later fine-tuning on questions
can extract.

The kinds, each a statement of fact and never a question (the corpus scan,
`corpus.evaluated_family_questions`, checks every document):

    half        The red cube is in the left half of the picture.             left / right / upper / lower
    horizontal  Seen from the blue sphere, the red cube is on the left.      left / right
    vertical    With respect to the blue sphere, the red cube is located above.   above / below
    depth       Of the red cube and the blue sphere, the one closer to the camera is the red cube.
    distance    Of the red cube and the green cone, the one closer to the blue sphere is the green cone.
    count       The number of red objects in the picture is 2.

Objects are named the way the evaluated questions name them (the record's `meta.objects[].name`:
"red cube", or "large red cube" when that alone tells twins apart; unnamed objects are never the
subject of a fact), and a fact is only stated when it is as clear as the questions' own margins
make them (src/benchmarks/spatial_synth/questions.ts, MARGINS).
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

KINDS = ("half", "horizontal", "vertical", "depth", "distance", "count")

# The questions' margins (questions.ts MARGINS) and visibility bound (corpus.MIN_VISIBLE).
RELATION_SHARE = 0.08
DEPTH_RATIO, DEPTH_DIFFERENCE = 1.2, 0.8
DISTANCE_RATIO, DISTANCE_DIFFERENCE = 1.3, 1.0
HALF_MARGIN = 0.08  # one-object statements: the centre at least this share of the side from the middle
MIN_VISIBLE = 0.6

# {a}: the subject, {b}: the reference, {p}: "on the " before left/right and nothing before
# above/below, then the answer. Reference first and subject first, names near and far from it.
RELATION_WORDINGS = (
    "Seen from the {b}, the {a} is {p}{ans}.",
    "With respect to the {b}, the {a} is located {p}{ans}.",
    "Compared with the {b}, the {a} is {p}{ans}.",
    "The {a} is located, with respect to the {b}, {p}{ans}.",
    "The {a}, relative to the {b}, is {p}{ans}.",
    "Looking at where the two of them stand in the image, the {a} is, with respect to the {b}, {p}{ans}.",
    "In this image the {a}, when we compare its position with the position of the {b}, is found {p}{ans}.",
)
HALF_WORDINGS = (
    "The {a} is in the {ans} half of the picture.",
    "In this image the {a} stands in the {ans} half.",
    "The {a}, one of the objects in this image, is in its {ans} half.",
)
# {x} and {y}: the two candidates in either order, {r}: the reference object.
DEPTH_WORDINGS = (
    ("closer", "Of the {x} and the {y}, the one closer to the camera is the {ans}."),
    ("closer", "Between the {x} and the {y}, the object nearer to the camera that took this photo is the {ans}."),
    ("closer", "The {x} and the {y} are in the image, and the one nearer to the camera is the {ans}."),
    ("farther", "Of the {x} and the {y}, the one farther from the camera is the {ans}."),
)
DISTANCE_WORDINGS = (
    ("closer", "Of the {x} and the {y}, the one closer to the {r} is the {ans}."),
    ("closer", "Between the {x} and the {y}, the object closer to the {r} on the ground is the {ans}."),
    ("closer", "Looking at the {r}, the {x} and the {y}, the one nearer to the {r} is the {ans}."),
    ("farther", "Of the {x} and the {y}, the one farther from the {r} is the {ans}."),
)
COUNT_WORDINGS = (
    "The number of {what} in the picture is {ans}.",
    "Counting the {what} in this image gives {ans}.",
    "In this image, the {what} number {ans}.",
)
PLURAL = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders", "cone": "cones"}
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "gray", "brown", "cyan", "pink")


class Fact(NamedTuple):
    kind: str
    prefix: str  # the statement up to its answer
    answer: str  # the rest: " " + the answer + "."
    shortcut: str = ""  # what a model that does not find the named objects would answer ("" when none)
    wording: int = 0  # which of its kind's wordings (0: the first)

    @property
    def text(self) -> str:
        return self.prefix + self.answer

    @property
    def value(self) -> str:
        return self.answer.strip(" .")


def _objects(record: dict) -> list[dict]:
    """Per object: name (None when it does not pick the object out or the object is mostly
    hidden), centre as a share of the picture's width and height, half-extents (same units),
    camera distance, and place on the ground (x, z)."""
    image = record["meta"]["scene"]["image"]
    width, height = image["width"], image["height"]
    out = []
    for placed, obj in zip(record["meta"]["objects"], record["meta"]["scene"]["objects"], strict=True):
        x0, y0, x1, y1 = placed["bbox_2d"]
        visible = placed.get("visible", 1.0) >= MIN_VISIBLE
        out.append({
            "name": placed.get("name") if visible else None,
            "x": placed["center_2d"][0] / width, "y": placed["center_2d"][1] / height,
            "ex": (x1 - x0) / 2 / width, "ey": (y1 - y0) / 2 / height,
            "camera": placed["camera_distance"], "ground": (obj["x"], obj["z"]),
            "color": obj["color"], "shape": obj["shape"], "visible": placed.get("visible", 1.0),
        })
    return out


def _clear_apart(a: dict, b: dict, axis: str) -> bool:
    d = abs(a[axis] - b[axis])
    return d >= RELATION_SHARE and d >= (a["e" + axis] + b["e" + axis]) / 2


def _ratio_clear(u: float, v: float, ratio: float, difference: float) -> bool:
    near, far = min(u, v), max(u, v)
    return far >= ratio * near and far - near >= difference


def candidates(record: dict) -> dict[str, list[Fact]]:
    """Every fact of each kind the scene clearly supports, in one fixed wording each (the first);
    `document` draws the wordings."""
    return {kind: [fact for fact, _ in facts] for kind, facts in _facts(record, random.Random(0), fixed=True).items()}


def _facts(record: dict, rng: random.Random, fixed: bool = False,
           first_wording: bool = False) -> dict[str, list[tuple[Fact, tuple]]]:
    """Every fact of each kind with the objects it is about; `fixed`: the first wording and the
    objects in scene order, `first_wording`: the first wording, the order still drawn."""
    objects = _objects(record)
    named = [i for i, o in enumerate(objects) if o["name"]]
    pick = (lambda options: options[0]) if fixed else rng.choice
    # Python's choice(seq) is seq[randrange(len(seq))]: the same draws as before wordings were kept
    draw = (lambda n: 0) if fixed or first_wording else rng.randrange

    def wording(options):  # (its index, the wording)
        w = draw(len(options))
        return w, options[w]
    out: dict[str, list[tuple[Fact, tuple]]] = {kind: [] for kind in KINDS}

    for i in named:
        o = objects[i]
        for axis, words in (("x", ("left", "right")), ("y", ("upper", "lower"))):
            if abs(o[axis] - 0.5) > HALF_MARGIN:
                answer = words[0] if o[axis] < 0.5 else words[1]
                w, template = wording(HALF_WORDINGS)
                prefix, rest = template.format(a=o["name"], ans="\0").split("\0")
                out["half"].append((Fact("half", prefix.rstrip(" "), " " + answer + rest, wording=w), (i, axis)))

    for a in named:
        for b in named:
            if a == b:
                continue
            for axis, kind, words, p in (("x", "horizontal", ("left", "right"), "on the "),
                                         ("y", "vertical", ("above", "below"), "")):
                oa, ob = objects[a], objects[b]
                if not _clear_apart(oa, ob, axis):
                    continue
                answer = words[0] if oa[axis] < ob[axis] else words[1]
                shortcut = words[0] if oa[axis] < 0.5 else words[1]
                w, template = wording(RELATION_WORDINGS)
                text = template.format(a=oa["name"], b=ob["name"], p=p, ans="\0")
                prefix, rest = text.split("\0")
                out[kind].append((Fact(kind, prefix.rstrip(" "), " " + answer + rest, shortcut, w), (a, b)))

    for k, a in enumerate(named):
        for b in named[k + 1:]:
            oa, ob = objects[a], objects[b]
            if not _ratio_clear(oa["camera"], ob["camera"], DEPTH_RATIO, DEPTH_DIFFERENCE):
                continue
            w, (which, template) = wording(DEPTH_WORDINGS)
            closer = a if oa["camera"] < ob["camera"] else b
            answer = closer if which == "closer" else (b if closer == a else a)
            x, y = (a, b) if fixed or rng.random() < 0.5 else (b, a)
            prefix, rest = template.format(x=objects[x]["name"], y=objects[y]["name"], ans="\0").split("\0")
            out["depth"].append((Fact("depth", prefix.rstrip(" "), " " + objects[answer]["name"] + rest, wording=w), (a, b)))

    for r in named:
        others = [i for i in named if i != r]
        for k, a in enumerate(others):
            for b in others[k + 1:]:
                da = math.dist(objects[r]["ground"], objects[a]["ground"])
                db = math.dist(objects[r]["ground"], objects[b]["ground"])
                if not _ratio_clear(da, db, DISTANCE_RATIO, DISTANCE_DIFFERENCE):
                    continue
                w, (which, template) = wording(DISTANCE_WORDINGS)
                closer = a if da < db else b
                answer = closer if which == "closer" else (b if closer == a else a)
                x, y = (a, b) if fixed or rng.random() < 0.5 else (b, a)
                text = template.format(x=objects[x]["name"], y=objects[y]["name"], r=objects[r]["name"], ans="\0")
                prefix, rest = text.split("\0")
                out["distance"].append((Fact("distance", prefix.rstrip(" "), " " + objects[answer]["name"] + rest,
                                             wording=w), (r, a, b)))

    # Counts of a colour, a shape or both, only where every object of the kind is plainly visible
    # (as the Count questions require); a colour absent from the scene counts 0.
    categories: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        for what in (f"{o['color']} objects", PLURAL[o["shape"]], f"{o['color']} {PLURAL[o['shape']]}"):
            categories.setdefault(what, []).append(i)
    present = {o["color"] for o in objects}
    absent = [c for c in COLOURS if c not in present]
    if absent:
        categories[f"{pick(absent)} objects"] = []
    for what, members in categories.items():
        if any(objects[i]["visible"] < MIN_VISIBLE for i in members):
            continue
        w, template = wording(COUNT_WORDINGS)
        prefix, rest = template.format(what=what, ans="\0").split("\0")
        out["count"].append((Fact("count", prefix.rstrip(" "), " " + str(len(members)) + rest, wording=w), (what,)))
    return out


def document(record: dict, rng: random.Random, per_document: int = 4, one_object: bool = False,
             relations: bool = False, first_wording: bool = False) -> list[Fact]:
    """Up to `per_document` facts about one picture, each of a different kind (so no fact follows
    from another by the text alone), in a random order and wordings. Relations come as the scenes
    give them, most of them in agreement with the subject's own half of the picture: a first run
    that kept as many against that shortcut as with it learnt no relation at all (the binding
    test's lesson, docs/embedded-model.md, "The grounding phase").

    The steps of a curriculum (the binding test learnt the lookup one step at a time, in one
    wording): `one_object`: only where single named objects are (the `half` kind);
    `relations`: left/right and above/below between two named objects, as many against the
    subject's own half as with it (for a decoder that already finds one object; from the start,
    balance teaches nothing), and one-object facts instead in a scene with no relation against
    that half (about half of them); `first_wording`: every fact in its kind's first wording."""
    facts = _facts(record, rng, first_wording=first_wording)
    if relations:
        pools = {True: [], False: []}  # against the subject's own half, with it
        for kind in ("horizontal", "vertical"):
            for fact, _ in facts[kind]:
                pools[fact.value != fact.shortcut].append(fact)
        pairs = min(len(pools[True]), len(pools[False]), max(1, per_document // 2))
        if pairs:  # as many against as with (one of a pair, drawn, for a one-fact document)
            out = rng.sample(pools[True], pairs) + rng.sample(pools[False], pairs)
            rng.shuffle(out)
            return out[:per_document]
        one_object = True  # half the scenes have no relation against the shortcut: say where objects are
    if one_object:
        return [fact for fact, _ in rng.sample(facts["half"], min(per_document, len(facts["half"])))]
    kinds = [kind for kind in KINDS if facts[kind]]
    rng.shuffle(kinds)
    return [rng.choice(facts[kind])[0] for kind in kinds[:per_document]]


def segments(facts: list[Fact]) -> list[tuple[str, bool]]:
    """The document's text as (text, trained) pieces: the loss is on each fact's answer only."""
    out: list[tuple[str, bool]] = []
    for n, fact in enumerate(facts):
        out.append(((" " if n else "") + fact.prefix, False))
        out.append((fact.answer, True))
    return out


# ---------------------------------------------------------------------------------------------
# The probe: does a model prefer each held-out fact to the same statement with a wrong answer?

SWAPS = {"left": "right", "right": "left", "upper": "lower", "lower": "upper", "above": "below", "below": "above"}


def wrong_answer(fact: Fact, names: list[str]) -> str:
    """The fact's statement with a wrong answer: the other direction, the other object of the pair
    (`names`: the two candidates), or a count one higher (one lower for a count above 2)."""
    value = fact.value
    if fact.kind in ("depth", "distance"):
        wrong = " " + (names[1] if value == names[0] else names[0]) + "."
    elif fact.kind == "count":
        wrong = " " + str(int(value) - 1 if int(value) > 2 else int(value) + 1) + "."
    else:
        first = value.split(" ")[0]
        wrong = fact.answer.replace(first, SWAPS[first], 1)
    return fact.prefix + wrong


def probe_pairs(records: list[dict], seed: int = 0, per_kind: int = 3) -> list[tuple[Fact, str, int]]:
    """(fact, the statement with a wrong answer, scene index) for up to `per_kind` facts of each kind
    of every held-out scene, each in a wording drawn with `seed`."""
    rng = random.Random(seed)
    out = []
    for n, record in enumerate(records):
        objects = _objects(record)
        for kind, facts in _facts(record, rng).items():
            for fact, operands in rng.sample(facts, min(per_kind, len(facts))):
                pair = [objects[i]["name"] for i in operands[-2:]] if kind in ("depth", "distance") else []
                out.append((fact, wrong_answer(fact, pair), n))
    return out


def probe(model, processor, records: list[dict], root, batch_size: int = 32, device: str = "cpu") -> dict:
    """Per kind: how many held-out facts, the share whose true statement the model prefers with the
    scene's own picture and with the next scene's (the text-only level, near 50% or below), the
    own-picture share per wording, for the two-object relations the share among those whose answer
    is not the subject's own half, and for `half` each axis alone."""
    from PIL import Image

    from .perception import prefers_true

    model.eval()
    pictures = []
    for record in records:
        with Image.open(root / record["images"][0]) as image:
            pictures.append(image.convert("RGB"))
    pairs = probe_pairs(records)
    reads = prefers_true(model, processor, pictures, [(f.text, wrong, n) for f, wrong, n in pairs], batch_size, device)

    def share(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    report = {}
    for kind in KINDS:
        rows = [(f, read) for (f, _, _), read in zip(pairs, reads, strict=True) if f.kind == kind]
        against = [own for f, (own, _) in rows if f.shortcut and f.value != f.shortcut]
        report[kind] = {"facts": len(rows), "own_picture": share([own for _, (own, _) in rows]),
                        "other_picture": share([other for _, (_, other) in rows]),
                        # the lookup is learnt wording by wording: own picture, per wording
                        "by_wording": [share([own for f, (own, _) in rows if f.wording == w])
                                       for w in range(1 + max((f.wording for f, _ in rows), default=0))]}
        if kind in ("horizontal", "vertical"):
            report[kind] |= {"against_shortcut": share(against), "against_shortcut_facts": len(against)}
        if kind == "half":  # each axis alone
            for axis, words in (("left_right", ("left", "right")), ("upper_lower", ("upper", "lower"))):
                report[kind][axis] = share([own for f, (own, _) in rows if f.value.split(" ")[0] in words])
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys
    from pathlib import Path

    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor
    from .vision import read_scenes

    parser = argparse.ArgumentParser(description="Grounding probe: held-out facts against wrong answers, per kind")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a spatial-synth folder written with --describe")
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the report here as JSON too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(args.model), dtype=torch.float32).eval()
    processor = load_processor(args.model)
    records = read_scenes(args.data, args.split, args.items)
    report = probe(model, processor, records, args.data)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"[grounding] {sum(r['facts'] for r in report.values())} facts of {len(records)} scenes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
