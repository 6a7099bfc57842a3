"""Model presets: the shapes `trainer.init_model` can create, as plain data.

Every preset is a Qwen2-VL architecture (transformers' `Qwen2VLForConditionalGeneration`), so the
same code path serves a few-MB test model and the real 2B shapes. Numbers for `qwen2-vl-2b` are the
published Qwen2-VL-2B configuration (docs/qwen2-vl.md, "Shapes").
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Qwen2-VL's special tokens in id order. The real tokenizer places them right after its 151,643
# regular tokens; our own tokenizers place them right after theirs (see tokenizer.py).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


@dataclass(frozen=True)
class TextShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    # Rotary halves per axis (temporal, height, width); sums to head_dim / 2.
    mrope_section: tuple[int, int, int]
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class VisionShape:
    depth: int
    embed_dim: int
    num_heads: int
    mlp_ratio: int
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2


@dataclass(frozen=True)
class Preset:
    name: str
    text: TextShape
    vision: VisionShape
    # Regular (non-special) tokenizer entries. None: whatever BPE training on the generated corpus
    # reaches up to `bpe_vocab_size`. An int: pad the vocabulary with unreachable filler entries to
    # exactly this many, so the special tokens get the real model's ids.
    regular_vocab_size: int | None
    bpe_vocab_size: int
    # Rows of the embedding / LM head; at least the tokenizer's size (the real model pads to 151,936).
    vocab_size: int | None
    tie_word_embeddings: bool = True
    description: str = ""
    notes: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        text=TextShape(
            hidden_size=64,
            intermediate_size=172,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            mrope_section=(2, 3, 3),
            max_position_embeddings=4096,
        ),
        vision=VisionShape(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2),
        regular_vocab_size=None,
        bpe_vocab_size=2048,
        vocab_size=None,  # tokenizer size rounded up to a multiple of 64
        tie_word_embeddings=False,
        description="A few-MB Qwen2-VL for tests: 2 text layers of width 64, 2 vision blocks of width 32.",
    ),
    "nano": Preset(
        name="nano",
        text=TextShape(
            hidden_size=192,
            intermediate_size=640,
            num_hidden_layers=4,
            num_attention_heads=6,
            num_key_value_heads=2,
            mrope_section=(4, 6, 6),
            max_position_embeddings=2048,
        ),
        vision=VisionShape(depth=4, embed_dim=96, num_heads=3, mlp_ratio=2),
        regular_vocab_size=None,
        bpe_vocab_size=2048,
        vocab_size=None,
        tie_word_embeddings=True,
        description="The embedded model's shape (~3M parameters): 4 text layers of width 192, 4 vision blocks of "
        "width 96; trained by the project on CPU (docs/embedded-model.md).",
    ),
    "qwen2-vl-2b": Preset(
        name="qwen2-vl-2b",
        text=TextShape(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            mrope_section=(16, 24, 24),
        ),
        vision=VisionShape(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4),
        regular_vocab_size=151643,
        bpe_vocab_size=8192,
        vocab_size=151936,
        description="The real Qwen2-VL-2B shapes and special-token ids with random weights (for benchmarks).",
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
