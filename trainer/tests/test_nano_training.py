"""The nano experiment's training loop and probes at toy size: pre-training (text-only and image
documents, resume from a checkpoint, the image gap), SFT, the perception probe's scoring and the
step-0 probe."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.nano import corpus, format_probe, perception, pretrain, sft
from trainer.nano.lm import Batcher, data_order, rotate_images
from trainer.processor import load_processor

OBJECTS = [
    {"shape": "cube", "color": "red", "size": "small"},
    {"shape": "sphere", "color": "blue", "size": "large"},
    {"shape": "cone", "color": "gray", "size": "small"},
]
FACTS = [
    {"kind": "objects", "text": "In the picture there are 3 objects, from left to right: a small red cube, a large blue "
                                "sphere and a small gray cone.", "value": "3"},
    {"kind": "count", "text": "There is 1 red object.", "value": "1"},
    {"kind": "horizontal", "text": "The red cube is on the left of the blue sphere.", "value": "left"},
]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """A toy described spatial-synth folder (train and val), as `npm run synth -- --describe` writes."""
    root = tmp_path_factory.mktemp("synth")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        lines.append({
            "id": f"spatial-synth/train/{i}", "images": [f"images/{i}.png"], "question": "Where is the red cube?",
            "choices": ["left", "right"], "answer": "A", "answer_text": "left",
            "prompt": "Where is the red cube? Select from the following choices.\n(A) left\n(B) right",
            "task": "Relation", "source": "spatial-synth",
            "meta": {"scene": {"objects": OBJECTS},
                     "description": {"facts": FACTS, "text": " ".join(f["text"] for f in FACTS)}},
        })
    for split in ("train", "val"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_batches_mix_text_only_and_image_documents(synth_dir, tmp_path):
    folder = pretrain.build_init(pretrain.pretrain_examples(synth_dir), synth_dir, tmp_path / "init", "tiny", 0, 56 * 56)
    batcher = Batcher(load_processor(folder, max_pixels=56 * 56))
    text_only = {"image": None, "prefix": "", "target": "What is 2 plus 3? 5"}
    with_image = {"image": str(synth_dir / "images" / "0.png"), "prefix": "<image>", "target": "There is 1 red object."}
    encoded = batcher.encode(text_only)
    target = batcher.tokenizer(text_only["target"], add_special_tokens=False)["input_ids"] + [batcher.eos]
    assert encoded["input_ids"] == target and encoded["labels"] == target and "pixel_values" not in encoded
    batch = batcher([text_only, with_image, with_image])
    assert batch["image_grid_thw"].shape[0] == 2  # pictures of the image documents only
    assert batch["input_ids"].shape == batch["labels"].shape == batch["mm_token_type_ids"].shape
    # The image gap's control swaps pictures between the examples and keeps everything else.
    rotated = rotate_images(batch)
    per_image = batch["pixel_values"].reshape(2, -1, batch["pixel_values"].shape[-1])
    assert torch.equal(rotated["pixel_values"].reshape(per_image.shape)[0], per_image[1])
    assert torch.equal(rotated["input_ids"], batch["input_ids"])
    assert rotate_images(batcher([text_only, with_image])) is None  # one picture: nothing to swap


def test_data_order_is_whole_shuffled_passes():
    order = data_order(5, steps=4, batch_size=3, seed=1)
    assert len(order) == 12 and sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert order == data_order(5, steps=4, batch_size=3, seed=1)


def test_length_windows_batch_similar_lengths_and_keep_the_prefix():
    lengths = [random.Random(i).randrange(10, 400) for i in range(200)]
    plain = data_order(200, steps=40, batch_size=8, seed=3)
    grouped = data_order(200, steps=40, batch_size=8, seed=3, lengths=lengths, window=10)
    # The same examples are seen in each window of 10 batches, only regrouped.
    for start in range(0, 320, 80):
        assert sorted(grouped[start:start + 80]) == sorted(plain[start:start + 80])

    def padded(order):  # tokens a batch costs when padded to its longest example
        return sum(8 * max(lengths[i] for i in order[k:k + 8]) for k in range(0, len(order), 8))

    assert padded(grouped) < 0.7 * padded(plain)
    # A shorter (or resumed) schedule sees the same first batches.
    assert data_order(200, steps=13, batch_size=8, seed=3, lengths=lengths, window=10) == grouped[:13 * 8]


def test_pretrain_resumes_from_its_checkpoint_and_reports_the_image_gap(synth_dir, tmp_path):
    args = ["--data", str(synth_dir), "--questions", str(synth_dir), "--preset", "tiny", "--batch-size", "2",
            "--warmup", "1", "--val-items", "4", "--threads", "1", "--device", "cpu", "--max-pixels", str(56 * 56),
            "--save-every", "2"]
    # Interrupted after 2 of 4 steps (the checkpoint is the resume point), then run again.
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert pretrain.main([*args, "--out", str(whole), "--steps", "4"]) == 0
    assert pretrain.main([*args, "--out", str(parts), "--steps", "4", "--stop-at", "1"]) == 0
    assert json.loads((parts / "validation.json").read_text())["step"] == 1
    # Run again with --stop-at at its checkpoint: the model of step 2, nothing trained.
    cut = tmp_path / "cut"
    assert pretrain.main([*args, "--out", str(cut), "--steps", "4", "--stop-at", "2"]) == 0
    assert pretrain.main([*args, "--out", str(cut), "--steps", "4", "--stop-at", "2"]) == 0
    assert json.loads((cut / "validation.json").read_text())["step"] == 2
    assert [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert pretrain.main([*args, "--out", str(parts), "--steps", "4"]) == 0
    steps = [json.loads(line)["step"] for line in (parts / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    from safetensors.torch import load_file

    a, b = load_file(whole / "model" / "model.safetensors"), load_file(parts / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    validation = json.loads((whole / "validation.json").read_text())
    assert np.isfinite(validation["val_loss"]) and np.isfinite(validation["image_gap"])
    mixture = json.loads((whole / "mixture.json").read_text())
    assert set(mixture) == {"mixture", "measured"}

    # The step-0 probe and SFT run on the base.
    report = format_probe.probe(whole / "model", synth_dir, "val", items=2, samples=2, max_new_tokens=4, seed=0,
                                text_items=2)
    assert set(report["text_tasks"]) == set(corpus.TEXT_TASKS)
    assert all(r["accuracy"] <= r["on_option_rate"] <= 1 for r in report["text_tasks"].values())
    total = report["total"]
    assert total["samples"] == 4 and 0 <= total["format_rate"] <= 1 and 0 <= total["option_ranking_accuracy"] <= 1
    assert total["accuracy"] <= total["on_option_rate"] <= 1  # a right answer is always one of the options
    assert set(report["per_task"]) == {"Relation"}
    sft_out = tmp_path / "sft"
    assert sft.main(["--model", str(whole / "model"), "--dataset", str(synth_dir), "--out", str(sft_out), "--steps", "2",
                     "--batch-size", "2", "--warmup", "1", "--threads", "1", "--device", "cpu",
                     "--max-pixels", str(56 * 56)]) == 0
    assert (sft_out / "model" / "model.safetensors").exists()
    probe = perception.probe(whole / "model", synth_dir, "val", items=2, max_new_tokens=4)
    assert probe["items"] == 2 and set(probe["scores"]) == {"count", "colors", "shapes", "order", "exact"}
    relations = perception.relation_probe(whole / "model", synth_dir, "val", items=4)
    kinds = [k for k in relations if k not in ("all", "colour")]
    assert kinds and set(kinds) <= set(perception.RELATION_KINDS) and relations["colour"]["facts"] > 0
    assert relations["all"]["facts"] == sum(relations[k]["facts"] for k in kinds)  # the relations, not the control
    assert all(0 <= v["own_picture"] <= 1 and 0 <= v["other_picture"] <= 1 for v in relations.values())


def test_a_sentences_log_probability_does_not_depend_on_its_batch(tmp_path, synth_dir):
    from transformers import Qwen2VLForConditionalGeneration


    whole = tmp_path / "base"
    assert pretrain.main(["--data", str(synth_dir), "--questions", str(synth_dir), "--out", str(whole), "--preset", "tiny",
                          "--steps", "1", "--batch-size", "2", "--warmup", "1", "--val-items", "2", "--threads", "1",
                          "--device", "cpu", "--max-pixels", str(56 * 56)]) == 0
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(whole / "model")).eval()
    processor = load_processor(whole / "model", max_pixels=56 * 56)
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    short, long = "The red cube is left of the blue cone.", "The red cube is closer to the camera than the big blue cone is."
    alone = perception.sentence_logprobs(model, processor, [image], [short], "cpu")
    batched = perception.sentence_logprobs(model, processor, [image, image], [short, long], "cpu")
    assert batched[0] == pytest.approx(alone[0], abs=1e-4) and batched[1] < batched[0] < 0  # longer: less likely


def test_flipping_makes_each_relation_fact_false():
    assert perception.flipped("The red cube is to the left of the blue cone.") == "The red cube is to the right of the blue cone."
    assert perception.flipped("The red cube is below the blue cone.") == "The red cube is above the blue cone."
    assert (perception.flipped("The red cube is farther from the camera than the blue cone.")
            == "The red cube is closer to the camera than the blue cone.")
    assert (perception.flipped("The red cube is closer to the blue cone than the gray sphere is.")
            == "The gray sphere is closer to the blue cone than the red cube is.")


def test_an_answer_names_an_option_by_text_or_letter():
    choices = ["red cube", "blue sphere"]
    assert all(format_probe.names_an_option(a, choices) for a in ("red cube", "B", "(a)", "The answer is A"))
    assert not any(format_probe.names_an_option(a, choices) for a in ("red", "A or B", "C", ""))


def test_perception_scores_each_fact():
    gold = FACTS[0]["text"]
    assert perception.score(gold, gold) == {"count": 1.0, "colors": 1.0, "shapes": 1.0, "order": 1.0, "exact": 1.0}
    swapped = "In the picture there are 3 objects, from left to right: a large blue sphere, a small red cube and a small gray cone."
    s = perception.score(swapped, gold)
    assert s["count"] == 1.0 and s["colors"] == 1.0 and s["order"] == pytest.approx(1 / 3) and s["exact"] == 0.0
    wrong = "In the picture there are 2 objects, from left to right: a small green cube and a small green cylinder."
    s = perception.score(wrong, gold)
    assert s["count"] == 0.0 and s["colors"] == 0.0 and s["shapes"] == pytest.approx(1 / 4) and s["order"] == 0.0
    assert perception.score("The sky is light.", gold)["count"] == 0.0
    with pytest.raises(ValueError):
        perception.score(gold, "no list here")


def test_weights_delta_rebuilds_fine_tuned_weights(tmp_path):
    """scripts/weights_delta.py: base + fp16(model - base) gives the model back to fp16 precision of the change."""
    import importlib.util
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    spec = importlib.util.spec_from_file_location("weights_delta", Path(__file__).parents[2] / "scripts" / "weights_delta.py")
    weights_delta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights_delta)
    torch.manual_seed(0)
    base = {"w": torch.randn(64, 32) * 0.05, "b": torch.randn(32)}
    tuned = {k: v + torch.randn_like(v) * 1e-3 for k, v in base.items()}
    for name, tensors in (("base", base), ("tuned", tuned)):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
    weights_delta.pack(tmp_path / "base", tmp_path / "tuned", tmp_path / "delta.safetensors")
    assert (tmp_path / "delta.safetensors").stat().st_size < (tmp_path / "tuned" / "model.safetensors").stat().st_size * 0.6
    weights_delta.unpack(tmp_path / "base", tmp_path / "delta.safetensors", tmp_path / "rebuilt")
    rebuilt = load_file(tmp_path / "rebuilt" / "model.safetensors")
    for k in base:
        change = (tuned[k] - base[k]).abs().max()
        assert (rebuilt[k] - tuned[k]).abs().max() <= change * 1e-3 + 1e-9
        assert rebuilt[k].dtype == torch.float32


def test_pretraining_fits_its_schedule_to_a_time_budget(synth_dir, tmp_path, monkeypatch):
    from trainer.nano import lm

    monkeypatch.setattr(lm, "FIT_AFTER", 2)
    out = tmp_path / "fit"
    assert pretrain.main(["--data", str(synth_dir), "--questions", str(synth_dir), "--preset", "tiny", "--batch-size", "2",
                          "--warmup", "1", "--val-items", "2", "--threads", "1", "--device", "cpu",
                          "--max-pixels", str(56 * 56), "--steps", "100000", "--max-seconds", "2", "--fit-to-time",
                          "--length-window", "0",  # random batches: 2 steps measure the speed
                          "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    fitted = lines[-1]["total_steps"]
    assert 2 < fitted < 100000
    # The shortened schedule runs to (or, on a machine slower than at the start, close to) its end,
    # where the learning rate has decayed to its floor.
    assert lines[-1]["step"] >= 0.8 * fitted
    assert lines[-1]["learning_rate"] < 0.2 * 2e-3
