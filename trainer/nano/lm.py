"""Supervised language modelling of image+text examples on a Qwen2-VL model: the loop shared by
`trainer.nano.pretrain` (base pre-training on scene descriptions) and `trainer.nano.sft` (the SFT baseline).

Each example is {"image": path, "prefix": text, "target": text}. The sequence is the image block
(`<|vision_start|><|image_pad|>...<|vision_end|>`), the prefix, the target and `<|endoftext|>`;
the loss covers the target and the end token only. Prefix and target are tokenized separately,
exactly as generation sees them (the prompt is tokenized alone, the model writes what follows).

A plain PyTorch loop (nanoGPT style): AdamW, linear warm-up then cosine decay, gradient clipping,
one metrics line per step in `<out>/metrics.jsonl`, a tqdm progress bar, the model saved with
`save_pretrained` at the end (and every `save_every` steps).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from ..metrics import JsonlWriter
from ..prompts import IMAGE_PLACEHOLDER


@dataclass
class LMConfig:
    model: str  # Hugging Face model folder to start from
    out: str  # folder for metrics.jsonl and the trained model
    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_pixels: int = 28224
    min_pixels: int = 3136
    seed: int = 0
    threads: int = 2
    save_every: int = 0  # 0 = only at the end
    log_every: int = 1


def lr_at(step: int, config: LMConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Batcher:
    """Turns examples into model inputs with the model's own processor."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.eos = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos

    def encode(self, example: dict) -> dict:
        with Image.open(example["image"]) as image:
            image = image.convert("RGB")
            prompt = self.processor(text=[IMAGE_PLACEHOLDER + example["prefix"]], images=[image], return_tensors="pt")
        target = self.tokenizer(example["target"], add_special_tokens=False)["input_ids"] + [self.eos]
        ids = prompt["input_ids"][0].tolist()
        return {
            "input_ids": ids + target,
            "labels": [-100] * len(ids) + target,
            "mm_token_type_ids": prompt["mm_token_type_ids"][0].tolist() + [0] * len(target),
            "pixel_values": prompt["pixel_values"],
            "image_grid_thw": prompt["image_grid_thw"],
        }

    def collate(self, encoded: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in encoded)
        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in encoded], dtype=torch.long)
        return {
            "input_ids": pad("input_ids", self.pad),
            "labels": pad("labels", -100),
            "mm_token_type_ids": pad("mm_token_type_ids", 0),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in encoded]),
            "pixel_values": torch.cat([e["pixel_values"] for e in encoded]),
            "image_grid_thw": torch.cat([e["image_grid_thw"] for e in encoded]),
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train(config: LMConfig, examples: list[dict], name: str = "lm", validation: list[dict] | None = None) -> Path:
    """Train, save the model folder at `config.out`/model, return its path."""
    from tqdm import tqdm
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    if not examples:
        raise ValueError("no training examples")
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    model = Qwen2VLForConditionalGeneration.from_pretrained(config.model, dtype=torch.float32, attn_implementation="sdpa")
    processor = load_processor(config.model, max_pixels=config.max_pixels, min_pixels=config.min_pixels)
    batcher = Batcher(processor)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.95),
    )
    order_rng = random.Random(config.seed)
    order: list[int] = []
    metrics = JsonlWriter(out / "metrics.jsonl")
    model.train()
    bar = tqdm(range(config.steps), desc=name, file=sys.stderr, mininterval=2.0, dynamic_ncols=True)
    ema = None
    try:
        for step in bar:
            started = time.time()
            batch_examples = []
            for _ in range(config.batch_size):
                if not order:
                    order = list(range(len(examples)))
                    order_rng.shuffle(order)
                batch_examples.append(examples[order.pop()])
            batch = batcher.collate([batcher.encode(e) for e in batch_examples])
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            value = loss.item()
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            tokens = int((batch["labels"] != -100).sum())
            seconds = time.time() - started
            if step % config.log_every == 0 or step == config.steps - 1:
                metrics.write({"step": step + 1, "total_steps": config.steps, "loss": value, "learning_rate": lr,
                               "grad_norm": float(grad_norm), "target_tokens": tokens, "seconds": seconds})
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.2e}", refresh=False)
            if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < config.steps:
                save(model, config.model, out / "model")
    finally:
        bar.close()
        metrics.close()
    if validation:
        val_loss = evaluate_loss(model, batcher, validation, config.batch_size)
        (out / "validation.json").write_text(json.dumps({"loss": val_loss, "examples": len(validation)}) + "\n")
        print(f"[{name}] validation loss {val_loss:.4f} on {len(validation)} examples", file=sys.stderr)
    return save(model, config.model, out / "model")


@torch.no_grad()
def evaluate_loss(model, batcher: Batcher, examples: list[dict], batch_size: int) -> float:
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = batcher.collate([batcher.encode(e) for e in examples[i:i + batch_size]])
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += model(**batch).loss.item() * n
        tokens += n
    model.train()
    return total / max(1, tokens)


COPIED = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json")


def save(model, source: str | Path, folder: Path) -> Path:
    """The model folder: safetensors + config, with the tokenizer, processor and generation files of
    the starting folder copied unchanged (so the exporter and the engine read the same files)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for name in COPIED:
        if (Path(source) / name).exists():
            (folder / name).write_bytes((Path(source) / name).read_bytes())
    return folder
