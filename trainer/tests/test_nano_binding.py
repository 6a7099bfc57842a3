"""The binding test of the nano base (trainer.nano.binding): which statements a scene gives, that the
readout learns a lookup the tokens allow (and only with the right picture), and the whole command
on a tiny model."""

from __future__ import annotations

import json

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
    assert statements(scene) == [("red", "cube", "left"), ("blue", "sphere", "right")]
    assert binding.sentence("red", "cube", "left") == "The red cube is in the left half of the picture."


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
