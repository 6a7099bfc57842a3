"""Write a random-initialised Qwen2-VL model folder in Hugging Face format.

    python -m trainer.init_model --preset tiny --out models/tiny-random [--seed 0]

The folder holds config.json, generation_config.json, preprocessor_config.json, tokenizer.json,
tokenizer_config.json (with the chat template), model.safetensors and a README, and loads with
`Qwen2VLForConditionalGeneration.from_pretrained` / `AutoProcessor.from_pretrained` unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from .presets import PRESETS, Preset, get_preset
from .tokenizer import save_tokenizer, special_token_ids, train_tokenizer

# CLIP normalisation and Qwen2-VL's resize bounds (docs/qwen2-vl.md, "Image tokens"); the service applies its own
# MAX_PIXELS on top, as training does.
PREPROCESSOR_CONFIG = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
    "do_convert_rgb": True,
    "do_resize": True,
    "resample": 3,  # bicubic
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "size": {"shortest_edge": 3136, "longest_edge": 12845056},
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_config(preset: Preset, ids: dict[str, int], tokenizer_size: int) -> Qwen2VLConfig:
    vocab_size = preset.vocab_size or -(-tokenizer_size // 64) * 64
    if vocab_size < tokenizer_size:
        raise ValueError(f"preset vocab_size {vocab_size} is smaller than the tokenizer ({tokenizer_size})")
    t, v = preset.text, preset.vision
    eos = ids["<|endoftext|>"]
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads,
        "max_position_embeddings": t.max_position_embeddings,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": t.rope_theta, "mrope_section": list(t.mrope_section)},
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "tie_word_embeddings": preset.tie_word_embeddings,
    }
    vision_config = {
        "depth": v.depth,
        "embed_dim": v.embed_dim,
        "hidden_size": t.hidden_size,
        "num_heads": v.num_heads,
        "mlp_ratio": v.mlp_ratio,
        "patch_size": v.patch_size,
        "spatial_merge_size": v.spatial_merge_size,
        "temporal_patch_size": v.temporal_patch_size,
    }
    return Qwen2VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=preset.tie_word_embeddings,
    )


def generation_config(ids: dict[str, int]) -> dict:
    # Both end tokens stop a base model (docs/method.md, "End tokens"); no sampling defaults are stored, so a
    # checkpoint never overrides the temperature a caller asks for.
    eos = ids["<|endoftext|>"]
    return {
        "bos_token_id": eos,
        "eos_token_id": [eos, ids["<|im_end|>"]],
        "pad_token_id": eos,
    }


def init_model(preset_name: str, out: Path, seed: int = 0, dtype: str = "fp32", corpus=None,
               preprocessor: dict | None = None) -> Path:
    """`corpus`: the tokenizer's training text (default: text_corpus); `preprocessor`: values that
    replace PREPROCESSOR_CONFIG's (e.g. a smaller max_pixels)."""
    preset = get_preset(preset_name)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(preset, seed=seed, corpus=corpus)
    ids = special_token_ids(tok)
    config = build_config(preset, ids, tok.get_vocab_size(with_added_tokens=True))

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(DTYPES[dtype]).eval()
    model.save_pretrained(out)

    save_tokenizer(tok, out, model_max_length=preset.text.max_position_embeddings)
    (out / "generation_config.json").write_text(json.dumps(generation_config(ids), indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR_CONFIG, **(preprocessor or {})}, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    (out / "README.md").write_text(_readme(preset, seed, dtype, n_params, tok.get_vocab_size()))
    return out


def _readme(preset: Preset, seed: int, dtype: str, n_params: int, vocab: int) -> str:
    return (
        f"# {preset.name} (random weights)\n\n"
        f"{preset.description}\n\n"
        "**Random weights: this model has not been trained and answers nonsense.** It exists to test and\n"
        "benchmark the code paths that real Qwen2-VL checkpoints take.\n\n"
        f"- parameters: {n_params:,} ({dtype})\n"
        f"- tokenizer: byte-level BPE trained by this project on generated text, {vocab} entries\n"
        f"- made by: `python -m trainer.init_model --preset {preset.name} --seed {seed} --dtype {dtype} --out DIR`\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="weight dtype (default fp32; bf16 for qwen2-vl-2b)")
    args = parser.parse_args(argv)
    dtype = args.dtype or ("bf16" if args.preset == "qwen2-vl-2b" else "fp32")
    out = init_model(args.preset, args.out, seed=args.seed, dtype=dtype)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
