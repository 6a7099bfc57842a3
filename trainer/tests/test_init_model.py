"""trainer.init_model writes a Hugging Face folder that transformers loads and runs unchanged."""

from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from trainer.init_model import build_config, init_model, main
from trainer.presets import SPECIAL_TOKENS, get_preset
from trainer.tokenizer import special_token_ids, train_tokenizer

from .conftest import chat_prompt, random_image

EXPECTED_FILES = {
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
    "tokenizer_config.json", "model.safetensors", "README.md",
}


def test_folder_has_every_hugging_face_file(tiny_dir):
    assert EXPECTED_FILES <= {p.name for p in tiny_dir.iterdir()}
    size = (tiny_dir / "model.safetensors").stat().st_size
    assert size < 5_000_000, f"tiny weights should be a few MB, got {size}"


def test_transformers_loads_and_runs_an_image_prompt(tiny_model, tiny_processor):
    prompt = chat_prompt(tiny_processor, "How many red objects?", with_image=True)
    batch = tiny_processor(text=[prompt], images=[random_image(90, 120, 0)], return_tensors="pt")
    with torch.no_grad():
        logits = tiny_model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], tiny_model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    out = tiny_model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 5


def test_special_tokens_follow_the_vocabulary_in_qwen2_vl_order(tiny_dir):
    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    regular = tok.get_vocab_size(with_added_tokens=False)
    assert ids == list(range(regular, regular + len(SPECIAL_TOKENS)))
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["image_token_id"] == tok.token_to_id("<|image_pad|>")
    assert config["vision_start_token_id"] == tok.token_to_id("<|vision_start|>")
    gen = json.loads((tiny_dir / "generation_config.json").read_text())
    # Both end tokens of a base model stop generation (docs/method.md, "End tokens"); no sampling defaults stored.
    assert gen["eos_token_id"] == [tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")]
    assert not {"temperature", "top_p", "top_k", "do_sample"} & gen.keys()


def test_hf_tokenizer_matches_the_tokenizers_file(tiny_dir):
    raw = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(tiny_dir))
    for text in ["<think> Wait, the red cube is left. </think><answer>(A)</answer>", "naïve 日本 🙂\n\n  x"]:
        assert hf(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids
    assert hf.bos_token is None and hf.eos_token == "<|endoftext|>"


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    init_model("tiny", a, seed=3)
    init_model("tiny", b, seed=3)
    init_model("tiny", c, seed=4)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_cli_writes_a_folder(tmp_path):
    assert main(["--preset", "tiny", "--out", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert EXPECTED_FILES <= {p.name for p in (tmp_path / "m").iterdir()}


def test_2b_preset_has_the_real_shapes_and_special_ids():
    preset = get_preset("qwen2-vl-2b")
    tok = train_tokenizer(preset)
    ids = special_token_ids(tok)
    assert ids["<|endoftext|>"] == 151643
    assert ids["<|im_start|>"] == 151644 and ids["<|im_end|>"] == 151645
    assert ids["<|vision_start|>"] == 151652 and ids["<|vision_end|>"] == 151653
    assert ids["<|image_pad|>"] == 151655
    config = build_config(preset, ids, tok.get_vocab_size(with_added_tokens=True))
    assert isinstance(config, Qwen2VLConfig)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (1536, 28, 12, 2)
    assert (text.intermediate_size, text.vocab_size) == (8960, 151936)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (vision.depth, vision.embed_dim, vision.num_heads, vision.hidden_size) == (32, 1280, 16, 1536)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    # Qwen2-VL-2B has 2.21 B parameters with its embeddings tied.
    assert 2.1e9 < n_params < 2.3e9, n_params
