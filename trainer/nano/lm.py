"""Supervised language modelling of image+text examples on a Qwen2-VL model: the loop shared by
`trainer.nano.pretrain` (base pre-training) and `trainer.nano.sft` (the SFT baseline).

Each example is {"image": path or None, "prefix": text, "target": text}. The sequence is the image
block (`<|vision_start|><|image_pad|>...<|vision_end|>`, left out when "image" is None), the
prefix, the target and `<|endoftext|>`; the loss covers the target and the end token only (or,
when the example has "segments", the target's pieces marked trained: the grounding facts' answers). Prefix
and target are tokenized separately, exactly as generation sees them (the prompt is tokenized
alone, the model writes what follows).

A plain PyTorch loop (nanoGPT style): AdamW, linear warm-up then cosine decay, gradient clipping,
one metrics line per step in `<out>/metrics.jsonl`, a tqdm progress bar. On a GPU the forward and
backward run under bf16 autocast (fp32 master weights) and worker processes encode the batches
(images through the model's own processor). `<out>/checkpoint` (weights, optimiser, step) is
written every `save_every` steps and a run started again with the same `out` resumes from it, with
the same data order, so an interrupted stage loses at most `save_every` steps.

Every `eval_every` steps (and at the end) the validation examples give two losses: with each
example's own image and with the images rotated by one within the batch (another scene's
picture). Their difference, `image_gap`, is how much the model reads the picture; a model that
ignores the image has a gap of 0.
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
    out: str  # folder for metrics.jsonl, the checkpoint and the trained model
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
    device: str = "cpu"  # cpu | cuda | auto
    workers: int = 0  # batch-encoding worker processes (0: in the training process)
    save_every: int = 0  # checkpoint every N steps (0 = only the final model)
    eval_every: int = 0  # validation losses every N steps (0 = only at the end)
    log_every: int = 1
    max_seconds: float = 0  # stop early (with a checkpoint and the model saved) after this long; 0 = no limit
    # With max_seconds: after FIT_AFTER steps, shorten `steps` to what the measured speed fits in
    # max_seconds, so the schedule still decays to its floor (the new count is in metrics.jsonl).
    fit_to_time: bool = False
    stop_at: int = 0  # end the run after this step (the schedule still spans `steps`); 0 = run to the end
    length_window: int = 32  # batch examples of similar length within runs of this many batches (0 = random)
    # Keep the vision tower (merger included) as it is: the decoder learns to read a pre-trained
    # encoder (trainer.nano.vision) instead of collapsing it (LLaVA's first stage does the same).
    freeze_vision: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")


FIT_AFTER = 40  # at least one length window (32 batches): a window mixes short and long batches


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

    def target_ids(self, example: dict) -> tuple[list[int], list[int]]:
        """The target's token ids and labels. With "segments" ([text, trained] pieces whose texts
        make up the target) only the trained pieces (and the end token) are labels; each piece is
        tokenized alone, which this tokenizer's words-and-spaces pre-split makes the same as one pass."""
        if not example.get("segments"):
            ids = self.tokenizer(example["target"], add_special_tokens=False)["input_ids"] + [self.eos]
            return ids, list(ids)
        ids, labels = [], []
        for text, trained in example["segments"]:
            piece = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if trained else [-100] * len(piece)
        return ids + [self.eos], labels + [self.eos]

    def encode(self, example: dict) -> dict:
        target, labels = self.target_ids(example)
        if example.get("image") is None:
            ids = self.tokenizer(example["prefix"], add_special_tokens=False)["input_ids"] if example["prefix"] else []
            return {"input_ids": ids + target, "labels": [-100] * len(ids) + labels,
                    "mm_token_type_ids": [0] * (len(ids) + len(target))}
        with Image.open(example["image"]) as image:
            image = image.convert("RGB")
            prompt = self.processor(text=[IMAGE_PLACEHOLDER + example["prefix"]], images=[image], return_tensors="pt")
        ids = prompt["input_ids"][0].tolist()
        return {
            "input_ids": ids + target,
            "labels": [-100] * len(ids) + labels,
            "mm_token_type_ids": prompt["mm_token_type_ids"][0].tolist() + [0] * len(target),
            "pixel_values": prompt["pixel_values"],
            "image_grid_thw": prompt["image_grid_thw"],
        }

    def collate(self, encoded: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in encoded)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in encoded], dtype=torch.long)

        batch = {
            "input_ids": pad("input_ids", self.pad),
            "labels": pad("labels", -100),
            "mm_token_type_ids": pad("mm_token_type_ids", 0),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in encoded]),
        }
        with_image = [e for e in encoded if "pixel_values" in e]
        if with_image:
            batch["pixel_values"] = torch.cat([e["pixel_values"] for e in with_image])
            batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_image])
        return batch

    def __call__(self, examples: list[dict]) -> dict:
        return self.collate([self.encode(e) for e in examples])


def rotate_images(batch: dict) -> dict | None:
    """The batch with each example's picture replaced by the next example's (all of one size), or
    None when the batch has fewer than two pictures or pictures of different sizes."""
    grid = batch.get("image_grid_thw")
    if grid is None or len(grid) < 2 or not bool((grid == grid[0]).all()):
        return None
    n = len(grid)
    pixels = batch["pixel_values"].reshape(n, -1, batch["pixel_values"].shape[-1])
    return {**batch, "pixel_values": pixels.roll(1, dims=0).reshape(-1, pixels.shape[-1])}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    return device


def data_order(n: int, steps: int, batch_size: int, seed: int, lengths: list[int] | None = None,
               window: int = 0) -> list[int]:
    """Example indices for every step: whole shuffled passes over the examples, one after another.

    With `lengths` and `window` > 0, each run of `window` batches is regrouped so that examples of
    similar length share a batch (sorted by length, cut into batches, the batches shuffled): a batch
    is padded to its longest example, and with documents of 40 to 360 tokens half of a random
    batch was padding. Windows start at fixed offsets, so the order of the first k steps does not
    depend on `steps` (a resumed or shortened run sees the same batches)."""
    rng = random.Random(seed)
    span = batch_size * max(window, 1)
    need = -(-steps * batch_size // span) * span
    order: list[int] = []
    while len(order) < need:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    order = order[:need]
    if lengths is not None and window > 0:
        grouped: list[int] = []
        for start in range(0, need, span):
            chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
            cut = [chunk[i:i + batch_size] for i in range(0, span, batch_size)]
            random.Random(f"{seed}:{start}").shuffle(cut)  # per window: independent of `steps`
            grouped.extend(i for batch in cut for i in batch)
        order = grouped
    return order[: steps * batch_size]


def example_length(example: dict) -> int:
    """Characters of an example's text: the length key of `data_order` (tokens follow characters)."""
    return len(example.get("prefix", "")) + len(example.get("target", ""))


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def batches(examples: list[dict], order: list[int], batch_size: int, start_step: int, batcher: Batcher, workers: int):
    chunks = [order[i:i + batch_size] for i in range(start_step * batch_size, len(order), batch_size)]
    return torch.utils.data.DataLoader(_Indexed(examples), batch_sampler=chunks, collate_fn=batcher, num_workers=workers,
                                       prefetch_factor=4 if workers else None, persistent_workers=False)


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on every matrix except the token embeddings (tied to the LM head). The vision
    patch embedding is a matrix like any other: left without decay (an earlier version matched
    "embed" in its name too) its weights grew without bound and the image features with them."""
    decay, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed_tokens" not in name and "lm_head" not in name else other).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(config: LMConfig, examples: list[dict], name: str = "lm", validation: list[dict] | None = None) -> Path:
    """Train (or resume), save the model folder at `config.out`/model, return its path."""
    from tqdm import tqdm
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    if not examples:
        raise ValueError("no training examples")
    device = resolve_device(config.device)
    if device == "cpu":
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    checkpoint = out / "checkpoint"
    resume = (checkpoint / "state.pt").exists()
    source = checkpoint if resume else Path(config.model)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(source), dtype=torch.float32, attn_implementation="sdpa")
    model.to(device)
    if config.freeze_vision:
        model.model.visual.requires_grad_(False)
    processor = load_processor(config.model, max_pixels=config.max_pixels, min_pixels=config.min_pixels)
    batcher = Batcher(processor)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.learning_rate, betas=(0.9, 0.95))
    start = 0
    if resume:
        state = torch.load(checkpoint / "state.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        config.steps = state.get("steps", config.steps)  # a schedule fitted to time stays as it was
        print(f"[{name}] resuming from step {start}", file=sys.stderr)
    elif (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # a fresh start: no lines of an earlier run
    if start >= config.steps:
        return save(model, config.model, out / "model")
    order = data_order(len(examples), config.steps, config.batch_size, config.seed,
                       [example_length(e) for e in examples], config.length_window)
    # A run resumed at or past --stop-at only writes its validation and model (a run stopped early
    # by a signal, then cut at its last checkpoint).
    stopped = bool(config.stop_at) and start >= config.stop_at
    loader = [] if stopped else batches(examples, order, config.batch_size, start, batcher, config.workers)
    metrics = JsonlWriter(out / "metrics.jsonl")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    model.train()
    bar = tqdm(total=config.steps, initial=start, desc=name, file=sys.stderr, mininterval=2.0, dynamic_ncols=True)
    ema = None
    began = time.time()
    step = start
    try:
        started = time.time()
        for batch in loader:
            batch = _to(batch, device)
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       config.max_grad_norm)
            optimizer.step()
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                value = loss.item()
                ema = value if ema is None else 0.9 * ema + 0.1 * value
                tokens = int((batch["labels"] != -100).sum())
                record = {"step": step, "total_steps": config.steps, "loss": value, "learning_rate": lr,
                          "grad_norm": float(grad_norm), "target_tokens": tokens,
                          "seconds": (time.time() - started) / config.log_every}
                if validation and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                    record.update(validation_losses(model, batcher, validation, config.batch_size, device))
                    model.train()
                metrics.write(record)
                bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.2e}", refresh=False)
                started = time.time()
            bar.update(1)
            if config.fit_to_time and config.max_seconds and step == start + FIT_AFTER and not resume:
                per_step = (time.time() - began) / FIT_AFTER
                fitted = max(step + 1, int(0.93 * config.max_seconds / per_step))
                if fitted < config.steps:
                    print(f"[{name}] {per_step:.3f} s/step: {fitted} steps fit in {config.max_seconds:.0f} s",
                          file=sys.stderr)
                    config.steps = fitted
                    bar.total = fitted
                    (out / "lm_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
            if step >= config.steps:
                break
            if config.stop_at and step >= config.stop_at:
                save_checkpoint(model, optimizer, step, config.steps, config.model, checkpoint)
                print(f"[{name}] stopping at step {step} (--stop-at)", file=sys.stderr)
                break
            out_of_time = config.max_seconds and time.time() - began > config.max_seconds
            if (config.save_every and step % config.save_every == 0 and step < config.steps) or out_of_time:
                save_checkpoint(model, optimizer, step, config.steps, config.model, checkpoint)
            if out_of_time:
                print(f"[{name}] stopping at step {step}: over {config.max_seconds:.0f} s", file=sys.stderr)
                break
    finally:
        bar.close()
        metrics.close()
    if validation:
        losses = validation_losses(model, batcher, validation, config.batch_size, device)
        (out / "validation.json").write_text(json.dumps({**losses, "examples": len(validation), "step": step}) + "\n")
        print(f"[{name}] validation loss {losses['val_loss']:.4f}, image gap {losses.get('image_gap', 0):.4f} "
              f"on {len(validation)} examples", file=sys.stderr)
    return save(model, config.model, out / "model")


@torch.no_grad()
def validation_losses(model, batcher: Batcher, examples: list[dict], batch_size: int, device: str = "cpu") -> dict:
    """Mean target loss per token, and (where the batches hold pictures) the loss with each
    example's picture swapped for another's minus the loss with its own: the image gap."""
    model.eval()
    own = shuffled = own_with_image = 0.0
    tokens = shuffled_tokens = 0
    for i in range(0, len(examples), batch_size):
        batch = _to(batcher(examples[i:i + batch_size]), device)
        n = int((batch["labels"][:, 1:] != -100).sum())
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            own_loss = model(**batch).loss.item() * n
            own += own_loss
            tokens += n
            rotated = rotate_images(batch)
            if rotated is not None:
                shuffled += model(**rotated).loss.item() * n
                own_with_image += own_loss
                shuffled_tokens += n
    result = {"val_loss": own / max(1, tokens)}
    if shuffled_tokens:
        result["val_loss_other_image"] = shuffled / shuffled_tokens
        result["image_gap"] = result["val_loss_other_image"] - own_with_image / shuffled_tokens
    return result


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


def save_checkpoint(model, optimizer, step: int, steps: int, source: str | Path, folder: Path) -> None:
    """Weights (a loadable model folder) and the optimiser state, written beside and then renamed
    into place, so an interruption mid-write leaves the previous checkpoint whole."""
    tmp = folder.with_name(folder.name + ".tmp")
    save(model, source, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "steps": steps}, tmp / "state.pt")
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)
