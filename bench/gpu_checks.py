"""GPU checks of the model toolkit (foundation issue): bf16 against fp32 logits of the 2B-shaped
model on the attached accelerator, after the toolkit's own test-suite has run there.

    python3 bench/gpu_checks.py [--device cuda] [--preset qwen2-vl-2b] [--out build/gpu-checks]

Prints a markdown table for docs/gpu-runs.md: the machine, library versions, and for a batch of two
left-padded image prompts the max and mean absolute logit difference of bf16 against fp32, the
share of positions whose argmax agrees, and whether 16 greedy tokens agree.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.init_model import init_model  # noqa: E402
from trainer.processor import load_processor  # noqa: E402


def image(seed: int, size: int = 448):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="qwen2-vl-2b")
    parser.add_argument("--out", type=Path, default=Path("build/gpu-checks"))
    args = parser.parse_args()

    from transformers import Qwen2VLForConditionalGeneration
    from transformers import __version__ as tf_version

    folder = args.out / args.preset
    if not (folder / "model.safetensors").exists() and not (folder / "model.safetensors.index.json").exists():
        started = time.time()
        init_model(args.preset, folder, seed=0)
        print(f"init {args.preset}: {time.time() - started:.0f}s", file=sys.stderr)

    processor = load_processor(folder)
    processor.tokenizer.padding_side = "left"
    questions = ["How many red objects are in the image?", "Which is closer to the camera, the cube or the sphere?"]
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                                      tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    batch = processor(text=prompts, images=[image(1), image(2, 336)], return_tensors="pt", padding=True).to(args.device)
    valid = batch["attention_mask"].bool()

    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(folder), dtype=dtype).to(args.device).eval()
        with torch.no_grad():
            started = time.time()
            logits = model(**batch).logits.float()
            forward_s = time.time() - started
            tokens = model.generate(**batch, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
        results[dtype] = (logits.cpu(), tokens[:, batch["input_ids"].shape[1]:].cpu(), forward_s)
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
        print(f"{dtype}: forward {forward_s:.2f}s, peak memory {peak:.1f} GiB", file=sys.stderr)
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    fp32, bf16 = results[torch.float32], results[torch.bfloat16]
    diff = (bf16[0] - fp32[0]).abs()[valid.cpu()]
    agree = (bf16[0].argmax(-1) == fp32[0].argmax(-1))[valid.cpu()].float().mean().item()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"\n{device_name}; torch {torch.__version__}, transformers {tf_version}, preset {args.preset}\n")
    print("| comparison | max abs logit diff | mean abs diff | fp32 logit std | argmax agreement | 16 greedy tokens equal |")
    print("|---|---|---|---|---|---|")
    print(f"| bf16 vs fp32 | {diff.max().item():.4f} | {diff.mean().item():.5f} | {fp32[0][valid.cpu()].std().item():.4f} | "
          f"{agree:.1%} | {bool(torch.equal(fp32[1], bf16[1]))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
