"""The binding test of the nano base (trainer.nano.binding): which statements a scene gives, that the
readout learns a lookup the tokens allow (and only with the right picture), and the whole command
on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from trainer.nano import binding, pretrain
from trainer.nano.binding import Readout, statements, train_readout
from trainer.tests.test_nano_vision import described, record  # noqa: F401 (a fixture)


def test_statements_keep_unique_names_clear_of_the_middle():
    scene = record([("red", "cube", 4.0, [0, 0, 10, 10]),        # centre x 5 of 56: left
                    ("blue", "sphere", 5.0, [40, 0, 56, 10]),    # centre x 48: right
                    ("green", "cone", 5.0, [24, 0, 32, 10]),     # centre x 28: the middle, left out
                    ("pink", "cube", 6.0, [0, 20, 8, 30]),       # two pink cubes: not a unique name
                    ("pink", "cube", 6.0, [48, 20, 56, 30])])
    # The crowd's mean x is (5 + 48 + 28 + 4 + 52) / 5 / 56 = 0.49: the left half.
    assert statements(scene) == [("red", "cube", "left", "", "left"), ("blue", "sphere", "right", "", "left")]
    red = statements(scene)[0]
    assert binding.sentence(red) == "The red cube is in the left half of the picture."
    assert binding.sentence(red, half="right") == "The red cube is in the right half of the picture."
    assert binding.sentence(red, "colour") == "red left."
    # By colour alone the green cone is unique too, but it stands in the middle; the pink cubes are two.
    assert [s[:3] for s in statements(scene, "colour")] == [("red", "cube", "left"), ("blue", "sphere", "right")]


def test_relation_statements_compare_two_named_objects():
    scene = record([("red", "cube", 4.0, [30, 0, 40, 10]),      # centre x 35: right half
                    ("blue", "sphere", 5.0, [44, 0, 56, 10]),   # centre x 50: right of the red cube
                    ("green", "cone", 5.0, [31, 20, 41, 30])])  # centre x 36: too close to the red cube
    found = statements(scene, "relation")
    assert ("red", "cube", "left", "blue sphere", "right") in found  # left of the sphere, yet in the right half
    assert ("blue", "sphere", "right", "red cube", "right") in found
    assert not [s for s in found if {s.colour, s.reference.split()[0]} == {"red", "green"}]
    assert binding.sentence(found[0], "relation") == "Seen from the blue sphere, the red cube is on the left."
    assert statements(scene, "far") == found
    assert binding.sentence(found[0], "far") == ("Seen from the blue sphere, the red cube, one of the objects on the "
                                                 "plain ground of this picture, is on the left.")
    far = binding.examples_of([{**scene, "images": ["0.png"]}], Path("."), form="far", answer_only=True)[0]
    assert far["target"] == " left."


def test_answer_only_examples_leave_the_name_out_of_the_loss():
    scene = record([("red", "cube", 4.0, [0, 0, 10, 10]), ("blue", "sphere", 5.0, [40, 0, 56, 10])])
    scene["images"] = ["images/0.png"]
    whole, answer = (binding.examples_of([scene], Path("root"), answer_only=a) for a in (False, True))
    assert whole[0] == {"image": "root/images/0.png", "prefix": "",
                        "target": "The red cube is in the left half of the picture."}
    assert answer[0]["prefix"] == "The red cube is in the" and answer[0]["target"] == " left half of the picture."
    short = binding.examples_of([scene], Path("root"), form="colour", answer_only=True)
    assert [(e["prefix"], e["target"]) for e in short] == [("red", " left."), ("blue", " right.")]


def test_balanced_statements_make_the_objects_mean_position_uninformative():
    # The crowd (mean x) is on the left in the first scene, on the right in the second.
    left_crowd = record([("red", "cube", 4.0, [0, 0, 10, 10]), ("blue", "cube", 4.0, [2, 20, 12, 30]),
                         ("green", "cone", 4.0, [44, 0, 54, 10])])
    right_crowd = record([("red", "cube", 4.0, [44, 0, 54, 10]), ("pink", "cone", 4.0, [40, 20, 50, 30])])
    assert binding.crowd_half(left_crowd) == "left" and binding.crowd_half(right_crowd) == "right"
    chosen = binding.balanced([left_crowd, right_crowd], seed=0)
    # Four statements with the crowd's half (red, blue; red, pink), one against it (the green cone).
    assert len(chosen) == 2 and (0, ("green", "cone", "right", "", "left")) in chosen
    assert sum(s.half == s.shortcut for _, s in chosen) == 1


def test_the_readout_finds_a_named_token_and_reads_its_position():
    # Pictures of 4 tokens: each token is one object (colour c, shape s) and carries its x in one
    # feature. The answer is the x of the token that matches the name, so only a lookup gets it.
    torch.manual_seed(0)

    def pictures(n: int):
        tokens, rows = torch.zeros(n, 4, 16), []
        for p in range(n):
            colours = torch.randperm(5)[:4]
            for t in range(4):
                colour, shape, x = int(colours[t]), int(torch.randint(3, ())), float(torch.rand(()))
                tokens[p, t, colour] = 1.0
                tokens[p, t, 8 + shape] = 1.0
                tokens[p, t, 15] = x - 0.5
                rows.append((p, colour, shape, int(x > 0.5)))
        return tokens, rows

    train_tokens, train_rows = pictures(600)
    val_tokens, val_rows = pictures(100)
    report = train_readout(train_tokens, train_rows, val_tokens, val_rows, colours=5, shapes=3, steps=400,
                           batch_size=128, lr=1e-2)
    assert report["own_picture"] > 0.9
    assert 0.35 < report["other_picture"] < 0.65  # another picture's tokens say nothing about this object
    assert isinstance(Readout(16, 5, 3)(train_tokens[:2], torch.tensor([0, 1]), torch.tensor([0, 2])), torch.Tensor)


def test_binding_command_on_a_tiny_model(described, tmp_path):  # noqa: F811
    assert pretrain.main(["--data", str(described), "--questions", str(described), "--preset", "tiny",
                          "--out", str(tmp_path / "base"), "--init-only", "--max-pixels", str(56 * 56),
                          "--threads", "1", "--device", "cpu"]) == 0
    init = tmp_path / "base" / "init"
    out = tmp_path / "binding"
    assert binding.main(["--model", str(init), "--data", str(described), "--out", str(out), "--readout-steps", "5",
                         "--decoder-steps", "2", "--batch-size", "2", "--fresh-decoder", "--threads", "1",
                         "--val-items", "4", "--seed", "1"]) == 0
    report = json.loads((out / "binding.json").read_text())
    # Each described scene has a red cube on the left and a blue sphere on the right.
    assert report["readout"]["val_statements"] == 8 and report["decoder_before"]["statements"] == 8
    assert report["decoder_after"]["train_statements"] == 12 and 0 <= report["decoder_after"]["own_picture"] <= 1
    given, fresh = load_file(init / "model.safetensors"), load_file(out / "start" / "model.safetensors")
    trained = load_file(out / "lm" / "model" / "model.safetensors")
    for name, weights in given.items():
        if name.startswith("visual."):
            assert torch.equal(fresh[name], weights) and torch.equal(trained[name], weights), name
    # Seed 1 against the initial model's seed 0: a decoder of its own.
    assert not torch.equal(fresh["model.layers.0.mlp.up_proj.weight"], given["model.layers.0.mlp.up_proj.weight"])
