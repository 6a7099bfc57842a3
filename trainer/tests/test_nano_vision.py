"""The vision stage of the nano base (trainer.nano.vision): the dense labels of a picture's cells,
and the path train_nano.sh takes: initial model, vision tower trained, then pre-training with the
tower frozen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from trainer.nano import pretrain, vision
from trainer.nano.vision import GEOMETRY, NONE, cell_labels, geometry_stats, object_geometry, order_accuracy


def record(objects: list[tuple[str, str, float, list[float]]], size: int = 56) -> dict:
    """A scene record with (colour, shape, camera distance, box) objects; an object stands on the
    ground below its box's centre, as far ahead as it is from the camera."""
    def centre(box):
        return [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    return {"meta": {"scene": {"image": {"width": size, "height": size},
                               "objects": [{"color": c, "shape": s, "size": "small"} for c, s, _, _ in objects]},
                     "objects": [{"camera_distance": d, "bbox_2d": box, "center_2d": centre(box),
                                  "center_3d": [centre(box)[0] / size - 0.5, 0.5, d]} for _, _, d, box in objects]}}


def test_cells_take_the_nearest_object_covering_their_centre():
    scene = record([("red", "cube", 5.0, [0, 0, 30, 56]),       # the left half of a 56x56 picture
                    ("blue", "sphere", 3.0, [20, 20, 56, 56])])  # nearer, overlapping the red cube
    colours, shapes = cell_labels(scene, rows=2, cols=2, width=56, height=56)
    # Cell centres (14,14) (42,14) (14,42) (42,42), row-major.
    assert colours == ["red", NONE, "red", "blue"]
    assert shapes == ["cube", NONE, "cube", "sphere"]


def test_an_objects_geometry_is_its_own_position_and_distance():
    scene = record([("red", "cube", 5.0, [0, 0, 28, 56]), ("blue", "sphere", 3.0, [28, 14, 56, 42])])
    assert object_geometry(scene, 56, 56) == [[0.25, 0.5, -0.25, 5.0, 5.0], [0.75, 0.5, 0.25, 3.0, 3.0]]
    mean, std = geometry_stats([scene])
    assert mean == pytest.approx([0.5, 0.5, 0.0, 4.0, 4.0]) and std[1] == pytest.approx(1e-6)  # one y: no spread


def test_order_accuracy_compares_objects_of_the_same_picture_only():
    # Picture 0 has objects 0 and 1 (two cells each), picture 1 has object 0 (one cell).
    owners = torch.tensor([0, 0, 1, 1, 64, -1])
    target = torch.tensor([[-1.0] * 5, [-1.0] * 5, [1.0] * 5, [1.0] * 5, [5.0] * 5, [float("nan")] * 5])
    assert order_accuracy(target, target, owners) == [1.0] * 5
    flipped = target.clone()
    flipped[:, 0] = -flipped[:, 0]  # image_x reversed: left and right swapped
    assert order_accuracy(flipped, target, owners) == [0.0, 1.0, 1.0, 1.0, 1.0]
    close = target.clone()
    close[2:4] = -0.9  # within the margin of object 0: no pair is counted, and none is right
    assert order_accuracy(close, close, owners) == [0.0] * 5


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    root = tmp_path_factory.mktemp("described")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    facts = [{"kind": "objects", "text": "In the picture there are 2 objects, from left to right: a small red cube "
                                         "and a small blue sphere.", "value": "2"}]
    lines = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        scene = record([("red", "cube", 4.0, [0, 0, 28, 56]), ("blue", "sphere", 6.0, [28, 0, 56, 56])])
        scene["meta"]["description"] = {"facts": facts, "text": facts[0]["text"]}
        lines.append({"id": f"s/{i}", "images": [f"images/{i}.png"], "question": "What is shown?", "choices": ["a", "b"],
                      "answer": "A", "answer_text": "a", "prompt": "What is shown?", "task": "Relation", **scene})
    for split in ("train", "val"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_vision_stage_then_pretraining_with_the_tower_frozen(described, tmp_path):
    common = ["--data", str(described), "--questions", str(described), "--preset", "tiny", "--batch-size", "2",
              "--warmup", "1", "--val-items", "2", "--threads", "1", "--device", "cpu", "--max-pixels", str(56 * 56),
              "--mixture", '{"description": 1.0, "markup": 0.0, "text_qa": 0.0, "image_qa": 0.0}']
    assert pretrain.main([*common, "--out", str(tmp_path / "base"), "--init-only"]) == 0
    init = tmp_path / "base" / "init"
    assert (init / "model.safetensors").exists() and not (tmp_path / "base" / "model").exists()

    assert vision.main(["--model", str(init), "--data", str(described), "--out", str(tmp_path / "vision"),
                        "--steps", "3", "--batch-size", "2", "--eval-every", "3", "--val-items", "2",
                        "--max-pixels", str(56 * 56), "--threads", "1", "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "vision" / "vision.json").read_text())
    assert report["colours"] == [NONE, "blue", "red"] and 0 <= report["val_object_colour_acc"] <= 1
    assert report["geometry"] == list(GEOMETRY) and report["geometry_weight"] == 1.0
    assert all(0 <= report[f"val_order_{name}"] <= 1 for name in GEOMETRY) and report["val_geometry_mse"] >= 0
    first, trained = load_file(init / "model.safetensors"), load_file(tmp_path / "vision" / "model" / "model.safetensors")
    assert not torch.equal(first["visual.merger.mlp.2.weight"], trained["visual.merger.mlp.2.weight"])
    assert torch.equal(first["model.norm.weight"], trained["model.norm.weight"])

    assert pretrain.main([*common, "--out", str(tmp_path / "base"), "--continue-from", str(tmp_path / "vision" / "model"),
                          "--freeze-vision", "--steps", "2"]) == 0
    base = load_file(tmp_path / "base" / "model" / "model.safetensors")
    for name, weights in trained.items():
        if name.startswith("visual."):
            assert torch.equal(base[name], weights), name  # the tower as the vision stage left it
    assert not torch.equal(base["model.layers.0.mlp.up_proj.weight"],
                           trained["model.layers.0.mlp.up_proj.weight"])
