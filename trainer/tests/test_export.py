"""The exported graphs reproduce the PyTorch model, at shapes other than the export's dummy inputs.

Dummy inputs used by the exporter: batch 2, sequence 5, past 3, two images of grids 1x4x6 and
1x2x4. Every test here uses other sizes, left padding and several image grids (docs/export.md, "Graphs").
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from trainer import export as export_module
from trainer.export import GRAPHS, SUFFIX, export
from trainer.onnx_infer import OnnxQwen2VL
from trainer.text_corpus import generate_corpus

from .conftest import chat_prompt, random_image

# Documented in docs/export.md: max |logit difference| against the PyTorch fp32 model on the tiny
# random model, and the share of prompt positions whose argmax agrees.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "q8": 0.05, "q4": 0.3}
ARGMAX_AGREEMENT = {"fp32": 1.0, "fp16": 0.99, "q8": 0.9, "q4": 0.6}

ELEM = {1: "float32", 7: "int64", 10: "float16"}


def _io(path):
    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for value in list(model.graph.input) + list(model.graph.output):
        t = value.type.tensor_type
        out[value.name] = (ELEM[t.elem_type], len(t.shape.dim))
    return out


@pytest.mark.parametrize("dtype", list(SUFFIX))
def test_graphs_have_the_onnx_community_names_ranks_and_dtypes(tiny_dir, dtype):
    layers = json.loads((tiny_dir / "config.json").read_text())["num_hidden_layers"]
    float_io = "float16" if dtype == "fp16" else "float32"
    embed = _io(tiny_dir / "onnx" / f"embed_tokens{SUFFIX[dtype]}.onnx")
    assert embed == {"input_ids": ("int64", 2), "inputs_embeds": (float_io, 3)}
    vision = _io(tiny_dir / "onnx" / f"vision_encoder{SUFFIX[dtype]}.onnx")
    assert vision == {"pixel_values": (float_io, 2), "grid_thw": ("int64", 2), "image_features": (float_io, 2)}
    decoder = _io(tiny_dir / "onnx" / f"decoder_model_merged{SUFFIX[dtype]}.onnx")
    expected = {
        "inputs_embeds": (float_io, 3),
        "attention_mask": ("int64", 2),
        "position_ids": ("int64", 3),
        "num_logits_to_keep": ("int64", 0),
        "logits": (float_io, 3),
    }
    for i in range(layers):
        for kv in ("key", "value"):
            expected[f"past_key_values.{i}.{kv}"] = (float_io, 4)
            expected[f"present.{i}.{kv}"] = (float_io, 4)
    assert decoder == expected


def test_config_carries_what_onnx_loaders_read(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["transformers.js_config"]["dtype"] == {g: "fp32" for g in GRAPHS}
    assert config["num_hidden_layers"] == config["text_config"]["num_hidden_layers"]
    assert config["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}


@pytest.mark.parametrize("grids", [[(40, 60)], [(224, 224)], [(28, 420)], [(100, 50), (60, 140), (56, 56)]])
def test_vision_encoder_matches_pytorch_for_any_image_sizes(tiny_dir, tiny_model, tiny_processor, grids):
    images = [random_image(h, w, i) for i, (h, w) in enumerate(grids)]
    pixels = tiny_processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        ref = tiny_model.model.visual(pixels["pixel_values"], grid_thw=pixels["image_grid_thw"]).pooler_output
    onnx_model = OnnxQwen2VL(tiny_dir, "fp32")
    # All images in one call, and each image on its own (as the reference export is called).
    together = onnx_model.encode_images(pixels["pixel_values"].numpy(), pixels["image_grid_thw"].numpy())
    np.testing.assert_allclose(together, ref.numpy(), atol=1e-4, rtol=0)
    start = 0
    for grid in pixels["image_grid_thw"].numpy():
        n = int(np.prod(grid))
        alone = onnx_model.encode_images(pixels["pixel_values"][start:start + n].numpy(), grid[None])
        np.testing.assert_allclose(alone, ref.numpy()[start // 4:(start + n) // 4], atol=1e-4, rtol=0)
        start += n


@pytest.fixture(scope="module")
def padded_batch(tiny_model, tiny_processor):
    """Three rows of different lengths, left-padded: two images of different grids and a text-only row."""
    questions = [("How many red objects are in the image? Count them carefully.", (70, 130)),
                 ("Which is closer?", None),
                 ("Is the cube left of the sphere?", (120, 56))]
    prompts = [chat_prompt(tiny_processor, q, size is not None) for q, size in questions]
    images = [random_image(h, w, i) for i, (_, size) in enumerate(questions) if size for h, w in [size]]
    batch = tiny_processor(text=prompts, images=images, return_tensors="pt", padding=True)
    positions, _ = tiny_model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                                    batch["image_grid_thw"], attention_mask=batch["attention_mask"])
    assert (batch["attention_mask"] == 0).any(), "the batch must contain left padding"
    return batch, positions


def _prefill(onnx_model, batch, positions, keep=0):
    embeds = onnx_model.prompt_embeds(batch["input_ids"].numpy(), batch["pixel_values"].numpy(),
                                      batch["image_grid_thw"].numpy())
    return onnx_model.decode(embeds, batch["attention_mask"].numpy(), positions.numpy(),
                             onnx_model.empty_past(batch["input_ids"].shape[0]), keep)


@pytest.mark.parametrize("dtype", list(SUFFIX))
def test_prefill_logits_match_pytorch_with_left_padding(tiny_dir, tiny_model, padded_batch, dtype):
    batch, positions = padded_batch
    with torch.no_grad():
        ref = tiny_model(**batch).logits.numpy()
    logits, _ = _prefill(OnnxQwen2VL(tiny_dir, dtype), batch, positions)
    valid = batch["attention_mask"].numpy().astype(bool)
    diff = np.abs(logits - ref)[valid].max()
    assert diff < TOLERANCE[dtype], f"{dtype}: max |diff| {diff}"
    agreement = (logits.argmax(-1) == ref.argmax(-1))[valid].mean()
    assert agreement >= ARGMAX_AGREEMENT[dtype], f"{dtype}: argmax agreement {agreement}"


def test_decode_steps_with_kv_cache_match_pytorch(tiny_dir, tiny_model, padded_batch):
    batch, positions = padded_batch
    onnx_model = OnnxQwen2VL(tiny_dir, "fp32")
    forced = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]])
    mask = batch["attention_mask"]
    with torch.no_grad():
        ref = tiny_model(
            input_ids=torch.cat([batch["input_ids"], forced], 1),
            attention_mask=torch.cat([mask, torch.ones_like(forced)], 1),
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
            mm_token_type_ids=torch.cat([batch["mm_token_type_ids"], torch.zeros_like(forced)], 1),
        ).logits.numpy()
    seq = batch["input_ids"].shape[1]
    logits, past = _prefill(onnx_model, batch, positions, keep=1)
    next_pos = positions.numpy().max(axis=(0, 2)) + 1
    am = mask.numpy()
    # Decode one token per step for two steps, then the remaining two in one call (past > 0, S > 1).
    steps = [(0, 1), (1, 2), (2, 4)]
    for start, end in steps:
        am = np.concatenate([am, np.ones((3, end - start), dtype=np.int64)], axis=1)
        pos = next_pos[:, None] + np.arange(start, end)[None, :]
        position = np.broadcast_to(pos[None], (3, *pos.shape))
        embeds = onnx_model.embed(forced[:, start:end].numpy())
        logits, past = onnx_model.decode(embeds, am, position, past, 0)
        np.testing.assert_allclose(logits, ref[:, seq + start:seq + end], atol=1e-4, rtol=0)
        assert past[0].shape[2] == seq + end


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_num_logits_to_keep_slices_the_last_positions(tiny_dir, padded_batch, keep):
    batch, positions = padded_batch
    onnx_model = OnnxQwen2VL(tiny_dir, "fp32")
    full, _ = _prefill(onnx_model, batch, positions, keep=0)
    kept, _ = _prefill(onnx_model, batch, positions, keep=keep)
    expected = full if keep == 0 else full[:, -keep:]
    assert kept.shape == expected.shape
    np.testing.assert_allclose(kept, expected, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def text_trained_tiny(tiny_dir, tmp_path_factory):
    """The tiny model after 200 language-modelling steps on generated text, exported in every dtype.

    A random model's next-token logits are nearly tied, so any rounding flips its greedy choice; a
    model that has learned something has margins, which is what quantized variants must preserve.
    """
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny_trained")
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_dir)).train()
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    texts = list(generate_corpus(2000, seed=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        enc = tok([texts[i] for i in rng.integers(0, len(texts), 16)], return_tensors="pt", padding=True,
                  truncation=True, max_length=96)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json"):
        shutil.copy(tiny_dir / name, out / name)
    export(out, out, ["fp32", "fp16", "q8", "q4"])
    return out, model, tok


@pytest.mark.parametrize("dtype", list(SUFFIX))
def test_every_variant_agrees_on_greedy_tokens_for_a_short_prompt(text_trained_tiny, dtype):
    folder, model, tok = text_trained_tiny
    ids = tok("A conversation between User and Assistant. The user asks a question about the image,",
              return_tensors="pt")["input_ids"]
    seq = ids.shape[1]
    with torch.no_grad():
        ref = model.generate(input_ids=ids, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    positions = np.broadcast_to(np.arange(seq)[None, None], (3, 1, seq))
    got = OnnxQwen2VL(folder, dtype).greedy(ids.numpy(), np.ones((1, seq), dtype=np.int64), positions, 10)
    assert got[0].tolist() == ref[0, seq:].tolist()


def test_large_graphs_are_written_with_external_data(tiny_dir, tmp_path, monkeypatch, padded_batch):
    shutil.copytree(tiny_dir, tmp_path / "m", ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setattr(export_module, "EXTERNAL_DATA_BYTES", 10_000)
    export(tmp_path / "m", tmp_path / "m", ["fp32", "q4"])
    onnx_dir = tmp_path / "m" / "onnx"
    assert (onnx_dir / "decoder_model_merged.onnx_data").exists()
    assert (onnx_dir / "decoder_model_merged.onnx").stat().st_size < 200_000
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["transformers.js_config"]["use_external_data_format"]["decoder_model_merged.onnx"] == 1
    batch, positions = padded_batch
    ref, _ = _prefill(OnnxQwen2VL(tiny_dir, "fp32"), batch, positions)
    got, _ = _prefill(OnnxQwen2VL(tmp_path / "m", "fp32"), batch, positions)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
