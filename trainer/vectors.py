"""Write the shared test vectors (test/vectors/*.json) from the Python reference implementations.

    python -m trainer.vectors [--model models/tiny-random] [--out test/vectors] [--check]

The reference for each rule is the Hugging Face implementation the real checkpoints use:
`Qwen2VLImageProcessorPil` for pixel values, the model folder's tokenizer for token ids,
`Qwen2VLModel.get_rope_index` for M-RoPE positions, and the PyTorch model for logits. The
TypeScript side reads these files and must reproduce them; `--check` regenerates everything in
memory and fails if the committed files are stale.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "tiny-random"
DEFAULT_OUT = ROOT / "test" / "vectors"
FLOAT_DIGITS = 6


def _floats(array) -> list:
    return np.round(np.asarray(array, dtype=np.float64), FLOAT_DIGITS).tolist()


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode()


def pattern_image(height: int, width: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Smooth gradients plus a little noise: compresses well, yet every pixel matters to a resize."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(4):
        phase = rng.uniform(0, 2 * np.pi)
        value = 127 + 80 * np.sin(x / (7 + 3 * c) + phase) * np.cos(y / (11 + 2 * c)) + 40 * (x / max(width, 1) - 0.5)
        value += rng.normal(0, 6, size=value.shape)
        channels.append(np.clip(np.round(value), 0, 255).astype(np.uint8))
    if mode == "L":
        return Image.fromarray(channels[0], mode="L")
    if mode == "RGBA":
        return Image.fromarray(np.stack(channels, axis=-1), mode="RGBA")
    return Image.fromarray(np.stack(channels[:3], axis=-1), mode="RGB")


# name, (height, width), seed, mode, processor overrides, how much of pixel_values to store
IMAGE_CASES = [
    ("224x224", (224, 224), 1, "RGB", {}, "summary"),
    ("56x56", (56, 56), 2, "RGB", {}, "full"),
    ("100x150-resized", (100, 150), 3, "RGB", {}, "summary"),
    ("70x98-round-half-even", (70, 98), 4, "RGB", {}, "summary"),
    ("20x20-upscaled", (20, 20), 5, "RGB", {}, "full"),
    ("400x350-max-pixels", (400, 350), 6, "RGB", {"max_pixels": 50176}, "summary"),
    ("grayscale-56x84", (56, 84), 7, "L", {}, "summary"),
    ("rgba-84x56", (84, 56), 8, "RGBA", {}, "summary"),
]
ERROR_CASES = [("aspect-ratio-250", (2, 500), 9, "aspect ratio")]


def _summary(pixel_values: np.ndarray) -> dict:
    n = pixel_values.shape[0]
    rows = sorted({0, n // 2, n - 1})
    channel = pixel_values.reshape(n, 3, -1)
    return {
        "sum": float(np.round(pixel_values.sum(dtype=np.float64), 3)),
        "abs_sum": float(np.round(np.abs(pixel_values).sum(dtype=np.float64), 3)),
        "channel_means": _floats(channel.mean(axis=(0, 2), dtype=np.float64)),
        "row_sums": _floats(pixel_values.sum(axis=1, dtype=np.float64)),
        "rows": {str(r): _floats(pixel_values[r]) for r in rows},
    }


def image_vectors(model_dir: Path) -> dict:
    from .processor import load_image_processor

    cases = []
    for name, (h, w), seed, mode, overrides, store in IMAGE_CASES:
        image = pattern_image(h, w, seed, mode)
        processor = load_image_processor(model_dir, **overrides)
        out = processor(images=[image], return_tensors="np")
        pixel_values, grid = out["pixel_values"], out["image_grid_thw"][0]
        t, gh, gw = (int(v) for v in grid)
        resized_h, resized_w = gh * processor.patch_size, gw * processor.patch_size
        rgb = image.convert("RGB")
        resized = rgb if (resized_h, resized_w) == (h, w) else rgb.resize((resized_w, resized_h), Image.BICUBIC)
        again = processor(images=[resized], return_tensors="np")["pixel_values"]
        if not np.array_equal(again, pixel_values):
            raise AssertionError(f"{name}: the stored resized image does not reproduce pixel_values")
        case = {
            "name": name,
            "png_base64": _png_b64(image),
            "mode": mode,
            "height": h,
            "width": w,
            "min_pixels": processor.size["shortest_edge"],
            "max_pixels": processor.size["longest_edge"],
            "resized_height": resized_h,
            "resized_width": resized_w,
            "resized": (resized_h, resized_w) != (h, w),
            "grid_thw": [t, gh, gw],
            "num_image_tokens": t * gh * gw // processor.merge_size**2,
            "pixel_values_shape": list(pixel_values.shape),
            "summary": _summary(pixel_values),
        }
        if case["resized"]:
            # The uint8 RGB image after PIL's bicubic resize (row-major HWC), so normalisation and patch
            # order can be checked exactly even where another resampler differs slightly.
            case["resized_rgb_base64"] = base64.b64encode(np.asarray(resized, dtype=np.uint8).tobytes()).decode()
        if store == "full":
            case["pixel_values"] = _floats(pixel_values)
        cases.append(case)
    errors = []
    for name, (h, w), seed, message in ERROR_CASES:
        errors.append({"name": name, "png_base64": _png_b64(pattern_image(h, w, seed)), "height": h, "width": w,
                       "error_contains": message})
    return {
        "description": "Qwen2VLImageProcessorPil outputs (docs/preprocessing.md). Rows are patches in the "
        "processor's order; each row is channel-major, then temporal (2), then 14x14 pixels.",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "cases": cases,
        "errors": errors,
    }


TOKENIZER_STRINGS = [
    "Hello world",
    "  two leading spaces and trailing   ",
    "tabs\tand\nnew\r\nlines\n\n\n",
    "<think>\nThe red cube is left of the blue sphere.\n</think>\n<answer>(A)</answer>",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|><image>What is this?",
    "Numbers 12345 and 3.14159, -7 and 50%",
    "naïve café: 日本語のテキスト 🙂👍",
    "don't I'll WE'RE they've",
    "Select from the following choices.\n(A) left\n(B) right",
    "Wait, let me re-check... Actually, the sphere is closer.",
    "",
]


def tokenizer_vectors(model_dir: Path) -> dict:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    cases = []
    for text in TOKENIZER_STRINGS:
        ids = tok.encode(text, add_special_tokens=False).ids
        hf_ids = hf(text, add_special_tokens=False)["input_ids"]
        if ids != hf_ids:
            raise AssertionError(f"tokenizers and transformers disagree on {text!r}: {ids} vs {hf_ids}")
        cases.append({
            "text": text,
            "ids": ids,
            "tokens": [tok.id_to_token(i) for i in ids],
            "decoded": tok.decode(ids, skip_special_tokens=False),
        })
    conversations = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red objects?"}]}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
    ]
    templates = [
        {"messages": m, "add_generation_prompt": True,
         "rendered": hf.apply_chat_template(m, tokenize=False, add_generation_prompt=True)}
        for m in conversations
    ]
    return {
        "description": f"Token ids of {model_dir.name}'s tokenizer (no special tokens added), and its chat template.",
        "model": model_dir.name,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "special_tokens": {t: tok.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                                            "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")},
        "cases": cases,
        "chat_template": templates,
    }


def _rope_case(model, name: str, segments_per_row: list[list], pad_left: list[int]) -> dict:
    """segments: ("text", n) or ("image", (t, h, w)); images become vision_start, pads, vision_end."""
    cfg = model.config
    rows, types, grids = [], [], []
    text_id = 100
    for segments in segments_per_row:
        ids, tt = [], []
        for kind, value in segments:
            if kind == "text":
                ids += list(range(text_id, text_id + value))
                tt += [0] * value
            else:
                n = value[0] * value[1] * value[2] // 4
                ids += [cfg.vision_start_token_id] + [cfg.image_token_id] * n + [cfg.vision_end_token_id]
                tt += [0] + [1] * n + [0]
                grids.append(list(value))
        rows.append(ids)
        types.append(tt)
    length = max(len(r) + p for r, p in zip(rows, pad_left, strict=False))
    pad = cfg.text_config.pad_token_id
    input_ids = [[pad] * (length - len(r)) + r for r in rows]
    token_types = [[0] * (length - len(t)) + t for t in types]
    mask = [[0] * (length - len(r)) + [1] * len(r) for r in rows]
    pos, deltas = model.model.get_rope_index(
        torch.tensor(input_ids), torch.tensor(token_types), torch.tensor(grids) if grids else None,
        attention_mask=torch.tensor(mask),
    )
    return {
        "name": name,
        "input_ids": input_ids,
        "mm_token_type_ids": token_types,
        "attention_mask": mask,
        "image_grid_thw": grids,
        "position_ids": pos.tolist(),
        "rope_deltas": deltas.view(-1).tolist(),
    }


def mrope_vectors(model) -> dict:
    cfg = model.config
    cases = [
        _rope_case(model, "reference-2.2", [[("text", 14), ("image", (1, 16, 16)), ("text", 9)]], [0]),
        _rope_case(model, "text-only", [[("text", 10)]], [0]),
        _rope_case(model, "two-images", [[("text", 3), ("image", (1, 4, 6)), ("text", 2), ("image", (1, 8, 4)), ("text", 4)]], [0]),
        _rope_case(model, "wide-image", [[("text", 2), ("image", (1, 2, 12)), ("text", 3)]], [0]),
        _rope_case(model, "left-padded-batch", [[("text", 2), ("image", (1, 4, 4)), ("text", 5)],
                                                [("text", 4), ("image", (1, 6, 4)), ("text", 6)]], [3, 0]),
        _rope_case(model, "left-padded-text-only", [[("text", 3)], [("text", 6)]], [3, 0]),
    ]
    ref = cases[0]
    # The documented example (docs/qwen2-vl.md, "M-RoPE position ids") must hold for the reference implementation.
    assert ref["position_ids"][0][0][79] == 23 and ref["position_ids"][0][0][88] == 32
    assert ref["rope_deltas"] == [-56]
    return {
        "description": "M-RoPE position ids [3][batch][seq] and rope deltas from Qwen2VLModel.get_rope_index "
        "(docs/qwen2-vl.md). Padding positions hold 0; a decode step at absolute index i of a row uses "
        "i_unpadded + rope_delta on all three axes.",
        "image_token_id": cfg.image_token_id,
        "vision_start_token_id": cfg.vision_start_token_id,
        "vision_end_token_id": cfg.vision_end_token_id,
        "spatial_merge_size": cfg.vision_config.spatial_merge_size,
        "cases": cases,
    }


def logits_vectors(model_dir: Path, model, images: dict) -> dict:
    """Reference logits of the PyTorch model for a left-padded batch: one row with an image, one text-only."""
    from .processor import load_processor

    processor = load_processor(model_dir)
    processor.tokenizer.padding_side = "left"
    image_case = images["56x56"]
    image = Image.open(io.BytesIO(base64.b64decode(image_case["png_base64"])))
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red objects are there?"}]}],
                                      tokenize=False, add_generation_prompt=True),
        processor.apply_chat_template([{"role": "user", "content": "Which is closer, the cube or the sphere?"}],
                                      tokenize=False, add_generation_prompt=True),
    ]
    batch = processor(text=prompts, images=[image], return_tensors="pt", padding=True)
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    position_ids, deltas = model.model.get_rope_index(input_ids, batch["mm_token_type_ids"], batch["image_grid_thw"],
                                                      attention_mask=mask)
    vocab_limit = processor.tokenizer.__len__()
    with torch.no_grad():
        prefill = model(**batch).logits
        # Teacher-forced continuation: feed fixed tokens and record the logits of each new position.
        forced = torch.tensor([[11, 12, 13], [21, 22, 23]])
        full = model(
            input_ids=torch.cat([input_ids, forced], dim=1),
            attention_mask=torch.cat([mask, torch.ones_like(forced)], dim=1),
            pixel_values=batch["pixel_values"],
            image_grid_thw=batch["image_grid_thw"],
            mm_token_type_ids=torch.cat([batch["mm_token_type_ids"], torch.zeros_like(forced)], dim=1),
        ).logits
        generated = model.generate(**batch, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    seq = input_ids.shape[1]
    greedy_cases = []
    for name in ("100x150-resized", "70x98-round-half-even", "rgba-84x56", "224x224", "grayscale-56x84"):
        case = images[name]
        picture = Image.open(io.BytesIO(base64.b64decode(case["png_base64"])))
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}],
            tokenize=False, add_generation_prompt=True)
        single = processor(text=[prompt], images=[picture], return_tensors="pt")
        greedy_cases.append({"image": name, "prompt": prompt,
                             "greedy_tokens_in_vocab": _greedy_in_vocab(model, single, vocab_limit, 10)[0]})
    return {
        "description": "PyTorch reference logits for models/tiny-random, fp32. position_ids from get_rope_index; "
        "prefill_last_logits are the logits of the last prompt position of each row; decode_logits[k][b] are "
        "the logits after feeding forced_tokens[b][:k+1]; greedy_tokens are transformers' greedy generate "
        "(8 tokens, no vocabulary limit, no stop), greedy_tokens_in_vocab the same restricted to ids below "
        "tokenizer_size. greedy_cases: 10 greedy in-vocabulary tokens for single image prompts of the image vectors.",
        "model": model_dir.name,
        "tokenizer_size": vocab_limit,
        "image": image_case["name"],
        "prompts": prompts,
        "input_ids": input_ids.tolist(),
        "attention_mask": mask.tolist(),
        "pixel_values": image_case["pixel_values"],
        "image_grid_thw": batch["image_grid_thw"].tolist(),
        "position_ids": position_ids.tolist(),
        "rope_deltas": deltas.view(-1).tolist(),
        "prefill_last_logits": _floats(prefill[:, -1, :]),
        "prefill_valid_abs_sum": float(np.round(prefill.abs()[mask.bool()].sum().item(), 3)),
        "forced_tokens": forced.tolist(),
        "decode_logits": [_floats(full[:, seq + k, :]) for k in range(forced.shape[1])],
        "greedy_tokens": generated[:, seq:].tolist(),
        "greedy_tokens_in_vocab": _greedy_in_vocab(model, batch, vocab_limit, 8),
        "greedy_cases": greedy_cases,
    }


def _greedy_in_vocab(model, batch, vocab_limit: int, steps: int) -> list[list[int]]:
    from transformers import LogitsProcessor, LogitsProcessorList

    class InVocab(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores[:, vocab_limit:] = -float("inf")
            return scores

    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=steps, do_sample=False, eos_token_id=None, pad_token_id=0,
                             logits_processor=LogitsProcessorList([InVocab()]))
    return out[:, batch["input_ids"].shape[1]:].tolist()


REWARD_CASES = [
    # completion, gold option text, whether the prompt opened <think> (template r1)
    (" The cube is left of the sphere. </think>\n<answer>left</answer>", "left", True),
    (" The cube is left. </think> <answer> left </answer>", "left", True),
    (" no closing tag <answer>left</answer>", "left", True),
    (" thinking </think><answer>left</answer> and then some text", "left", True),
    (" thinking </think><answer>left</answer>\n", "left", True),
    (" two answers </think><answer>left</answer><answer>right</answer>", "left", True),
    (" two answers </think><answer>right</answer><answer>left</answer>", "left", True),
    (" letters </think><answer>(A)</answer>", "left", True),
    (" letters </think><answer>(A)</answer>", "(A)", True),
    (" other case </think><answer>Left</answer>", "left", True),
    (" multi-line </think>\n<answer>\nleft\n</answer>", "left", True),
    ("left", "left", True),
    ("  left  ", "left", True),
    ("", "left", True),
    (" a </think> b </think><answer>x</answer>", "x", True),
    ("<think> instruct model </think><answer>B</answer>", "B", False),
    ("<think> unclosed think and no answer", "B", False),
    ("I think the answer is <answer>3</answer>.", "3", False),
    (" Wait, let me re-check the image. </think><answer>2</answer>", "2", True),
    (" The waiter is checking. Hmm. </think><answer>2</answer>", "2", True),
    (" It is impossible to verify yet. </think><answer>2</answer>", "2", True),
    (" Aha! The sphere is possibly closer. </think><answer>1</answer>", "1", True),
    (" nothing reflective here. </think><answer>1</answer>", "1", True),
    (" The waiter smiled; it is impossible. </think><answer>1</answer>", "1", True),
]


# completion, gold text, gold letter, choices: the accuracy reward of a question that lists lettered choices
LETTER_REWARD_CASES = [
    (" x </think><answer>B</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>(B)</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>b</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>The answer is B</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>A or B</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>A</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>right</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>Right</answer>", "right", "B", ["left", "right"]),
    (" x </think><answer>(C) 2</answer>", "2", "C", ["0", "1", "2", "3"]),
    (" x </think><answer>E</answer>", "2", "C", ["0", "1", "2", "3"]),
    ("C", "2", "(C)", ["0", "1", "2", "3"]),
]


def rewards_vectors() -> dict:
    from .rewards import accuracy_reward, extract_answer_text, format_reward, has_reflection, parse_completion

    cases = []
    for completion, gold, opens_think in REWARD_CASES:
        parsed = parse_completion(completion, opens_think)
        cases.append({
            "completion": completion,
            "gold": gold,
            "prompt_opens_think": opens_think,
            "format_reward": format_reward(completion),
            "accuracy_reward": accuracy_reward(completion, gold),
            "extracted_answer": extract_answer_text(completion),
            "think": parsed.think,
            "answer": parsed.answer,
            "reflection": has_reflection(completion),
        })
    from .scoring import lettered_accuracy_reward

    letter_cases = [{"completion": completion, "gold": gold, "gold_letter": letter, "choices": choices,
                     "accuracy_reward": lettered_accuracy_reward(completion, gold, letter, choices)}
                    for completion, gold, letter, choices in LETTER_REWARD_CASES]
    return {
        "description": "The paper's format and accuracy rewards (docs/method.md, Rewards), the completion parser used by "
        "/generate (think, answer, format_ok = format_reward == 1) and the reflection-word rule, from "
        "trainer/rewards.py; letter_cases: the accuracy reward of questions that list lettered choices "
        "(trainer/scoring.py lettered_accuracy_reward).",
        "cases": cases,
        "letter_cases": letter_cases,
    }


LR = ["left", "right"]
NUMS = ["1", "2", "3", "4"]
TF = ["True", "False"]
# name, response, gold letter, choices, whether the prompt opened <think> (template r1)
SCORING_CASES = [
    ("well-formed-letter", " The cube is left. </think>\n<answer>(A)</answer>", "A", LR, True),
    ("well-formed-option-text", " The cube is left. </think>\n<answer>left</answer>", "A", LR, True),
    ("tags-missing-sentence", "The answer is B", "B", LR, True),
    ("tags-missing-option-text", "  right \n", "B", LR, True),
    ("tags-missing-reasoning-names-two-letters", "Option A is left and option B is right, so B.", "B", LR, True),
    ("several-answer-blocks-gold-second", " t </think><answer>B</answer><answer>A</answer>", "A", LR, True),
    ("several-answer-blocks-gold-first", " t </think><answer>A</answer>\n<answer>A</answer>", "A", LR, True),
    ("first-single-line-span-is-a-later-block", " t </think><answer>\nA\nor B</answer><answer>B</answer>", "B", LR, True),
    ("answer-block-inside-think", " maybe <answer>A</answer>, no. </think><answer>B</answer>", "B", LR, True),
    ("letter-in-parentheses-with-text", " t </think><answer>(C) 3</answer>", "C", NUMS, True),
    ("letter-with-period", " t </think><answer>C. 3</answer>", "C", NUMS, True),
    ("lowercase-letter", "<answer>b</answer>", "B", LR, True),
    ("lowercase-letter-in-parentheses", " t </think><answer>(b) right</answer>", "B", LR, True),
    ("lowercase-article-is-not-a-token", " t </think><answer>a cube</answer>", "A", ["cube", "sphere"], True),
    ("the-answer-is-C", " Counting again. </think><answer>The answer is C.</answer>", "C", NUMS, True),
    ("two-letters", " t </think><answer>A or B</answer>", "A", LR, True),
    ("same-letter-twice", " t </think><answer>B, i.e. (B) right</answer>", "B", LR, True),
    ("letters-inside-a-word", " t </think><answer>AB</answer>", "A", LR, True),
    ("letter-next-to-digit-or-underscore", " t </think><answer>option_A or A1</answer>", "A", LR, True),
    ("pronoun-I-is-not-an-option-letter", " t </think><answer>I think it is D</answer>", "D", NUMS, True),
    ("capital-article-counts-as-a-letter", " t </think><answer>A cube is closer, so B</answer>", "B", LR, True),
    ("letter-beyond-the-options", " t </think><answer>A, not E</answer>", "A", NUMS, True),
    ("option-text-other-case", " t </think><answer>Left</answer>", "A", LR, True),
    ("option-text-other-case-of-another-option", " t </think><answer>RIGHT</answer>", "A", LR, True),
    ("option-text-of-another-letter", " t </think><answer>right</answer>", "A", LR, True),
    ("other-letter-with-gold-text", " t </think><answer>(B) left</answer>", "A", LR, True),
    ("multi-line-answer-one-line-content", " t </think>\n<answer>\nright\n</answer>", "B", LR, True),
    ("multi-line-answer-crlf", " t </think>\r\n<answer>\r\nB\r\n</answer>", "B", LR, True),
    ("multi-line-answer-two-lines", " Option A is left, option B is right. </think>\n<answer>\nSo\nB\n</answer>", "B", LR, True),
    ("trailing-text-after-answer", " t </think><answer>A</answer> I hope this helps.", "A", LR, True),
    ("trailing-newline-after-answer", " t </think><answer>A</answer>\n", "A", LR, True),
    ("empty-answer-block", " The answer is B. </think><answer></answer>", "B", LR, True),
    ("blank-answer-block", " t </think><answer> \n </answer>", "B", LR, True),
    ("whitespace-only-response", "  \n\t \u3000", "A", LR, True),
    ("empty-response", "", "A", LR, True),
    ("unicode-option-text", " 比较 </think><answer>日本</answer>", "A", ["日本", "中国"], True),
    ("unicode-option-text-other-case", " Der Würfel. </think><answer>ÄRGER</answer>", "A", ["ärger", "Öl"], True),
    ("unicode-final-sigma", " t </think><answer>ΣΟΦΟΣ</answer>", "B", ["λίθος", "σοφος"], True),
    ("unicode-no-casefold", " t </think><answer>STRASSE</answer>", "A", ["straße", "weg"], True),
    ("unicode-neighbours-are-not-word-characters", " t </think><answer>ÉB🙂</answer>", "B", LR, True),
    ("unicode-whitespace-is-stripped", " t </think><answer>\u3000\u0085B\u2003</answer>", "B", LR, True),
    ("bom-is-not-whitespace", " t </think><answer>\ufeffB</answer>", "B", LR, True),
    ("paragraph-separator-stays-on-the-line", " t </think><answer>A\u2029B</answer>", "A", LR, True),
    ("vsr-true-false", " t </think><answer>False</answer>", "B", TF, True),
    ("vsr-true-false-other-case", " t </think><answer>false</answer>", "B", TF, True),
    ("gold-given-as-parenthesised", " t </think><answer>C</answer>", "(C)", NUMS, True),
    ("no-choices-letters-A-to-F", "<answer>F</answer>", "F", [], True),
    ("instruct-well-formed", "<think> reasoning </think>\n<answer>B</answer>", "B", LR, False),
    ("instruct-think-not-opened", "reasoning </think><answer>B</answer>", "B", LR, False),
    ("instruct-leading-space-before-think", " <think> reasoning </think><answer>B</answer>", "B", LR, False),
    ("r1-response-reopens-think", "<think> x </think><answer>B</answer>", "B", LR, True),
]


def _prediction(task: str, source: str, correct: bool, format_ok: bool) -> dict:
    return {"task": task, "source": source, "correct": correct, "format_ok": format_ok}


# name, benchmark, predictions
AGGREGATION_CASES = [
    ("cv-bench-official-differs-from-plain", "cv-bench", [
        _prediction("Count", "ADE20K", True, True),
        _prediction("Count", "COCO", True, True),
        _prediction("Relation", "COCO", False, False),
        _prediction("Relation", "COCO", False, True),
        _prediction("Depth", "Omni3D", True, True),
        _prediction("Distance", "Omni3D", False, False),
    ]),
    ("cv-bench-missing-omni3d", "cv-bench", [
        _prediction("Count", "ADE20K", True, True),
        _prediction("Relation", "COCO", False, True),
    ]),
    ("cv-bench-unknown-source", "cv-bench", [
        _prediction("Count", "ADE20K", True, True),
        _prediction("Count", "COCO", True, True),
        _prediction("Depth", "Omni3D", True, True),
        _prediction("Depth", "KITTI", False, True),
    ]),
    ("blink-unweighted-subtask-mean", "blink", [
        _prediction("Relative_Depth", "blink", True, True),
        _prediction("Relative_Depth", "blink", True, False),
        _prediction("Relative_Depth", "blink", True, True),
        _prediction("Spatial_Relation", "blink", False, True),
    ]),
    ("vsr-plain-accuracy", "vsr", [
        _prediction("left of", "vsr", True, True),
        _prediction("on top of", "vsr", False, True),
        _prediction("left of", "vsr", True, False),
    ]),
    ("sat-plain-accuracy", "sat", [
        _prediction("obj_movement", "sat", False, False),
        _prediction("ego_movement", "sat", True, True),
    ]),
    ("spatial-synth-plain-accuracy", "spatial-synth", [
        _prediction("relation", "spatial-synth", True, True),
        _prediction("count", "spatial-synth", True, True),
        _prediction("count", "spatial-synth", False, True),
    ]),
]


def scoring_vectors() -> dict:
    from .scoring import STRATEGIES, extract_answer, is_correct, passes_format, score_predictions

    cases = []
    for name, response, gold, choices, opens_think in SCORING_CASES:
        extracted = {s: extract_answer(response, s, opens_think) for s in STRATEGIES}
        cases.append({
            "name": name,
            "response": response,
            "gold": gold,
            "choices": choices,
            "prompt_opens_think": opens_think,
            "passes_format": passes_format(response, opens_think),
            "extracted": extracted,
            "correct": {s: is_correct(extracted[s], gold, choices) for s in STRATEGIES},
            "correct_case_insensitive_text": {s: is_correct(extracted[s], gold, choices, case_insensitive_text=True)
                                              for s in STRATEGIES},
        })
    aggregation = [{"name": name, "benchmark": benchmark, "predictions": predictions,
                    "expected": score_predictions(predictions, benchmark)}
                   for name, benchmark, predictions in AGGREGATION_CASES]
    return {
        "description": "Evaluation scoring (docs/evaluation.md) from trainer/scoring.py: extraction per strategy "
        "(r1, strict; null = no answer), multiple-choice correctness per strategy, plain and with the "
        "case-insensitive option-text variant, and score aggregation per benchmark (official score null with "
        "a detail when it cannot be computed).",
        "strategies": list(STRATEGIES),
        "cases": cases,
        "aggregation": aggregation,
    }


def templates_vectors(model_dir: Path) -> dict:
    from transformers import AutoTokenizer

    from .prompts import TEMPLATES, render_prompt

    tok = AutoTokenizer.from_pretrained(str(model_dir))

    def chat(messages):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    question = "How many red objects are in the image? Select from the following choices.\n(A) 2\n(B) 3"
    cases = []
    for template in TEMPLATES:
        for has_image in (True, False):
            text = render_prompt(template, question, has_image, chat_template=chat)
            cases.append({
                "template": template,
                "has_image": has_image,
                "question": question,
                "prompt": text,
                "input_ids": tok(text, add_special_tokens=False)["input_ids"],
            })
    return {
        "description": f"Prompt templates from trainer/prompts.py; input_ids with {model_dir.name}'s tokenizer, "
        "before the single <|image_pad|> is expanded to the image's token count.",
        "model": model_dir.name,
        "cases": cases,
    }


def training_options_vectors() -> dict:
    from .config import option_table

    return {
        "description": "Every option a GRPO job (job.json) may set, from trainer/config.py: JSON type, default, "
        "whether required, choices (item_choices for a list's items) and the bounds validate() checks "
        "(minimum and maximum inclusive, exclusive_minimum not). Bounds that tie two options together are "
        "not listed. The service's request schema, dashboard form and fake trainer are checked against it.",
        "options": option_table(),
    }


def build_all(model_dir: Path) -> dict[str, dict]:
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    images = image_vectors(model_dir)
    by_name = {c["name"]: c for c in images["cases"]}
    return {
        "image_preprocessing.json": images,
        "tokenizer.json": tokenizer_vectors(model_dir),
        "mrope.json": mrope_vectors(model),
        "tiny_logits.json": logits_vectors(model_dir, model, by_name),
        "rewards.json": rewards_vectors(),
        "scoring.json": scoring_vectors(),
        "templates.json": templates_vectors(model_dir),
        "training_options.json": training_options_vectors(),
    }


def _close(a, b, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=False))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol * max(1.0, abs(a))
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    vectors = build_all(args.model)
    stale = []
    for name, data in vectors.items():
        path = args.out / name
        if args.check:
            if not path.exists() or not _close(json.loads(path.read_text()), json.loads(json.dumps(data)), 1e-5):
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
            print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)
    if stale:
        print(f"stale vectors: {stale}; run python -m trainer.vectors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
