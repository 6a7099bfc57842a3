"""The embedded model's pipeline at toy size: scene description and markup documents (the whole
corpus mixture: test_nano_corpus.py), the tokenizer corpus, the nano preset, the LM loop of
pretrain/sft, and the plot."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.init_model import build_config
from trainer.nano import corpus as nano_corpus
from trainer.nano import plot_dynamics, pretrain, sft
from trainer.nano.lm import Batcher, LMConfig, lr_at
from trainer.presets import get_preset
from trainer.processor import load_processor
from trainer.rewards import REFLECTION_PATTERN

FACTS = [
    {"kind": "objects", "text": "The image shows 3 objects, from left to right: a small red cube, a large blue sphere and a small gray cone.", "value": "3"},
    {"kind": "count", "text": "There is 1 red object.", "value": "1"},
    {"kind": "horizontal", "text": "The red cube is on the left of the blue sphere.", "value": "left"},
    {"kind": "depth", "text": "The gray cone is closer to the camera than the red cube.", "value": "gray cone"},
    {"kind": "closest", "text": "The object closest to the camera is the gray cone.", "value": "gray cone"},
]
DESCRIPTION = {"facts": FACTS, "text": " ".join(f["text"] for f in FACTS)}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """A toy spatial-synth folder: images, questions and meta.description, as `npm run synth -- --describe` writes."""
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        choices = ["left", "right"]
        lines.append({
            "id": f"spatial-synth/train/{i}", "images": [f"images/{i}.png"], "question": "Where is the red cube?",
            "choices": choices, "answer": "A", "answer_text": "left",
            "prompt": "Where is the red cube? Select from the following choices.\n(A) left\n(B) right",
            "task": "Relation", "source": "spatial-synth", "meta": {"description": DESCRIPTION},
        })
    for split in ("train", "val"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


# --- documents ------------------------------------------------------------------------------------

def test_description_documents_state_facts_in_prose_or_markup():
    rng = random.Random(0)
    styles = set()
    for _ in range(500):
        style, text = nano_corpus.make_document(DESCRIPTION, rng)
        styles.add(style)
        assert "?" not in text and not nano_corpus.evaluated_family_questions(text)
        assert not REFLECTION_PATTERN.search(text)
        if style == "markup":
            names = re.findall(r"<([a-z]+)>", text)
            assert names and all(n in nano_corpus.GENERIC_TAGS for n in names)
            # Sections are closed in order; the document ends right after the last closing tag.
            assert re.findall(r"</([a-z]+)>", text) == names
            assert text.endswith(f"</{names[-1]}>")
            last = re.search(rf"<{names[-1]}>(.*)</{names[-1]}>$", text).group(1)
            assert last in {f["value"] for f in FACTS}
        else:
            assert DESCRIPTION["text"] in text
    assert styles == {"prose", "markup"}


def test_markup_documents_close_what_they_open_with_any_names():
    rng = random.Random(0)
    many_names = set()
    for _ in range(500):
        style, text = nano_corpus.make_markup_document(DESCRIPTION, rng)
        assert style in ("sections", "nested")
        assert "?" not in text and not REFLECTION_PATTERN.search(text)
        names = re.findall(r"<([a-z]+)>", text)
        assert len(set(names)) == len(names) and set(names) <= set(nano_corpus.GENERIC_TAGS)
        closing = re.findall(r"</([a-z]+)>", text)
        inner = names[1:] if style == "nested" else names
        assert closing == inner + (names[:1] if style == "nested" else [])  # each closed with its own name, in order
        assert 2 <= len(inner) <= 8
        # The last section is one value of a stated fact, and the document ends with it (and the outer element).
        last = re.search(rf"<{inner[-1]}>([^<]*)</{inner[-1]}>\s*(</{names[0]}>)?$", text)
        assert last and last.group(1) in {f["value"] for f in FACTS}
        many_names.update(names)
    assert {"think", "answer"} <= many_names and len(many_names) > 60


def test_pretrain_examples_read_descriptions_and_refuse_records_without(synth_dir, tmp_path):
    examples = nano_corpus.pretrain_examples(synth_dir, seed=1)
    # 6 scenes give 6 image documents (no scene objects here, so no identity questions) and 2
    # text-only documents make text_qa's quarter.
    assert len(examples) == 8
    images = [e for e in examples if e["image"] is not None]
    assert len(images) == 6 and {e["kind"] for e in images} <= {"description", "markup"}
    assert all(e["prefix"] in ("", "<image>") and e["image"].endswith(".png") for e in images)
    assert all(e["kind"] == "text_qa" and e["prefix"] == "" for e in examples if e["image"] is None)
    assert examples == nano_corpus.pretrain_examples(synth_dir, seed=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text(json.dumps({"id": "x", "images": ["a.png"], "meta": {}}) + "\n")
    with pytest.raises(ValueError, match="--describe"):
        nano_corpus.pretrain_examples(bad)


def test_tokenizer_corpus_keeps_brackets_and_spaces_off_words():
    assert nano_corpus.tokenizer_text("<think> a </think>\n<answer>left</answer>") == "</think>\na </think>\n</answer>>left</answer>"
    assert nano_corpus.tokenizer_text("a < b, 3 > 2") == "a <\nb, 3 > 2"
    lines = list(nano_corpus.tokenizer_corpus(["<summary>red cube</summary>"], ["Which one?"]))
    assert lines == ["</summary>>red\ncube</summary>", "Which\none?"]


def test_a_tag_name_is_the_same_token_in_prose_and_in_markup(synth_dir, tmp_path):
    folder = pretrain.build_init(nano_corpus.pretrain_examples(synth_dir), synth_dir, tmp_path / "init", "tiny", 0,
                                 pretrain.MAX_PIXELS)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokens = tok.encode("the red cube <cube>left</cube>").tokens
    assert tokens == ["the", "Ġ", "red", "Ġ", "cube", "Ġ", "<", "cube", ">", "left", "</", "cube", ">"]


def test_nano_preset_is_a_small_qwen2_vl():
    preset = get_preset("nano")
    ids = {t: 800 + i for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                                               "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                                               "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                                               "<|image_pad|>", "<|video_pad|>"])}
    config = build_config(preset, ids, 814)
    assert sum(preset.text.mrope_section) * 2 == preset.text.head_dim
    with torch.device("meta"):
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration(config)
    params = sum(p.numel() for p in model.parameters())
    assert 2_000_000 < params < 12_000_000  # fp32 weights well under 50 MB


# --- training loops -------------------------------------------------------------------------------

def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = LMConfig(model="", out="", steps=100, learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(99, config) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, config) >= lr_at(s + 1, config) for s in range(10, 99))


def test_labels_cover_the_target_and_the_end_token_only(synth_dir, tmp_path):
    model_dir = pretrain.build_init(nano_corpus.pretrain_examples(synth_dir), synth_dir, tmp_path / "init", "tiny", 0,
                                    pretrain.MAX_PIXELS)
    processor = load_processor(model_dir, max_pixels=pretrain.MAX_PIXELS)
    batcher = Batcher(processor)
    example = {"image": str(synth_dir / "images" / "0.png"), "prefix": "<image>", "target": "There is 1 red object."}
    encoded = batcher.encode(example)
    target = processor.tokenizer(example["target"], add_special_tokens=False)["input_ids"] + [batcher.eos]
    labelled = [t for t in encoded["labels"] if t != -100]
    assert labelled == target and encoded["input_ids"][-len(target):] == target
    batch = batcher.collate([encoded, batcher.encode({**example, "target": "Hi."})])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == batch["mm_token_type_ids"].shape
    examples = sft.sft_examples(synth_dir)
    assert examples[0]["target"] == "left"
    assert sft.sft_examples(synth_dir, answer="letter")[0]["target"] == "A"
    assert examples[0]["prefix"].startswith("<image>A conversation between User and Assistant.")
    assert examples[0]["prefix"].endswith("(B) right \nAssistant: ")


def test_plot_writes_a_png(tmp_path):
    metrics = [{"step": s, "rewards/accuracy": s / 20, "rewards/format": 0.0, "completion_length": 40 - s,
                "reflection_rate": 0.1} for s in range(1, 21)]
    out = plot_dynamics.plot(metrics, tmp_path / "d.png", smooth=3)
    with Image.open(out) as image:
        assert image.size == (plot_dynamics.WIDTH, plot_dynamics.PANELS * plot_dynamics.PANEL_HEIGHT + 30)
    assert plot_dynamics.moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
