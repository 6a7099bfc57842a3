"""Grounding facts (trainer/nano/grounding.py) on real described spatial-synth scenes: every fact is
true of its scene (recomputed here from the text and the scene's geometry), ends in its answer,
trains on its answer only and never asks a question."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trainer.nano import grounding
from trainer.nano.corpus import Mixture, evaluated_family_questions, mixture_report, pretrain_examples
from trainer.nano.lm import Batcher

ROOT = Path(__file__).resolve().parents[2]
TSX = ROOT / "node_modules" / ".bin" / "tsx"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    if not TSX.exists() or shutil.which("node") is None:
        pytest.skip("needs node and `npm install` (node_modules/.bin/tsx) to write spatial-synth scenes")
    out = tmp_path_factory.mktemp("grounding-synth")
    subprocess.run([str(TSX), "src/cli/synth.ts", "--out", str(out), "--train", "400", "--val", "0", "--test", "0",
                    "--seed", "5", "--describe", "--level", "easy"], cwd=ROOT, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def records(synth_dir) -> list[dict]:
    return [json.loads(line) for line in (synth_dir / "train.jsonl").read_text().splitlines()]


def named(record: dict) -> dict[str, dict]:
    return {p["name"]: {**p, **o} for p, o in zip(record["meta"]["objects"], record["meta"]["scene"]["objects"],
                                                   strict=True) if p.get("name")}


def names_in(text: str, objects: dict) -> list[str]:
    """The object names a text mentions, in order (longest names first, so "large red cube" wins)."""
    pattern = "|".join(sorted(map(re.escape, objects), key=len, reverse=True))
    return re.findall(rf"\b(?:{pattern})\b", text)


def check_fact(fact: grounding.Fact, record: dict) -> None:
    objects = named(record)
    width, height = (record["meta"]["scene"]["image"][k] for k in ("width", "height"))
    mentioned = names_in(fact.prefix, objects)
    if fact.kind == "half":
        (name,) = mentioned
        o = objects[name]
        word = fact.value.split()[0]
        if word in ("left", "right"):
            assert (o["center_2d"][0] < width / 2) == (word == "left")
        else:
            assert (o["center_2d"][1] < height / 2) == (word == "upper")
    elif fact.kind in ("horizontal", "vertical"):
        # Subject-first wordings name the subject first; reference-first ones start with the reference.
        reference_first = re.match(r"(Seen from|With respect to|Compared with) the ", fact.prefix)
        b, a = mentioned if reference_first else mentioned[::-1]
        axis = 0 if fact.kind == "horizontal" else 1
        before = objects[a]["center_2d"][axis] < objects[b]["center_2d"][axis]
        assert fact.value == (("left" if before else "right") if axis == 0 else ("above" if before else "below"))
    elif fact.kind == "depth":
        x, y = mentioned
        closer = x if objects[x]["camera_distance"] < objects[y]["camera_distance"] else y
        farther = y if closer == x else x
        assert fact.value == (farther if "farther" in fact.prefix else closer)
    elif fact.kind == "distance":
        *pair, reference = mentioned if fact.prefix.startswith(("Of", "Between")) else mentioned[1:] + mentioned[:1]
        if fact.prefix.startswith("Looking at"):
            reference, *pair = mentioned[:3]
        r = objects[reference]

        def d(name: str) -> float:
            return math.dist((r["x"], r["z"]), (objects[name]["x"], objects[name]["z"]))

        closer = min(pair, key=d)
        assert fact.value == (max(pair, key=d) if "farther" in fact.prefix else closer)
    else:
        stems = [re.escape(w.split("{ans}")[0].rstrip()).replace(re.escape("{what}"), "(.+)")
                 for w in grounding.COUNT_WORDINGS]
        (what,) = next(m for m in (re.fullmatch(stem, fact.prefix) for stem in stems) if m).groups()
        first, second = (what.split() + [None])[:2]
        shapes = {"cubes": "cube", "spheres": "sphere", "cylinders": "cylinder", "cones": "cone"}
        scene = record["meta"]["scene"]["objects"]
        if second == "objects":
            count = sum(o["color"] == first for o in scene)
        elif second is None:
            count = sum(o["shape"] == shapes[first] for o in scene)
        else:
            count = sum(o["color"] == first and o["shape"] == shapes[second] for o in scene)
        assert int(fact.value) == count


def test_every_fact_is_true_of_its_scene_and_ends_in_its_answer(records):
    seen = set()
    for record in records:
        for kind, facts in grounding.candidates(record).items():
            for fact in facts:
                seen.add(kind)
                assert fact.kind == kind
                assert fact.text.endswith(".") and fact.answer.startswith(" ")
                check_fact(fact, record)
        rng = random.Random(len(seen))
        for fact in grounding.document(record, rng):  # drawn wordings too
            check_fact(fact, record)
    assert seen == set(grounding.KINDS)


def test_documents_state_facts_and_never_ask(records):
    rng = random.Random(0)
    for record in records:
        facts = grounding.document(record, rng)
        assert len({f.kind for f in facts}) == len(facts) <= 4
        text = "".join(piece for piece, _ in grounding.segments(facts))
        assert text == " ".join(f.text for f in facts)
        assert not evaluated_family_questions(text)


def test_relations_come_as_the_scenes_give_them(records):
    # Most two-object relations agree with the subject's own half of the picture (the shortcut the
    # probe's against_shortcut measures past); documents keep that mix rather than balancing it.
    rng = random.Random(1)
    drawn = [f for r in records for f in grounding.document(r, rng) if f.kind == "horizontal"]
    natural = [f for r in records for f in grounding.candidates(r)["horizontal"]]
    against = [sum(f.value != f.shortcut for f in facts) / len(facts) for facts in (drawn, natural)]
    assert len(drawn) > 60 and against[1] < 0.35
    assert against[0] == pytest.approx(against[1], abs=0.08)


def test_the_loss_is_on_the_answers_only(records, tiny_processor):
    facts = grounding.document(records[0], random.Random(0))
    example = {"image": None, "prefix": "", "target": "", "segments": grounding.segments(facts)}
    encoded = Batcher(tiny_processor).encode(example)
    tokenizer = tiny_processor.tokenizer
    trained = tokenizer.decode([t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True)
                                if label != -100], skip_special_tokens=True)
    assert trained == "".join(f.answer for f in facts)
    assert tokenizer.decode(encoded["input_ids"], skip_special_tokens=True) == " ".join(f.text for f in facts)


def test_corpus_with_a_grounding_share(synth_dir):
    mixture = Mixture(description=0.3, markup=0.05, text_qa=0.2, image_qa=0.15, grounding=0.3)
    examples = pretrain_examples(synth_dir, seed=0, mixture=mixture)
    report = mixture_report(examples)
    assert report["kinds"]["grounding"]["share"] == pytest.approx(0.3, abs=0.02)
    facts = [e for e in examples if e["kind"] == "grounding"]
    assert all("".join(p for p, _ in e["segments"]) == e["target"] and e["image"] for e in facts)
    # The shipped mixture has no grounding kind, and its documents do not change with the option.
    plain = pretrain_examples(synth_dir, seed=0)
    assert mixture_report(plain)["kinds"]["grounding"]["count"] == 0
    assert not any("segments" in e for e in plain)


def test_probe_pairs_differ_only_in_the_answer(records):
    pairs = grounding.probe_pairs(records[:40])
    assert {f.kind for f, _, _ in pairs} == set(grounding.KINDS)
    for fact, wrong, _ in pairs:
        assert wrong != fact.text and wrong.startswith(fact.prefix + " ") and wrong.endswith(".")


def test_one_object_documents_say_only_where_named_objects_are(synth_dir, records):
    rng = random.Random(2)
    for record in records[:100]:
        facts = grounding.document(record, rng, one_object=True)
        assert all(f.kind == "half" for f in facts) and len(facts) <= 4
        assert len({f.text for f in facts}) == len(facts)
    mixture = Mixture(description=0.0, markup=0.0, text_qa=0.0, image_qa=0.0, grounding=1.0, one_object=1.0)
    examples = pretrain_examples(synth_dir, seed=0, max_items=100, mixture=mixture)
    assert all(e["kind"] == "grounding" and "half" in e["target"] for e in examples)


def test_relation_documents_balance_the_subjects_own_half(synth_dir, records):
    # The second step of the curriculum: two-object relations only, about as many against the
    # subject's own half as with it (the scenes alone give under a third against it).
    # A scene with no relation against it says where its objects are instead.
    rng = random.Random(3)
    documents = [grounding.document(r, rng, relations=True) for r in records]
    drawn = [f for facts in documents for f in facts if f.kind != "half"]
    assert {f.kind for f in drawn} == {"horizontal", "vertical"} and len(drawn) > 100
    assert sum(f.value != f.shortcut for f in drawn) == len(drawn) / 2
    assert all({f.kind for f in facts} <= {"horizontal", "vertical"} or {f.kind for f in facts} == {"half"}
               for facts in documents if facts)
    mixture = Mixture(description=0.0, markup=0.0, text_qa=0.0, image_qa=0.0, grounding=1.0,
                      one_object=0.3, relations=0.7)
    examples = pretrain_examples(synth_dir, seed=0, max_items=200, mixture=mixture)
    halves = [e for e in examples if " half" in e["target"]]
    assert 0.5 < len(halves) / len(examples) < 0.8  # 0.3, and relation documents of scenes without a relation against
    single = [f for r in records for f in grounding.document(r, rng, per_document=1, relations=True) if f.kind != "half"]
    assert sum(f.value != f.shortcut for f in single) / len(single) == pytest.approx(0.5, abs=0.1)
    mixture = Mixture(description=0.0, markup=0.0, text_qa=0.0, image_qa=0.0, grounding=1.0, one_object=1.0,
                      single_fact=1.0)
    examples = pretrain_examples(synth_dir, seed=0, max_items=100, mixture=mixture)
    assert all(e["target"].count(".") == 1 for e in examples if e["kind"] == "grounding")
    with pytest.raises(ValueError, match="at most 1"):
        Mixture(description=0.0, markup=0.0, text_qa=0.0, image_qa=0.0, grounding=1.0, one_object=0.5, relations=0.6)


TEMPLATES = {"half": grounding.HALF_WORDINGS, "horizontal": grounding.RELATION_WORDINGS,
             "vertical": grounding.RELATION_WORDINGS, "count": grounding.COUNT_WORDINGS,
             "depth": [w for _, w in grounding.DEPTH_WORDINGS], "distance": [w for _, w in grounding.DISTANCE_WORDINGS]}


def in_its_wording(fact: grounding.Fact) -> bool:
    """The fact's text is its `wording`'s template, each slot any words."""
    pattern = re.sub(r"\\\{[a-z]+\\\}", ".*?", re.escape(TEMPLATES[fact.kind][fact.wording]))
    return re.fullmatch(pattern, fact.text) is not None


def test_first_wording_documents_use_one_wording_per_kind(records):
    rng = random.Random(4)
    drawn = [f for r in records[:200] for f in grounding.document(r, rng, first_wording=True)]
    assert all(f.wording == 0 and in_its_wording(f) for f in drawn)
    assert len({f.kind for f in drawn}) == len(grounding.KINDS)
    varied = [f for r in records[:200] for f in grounding.document(r, rng)]
    assert all(in_its_wording(f) for f in varied) and len({f.wording for f in varied}) > 3


def test_probe_reports_each_wording_and_axis(synth_dir, records, tiny_model, tiny_processor):
    report = grounding.probe(tiny_model, tiny_processor, records[:12], synth_dir)
    pairs = grounding.probe_pairs(records[:12])
    for kind in grounding.KINDS:
        facts = [f for f, _, _ in pairs if f.kind == kind]
        assert report[kind]["facts"] == len(facts)
        assert len(report[kind]["by_wording"]) == 1 + max(f.wording for f in facts)
        assert all(v is None or 0 <= v <= 1 for v in report[kind]["by_wording"])
    assert 0 <= report["half"]["left_right"] <= 1 and 0 <= report["half"]["upper_lower"] <= 1
