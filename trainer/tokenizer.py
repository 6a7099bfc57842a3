"""The project's byte-level BPE tokenizer in Qwen2's layout, trained with `tokenizers`.

The pipeline is Qwen2's: NFC normalisation, the Qwen2 pre-tokenizer split, byte-level mapping, no
BOS, and the Qwen2-VL special tokens as added tokens after the regular vocabulary. The merges are
learned from `text_corpus` (nothing is downloaded). For the 2B-shaped preset the regular vocabulary
is padded with unreachable filler entries so that every special token has the real model's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from .presets import SPECIAL_TOKENS, Preset
from .text_corpus import generate_corpus

# Qwen2's pre-tokenizer split: contractions, letter runs with one optional leading non-letter,
# single digits, punctuation runs, newlines, and whitespace.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Our own chat template with Qwen2-VL's conventions: ChatML turns, a default system turn, and each
# image part rendered as <|vision_start|><|image_pad|><|vision_end|> (expanded later by the processor).
CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or part['type'] == 'image_url' -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + (image_count.value | string) + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _pipeline(model: models.BPE) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(preset: Preset, seed: int = 0, corpus: Iterable[str] | None = None) -> Tokenizer:
    """Train the regular vocabulary on generated text (`corpus`, default text_corpus's), pad it if
    the preset asks, add specials."""
    tok = _pipeline(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=preset.bpe_vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(generate_corpus(seed=seed) if corpus is None else corpus, trainer=trainer)

    if preset.regular_vocab_size is not None:
        tok = _pad_vocabulary(tok, preset.regular_vocab_size)

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _pad_vocabulary(tok: Tokenizer, size: int) -> Tokenizer:
    """Append filler entries no merge can produce, so the vocabulary has exactly `size` entries."""
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    if len(vocab) > size:
        raise ValueError(f"trained vocabulary has {len(vocab)} entries, more than the requested {size}")
    # Only merges create multi-symbol tokens, and none of the learned merges spells a filler
    # (the corpus never contains "<|filler"), so these ids are never produced by encoding.
    next_id = len(vocab)
    i = 0
    while next_id < size:
        filler = f"<|filler_{i}|>"
        if filler not in vocab:
            vocab[filler] = next_id
            next_id += 1
        i += 1
    return Tokenizer.from_str(json.dumps(spec))


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


def tokenizer_config(tok: Tokenizer, model_max_length: int) -> dict:
    """tokenizer_config.json in the layout of Qwen2-VL's, with our chat template."""
    added = {}
    for content in SPECIAL_TOKENS:
        added[str(tok.token_to_id(content))] = {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t != "<|endoftext|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        # A base (non-SFT) model ends its text with <|endoftext|>, as Qwen2-VL-2B base does.
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def save_tokenizer(tok: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = tokenizer_config(tok, model_max_length)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
