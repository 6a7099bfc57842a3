"""The one script a lent GPU machine runs (issue 17): the paper's 2B recipe measured on one GPU, the
faster generation settings the installed stack allows, the ONNX fp16 export of the trained 2B
checkpoint with its parity against PyTorch, the nano model's GRPO stage, and the bf16-vs-fp32
logits check of the foundation issue. docs/gpu-runs.md says how to run it and what each row means.

    python3 bench/gpu_checks.py [--sections precision,recipe,speed,export,nano] [--dataset DIR]
        [--out FILE.json|DIR] [--work DIR] [--deadline S] [--recipe-budget S] ...
    python3 bench/gpu_checks.py --dry-run     # every section on the CPU with the tiny preset (test_gpu_checks.py)

Sections (each one a table; every row is written to --out as soon as it is measured):
  precision  bf16 against fp32 logits of the 2B-shaped model: max/mean |diff|, argmax agreement,
             whether 16 greedy tokens agree (the foundation issue's check, unchanged).
  recipe     (a) a few GRPO steps of configs/grpo-qwen2-vl-2b-sat-1gpu.json on the 2B-shaped model
             (random weights, real shapes, `trainer.init_model --preset qwen2-vl-2b`): seconds per
             step, rollout tokens/s, peak GPU memory, the paper's 1,500 steps extrapolated.
  speed      (b) the same steps with each faster setting (static KV cache, torch.compile'd decoding,
             flash-attention-2, no gradient checkpointing, eager attention and fp32 for comparison,
             TRL's continuous batching, vLLM), by default at 128 new tokens after a recipe row at
             that length: one row each with its gain; a setting that fails is a row with its error;
             then the settings that gained, combined. --setting adds rows without editing code.
  nano       (d) the nano model's GRPO stage (configs/grpo-nano-r1zero.json) on the device.
  export     (c) the recipe's trained checkpoint to ONNX fp16 (`python -m trainer.export`, started in
             the background when the recipe section ends) and its prefill logits against PyTorch fp32
             with onnxruntime's CUDA provider (skipped without one; --parity-provider cpu forces CPU).

Budgets: every section has a time budget (--<section>-budget) and the whole run a --deadline. A
GRPO row stops after the step that would overrun its budget and is not started when its expected
cost no longer fits; the export's budget is how long the run waits for it at the end. Skipped work
is a row saying why, never left out. SIGTERM ends the run after writing what was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer import grpo  # noqa: E402
from trainer.config import JobConfig  # noqa: E402
from trainer.init_model import init_model  # noqa: E402
from trainer.metrics import JsonlWriter  # noqa: E402
from trainer.processor import load_processor  # noqa: E402

SECTIONS = ("precision", "recipe", "speed", "nano", "export")
RECIPE_CONFIG = ROOT / "configs" / "grpo-qwen2-vl-2b-sat-1gpu.json"
NANO_CONFIG = ROOT / "configs" / "grpo-nano-r1zero.json"
# Seconds per section on the GPU, planned from estimates (no GPU has run this yet): with the setup
# (the 2B model's random init, about a minute) they fit the default --deadline of 480 s; the export runs in the background from the end of the recipe
# section and its budget is how long the run waits for it at the end. A 600 s call keeps room for
# the wheel install and the transfers.
BUDGETS = {"precision": 30, "recipe": 150, "speed": 150, "nano": 40, "export": 60}
PARITY_RESERVE_S = 30  # of the deadline, kept for the parity check after the export
DRY_BUDGETS = {name: 120 for name in SECTIONS}
# A dry run tries fewer settings: one that runs with generation options, one that changes the job,
# one whose module is missing and one that TRL refuses for an image model.
DRY_SPEED_SETTINGS = ["static-compile", "no-checkpointing", "flash-attention-2", "continuous-batching"]


class Terminated(Exception):
    """SIGTERM (e.g. from `timeout`): the rows measured so far are already written; stop there."""


def on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


def stop_if_terminated(row: dict) -> None:
    if row.get("terminated"):
        raise Terminated("SIGTERM during a GRPO row (its steps so far are recorded)")


def log(message: str) -> None:
    print(f"[gpu_checks] {message}", file=sys.stderr, flush=True)


# --- timing, memory, the report ---------------------------------------------------------------------

class Clock:
    def __init__(self, deadline_s: float):
        self.began = time.perf_counter()
        self.deadline_s = deadline_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def remaining(self) -> float:
        return self.deadline_s - self.elapsed()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float:
    """CUDA: torch.cuda.max_memory_allocated since the last reset; CPU: the process's peak RSS."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def finite(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN); everything else passes unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def short_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


class Report:
    """All figures of the run; written (JSON and markdown) after every row, so a run that is killed
    still leaves what it measured."""

    def __init__(self, json_path: Path, meta: dict):
        self.json_path = json_path
        self.md_path = json_path.with_suffix(".md")
        self.data: dict[str, Any] = {**meta, "setup": {}, "sections": {}}

    def section(self, name: str, budget_s: float) -> dict:
        entry = {"status": "running", "budget_s": budget_s, "seconds": None, "note": "", "rows": []}
        self.data["sections"][name] = entry
        self.save()
        return entry

    def add(self, section: str, row: dict) -> dict:
        self.data["sections"][section]["rows"].append(row)
        self.save()
        return row

    def save(self) -> None:
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(finite(self.data), indent=2) + "\n")
        tmp.replace(self.json_path)
        self.md_path.write_text(markdown(self.data))


# --- the model and the data ---------------------------------------------------------------------------

def ensure_model(preset: str, folder: Path, report: Report) -> Path:
    """The preset's random-weight model folder (fp32 weights, as the precision check needs)."""
    if not (folder / "model.safetensors").exists() and not (folder / "model.safetensors.index.json").exists():
        started = time.perf_counter()
        init_model(preset, folder, seed=0)
        report.data["setup"]["init_model_s"] = round(time.perf_counter() - started, 1)
        log(f"init {preset}: {report.data['setup']['init_model_s']}s")
    else:
        report.data["setup"]["init_model_s"] = 0.0
    report.data["setup"]["model"] = str(folder)
    return folder


def python_stand_in(out: Path, items: int, size: int, seed: int = 0) -> Path:
    """Items in the data set format (docs/architecture.md) with coloured discs to count or compare;
    used only when no spatial-synth data is given and no synth can run (no Node.js)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    colors = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (230, 200, 40)}
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(items):
        image = Image.new("RGB", (size, size), (200, 196, 188))
        draw = ImageDraw.Draw(image)
        names = list(colors)
        shown = [names[int(k)] for k in rng.integers(0, len(names), size=int(rng.integers(2, 6)))]
        xs = []
        for name in shown:
            r = size // 12
            x, y = int(rng.integers(r, size - r)), int(rng.integers(r, size - r))
            xs.append(x)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colors[name])
        path = f"images/train/{i:06d}.png"
        image.save(out / path)
        if i % 2 == 0:
            target = shown[0]
            count = shown.count(target)
            choices = [str(n) for n in range(max(0, count - 1), max(0, count - 1) + 4)]
            question, task, gold = f"How many {target} objects are in the image?", "Count", str(count)
        else:
            question, task = f"Is the {shown[0]} object left or right of the {shown[1]} object?", "Relation"
            choices = ["left", "right"]
            gold = "left" if xs[0] < xs[1] else "right"
        letter = chr(65 + choices.index(gold))
        prompt = f"{question} Select from the following choices.\n" + "\n".join(
            f"({chr(65 + k)}) {c}" for k, c in enumerate(choices))
        lines.append({"id": f"stand-in/train/{i:06d}", "images": [path], "question": question, "choices": choices,
                      "answer": letter, "answer_text": gold, "prompt": prompt, "task": task, "source": "stand-in",
                      "meta": {"generator": "bench/gpu_checks.py python_stand_in", "seed": seed}})
    (out / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def synth_command(work: Path, portable: Path) -> list[str] | None:
    """How to run spatial-synth here: the portable bundle (scripts/portable_synth.sh) or tsx."""
    if (portable / "synth.cjs").exists():
        unpacked = work / "synth"
        if not (unpacked / "synth.cjs").exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "portable_synth.py"), "unpack", str(portable),
                            str(unpacked)], check=True)
        return [str(unpacked / "node"), str(unpacked / "synth.cjs")]
    if shutil.which("node") and (ROOT / "node_modules" / ".bin" / "tsx").exists():
        return [str(ROOT / "node_modules" / ".bin" / "tsx"), str(ROOT / "src" / "cli" / "synth.ts")]
    return None


def ensure_dataset(args, report: Report) -> Path:
    """--dataset if given; else spatial-synth generated into --work; else the Python stand-in."""
    setup = report.data["setup"]
    if args.dataset:
        setup.update(data=str(args.dataset), data_source="given")
        return args.dataset
    out = args.work / ("stand-in" if args.dry_run else "spatial-synth")
    if (out / "train.jsonl").exists():
        setup.update(data=str(out), data_source="reused " + out.name)
        return out
    started = time.perf_counter()
    command = None if args.dry_run else synth_command(args.work, args.portable)
    if command:
        try:
            subprocess.run([*command, "--out", str(out), "--train", str(args.items), "--val", "0", "--test", "0",
                            "--seed", "1"], check=True, cwd=ROOT, capture_output=True, text=True)
            setup.update(data=str(out), data_source="spatial-synth (standard level, 448 px)")
        except (subprocess.CalledProcessError, OSError) as error:
            log(f"synth failed ({short_error(error)}); using the Python stand-in")
            command = None
    if not command:
        out = args.work / "stand-in"
        python_stand_in(out, args.items, args.image_size)
        setup.update(data=str(out), data_source=f"Python stand-in at {args.image_size} px; for spatial-synth pass --dataset")
    setup["data_s"] = round(time.perf_counter() - started, 1)
    return out


# --- GRPO rows ----------------------------------------------------------------------------------------

@dataclass
class Setting:
    """A way to run the recipe's steps: job options (trainer/config.py), TRL options
    (GRPOConfig fields the job config does not expose) and generation-config attributes set on the
    trainer's GenerationConfig after it is built (TRL builds it with disable_compile=True)."""

    name: str
    description: str
    job: dict = field(default_factory=dict)
    trl: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    requires: str = ""  # a module that must be importable, checked before the model is loaded
    kind: str = ""  # settings of one kind exclude each other when combined (attention, cache)


SPEED_SETTINGS = [  # in the order they are tried: the likeliest gains and the cheapest answers first
    # Prompts padded to a multiple of 64 tokens: a static cache (and the graphs compiled for it) then
    # keeps its shape from step to step instead of following each batch's longest prompt.
    Setting("static-compile", "static KV cache + torch.compile'd decoding (transformers' auto-compile)",
            trl={"cache_implementation": "static", "pad_to_multiple_of": 64}, generation={"disable_compile": False},
            kind="cache"),
    Setting("flash-attention-2", "flash-attention-2 instead of SDPA", job={"attn_implementation": "flash_attention_2"},
            requires="flash_attn", kind="attention"),
    Setting("vllm-colocate", "TRL's use_vllm in colocate mode", trl={"use_vllm": True, "vllm_mode": "colocate"},
            requires="vllm"),
    Setting("no-checkpointing", "gradient checkpointing off (more memory, no recomputation)",
            job={"gradient_checkpointing": "off"}),
    Setting("static-cache", "static KV cache, no compilation",
            trl={"cache_implementation": "static", "pad_to_multiple_of": 64}, kind="cache"),
    Setting("eager-attention", "eager attention instead of SDPA", job={"attn_implementation": "eager"},
            kind="attention"),
    Setting("fp32", "fp32 weights and compute instead of bf16", job={"dtype": "fp32"}, kind="dtype"),
    # TRL 1.16 refuses it for image models, after loading the model: last, as it costs a load.
    Setting("continuous-batching", "TRL's use_transformers_continuous_batching (paged attention)",
            trl={"use_transformers_continuous_batching": True}),
]


def parse_setting(text: str) -> Setting:
    """--setting NAME=JSON with JSON {"job": {...}, "trl": {...}, "generation": {...}}."""
    name, _, spec = text.partition("=")
    if not name or not spec:
        raise argparse.ArgumentTypeError(f"--setting {text!r}: expected NAME=JSON")
    try:
        data = json.loads(spec)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--setting {name}: {error}") from error
    unknown = set(data) - {"job", "trl", "generation", "description"} if isinstance(data, dict) else {"(not an object)"}
    if unknown:
        raise argparse.ArgumentTypeError(f"--setting {name}: unknown key(s) {sorted(unknown)}; use job, trl, generation")
    return Setting(name, data.get("description", "given with --setting"), dict(data.get("job", {})),
                   dict(data.get("trl", {})), dict(data.get("generation", {})))


class StepTimer:
    """Times optimizer steps and the generate calls inside them; stops training before a step that
    would overrun the budget."""

    def __init__(self, device: str, budget_s: float):
        from transformers import TrainerCallback

        self.device = device
        self.budget_s = budget_s
        self.steps: list[float] = []
        self.generate_s: list[float] = []
        self.generate_tokens: list[int] = []
        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                sync(timer.device)
                timer.began = timer.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                sync(timer.device)
                now = time.perf_counter()
                timer.steps.append(now - timer.last)
                timer.last = now
                if now - timer.began + min(timer.steps) > timer.budget_s:
                    control.should_training_stop = True

        self.callback = Callback()

    def wrap_generate(self, model, pad_token_id: int) -> None:
        original = model.generate

        def generate(*args, **kwargs):
            sync(self.device)
            started = time.perf_counter()
            out = original(*args, **kwargs)
            sync(self.device)
            self.generate_s.append(time.perf_counter() - started)
            prompt_length = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
            self.generate_tokens.append(int((out[:, prompt_length:] != pad_token_id).sum()))
            return out

        model.generate = generate


def grpo_figures(timer: StepTimer, paper_steps: int) -> dict:
    """Steady-state figures: the first step (warm-up, compilation) is left out when there are more."""
    steps = timer.steps
    if not steps:
        raise RuntimeError("no step finished")
    steady = steps[1:] or steps
    calls = len(timer.generate_s)
    skip = 1 if calls > 1 and calls == len(steps) else 0
    gen_s = sum(timer.generate_s[skip:])
    gen_tokens = sum(timer.generate_tokens[skip:])
    step_s = sum(steady) / len(steady)
    return {
        "steps": len(steps),
        "step_s": step_s,
        "first_step_s": steps[0],
        "warm_up_included": len(steps) == 1,
        "rollout_tokens_per_s": gen_tokens / gen_s if gen_s > 0 else None,
        "tokens_per_step": gen_tokens / max(1, calls - skip),
        "generate_share": gen_s / sum(steady) if calls else None,
        "paper_hours": step_s * paper_steps / 3600,
    }


def config_value(path: Path, key: str):
    """A job file's value, or the JobConfig default it leaves in place."""
    return json.loads(path.read_text()).get(key, getattr(JobConfig(), key))


def load_job(path: Path, overrides: dict) -> JobConfig:
    data = json.loads(path.read_text())
    data.update(overrides)
    return JobConfig.from_dict(data, origin=str(path)).validate()


def run_grpo(name: str, config_path: Path, overrides: dict, setting: Setting, device: str, out: Path,
             budget_s: float, paper_steps: int) -> dict:
    """One row: build the project's trainer (trainer/grpo.py) with the setting, run steps, time them."""
    row: dict[str, Any] = {"setting": name, "description": setting.description, "status": "ok", "error": None,
                           "job": setting.job, "trl": setting.trl, "generation": setting.generation}
    started = time.perf_counter()
    trainer = None
    try:
        if setting.requires and importlib.util.find_spec(setting.requires) is None:
            raise ImportError(f"{setting.requires} is not installed")
        config = load_job(config_path, {**overrides, **setting.job, "output_dir": str(out)})
        row["max_completion_length"] = config.max_completion_length
        row["completions_per_step"] = config.prompts_per_step * config.num_generations
        if out.exists():
            shutil.rmtree(out)
        reset_peak(device)
        original_args = grpo.recipe_args

        def recipe_args(*args, **kwargs):
            trl_args = original_args(*args, **kwargs)
            for key, value in setting.trl.items():
                if not hasattr(trl_args, key):
                    raise ValueError(f"this TRL's GRPOConfig has no option {key!r}")
                setattr(trl_args, key, value)
            return trl_args

        metrics = JsonlWriter(out / "metrics.jsonl")
        with mock.patch.object(grpo, "recipe_args", recipe_args):
            trainer, processor, stopper = grpo.build_trainer(config, device, out, grpo.Rollouts(None, 0), metrics)
        for key, value in setting.generation.items():
            setattr(trainer.generation_config, key, value)
        row["load_s"] = time.perf_counter() - started
        timer = StepTimer(device, max(1.0, budget_s - row["load_s"]))
        trainer.add_callback(timer.callback)
        timer.wrap_generate(trainer.model, processor.tokenizer.pad_token_id)
        row["generation_config"] = {k: getattr(trainer.generation_config, k, None)
                                    for k in ("cache_implementation", "disable_compile")}
        try:
            trainer.train()
        finally:
            metrics.close()
        if stopper.requested:
            row["terminated"] = True
        row.update(grpo_figures(timer, paper_steps))
        row["compiled"] = getattr(trainer.model, "_compiled_call", None) is not None
        row["peak_gib"] = peak_gib(device)
        row["trainer"] = trainer
    except Terminated:
        raise
    except Exception as error:  # noqa: BLE001 - a setting that fails is a row, not a crash
        row.update(status="error", error=short_error(error))
        log(f"{name}: {row['error']}")
        traceback.print_exc(file=sys.stderr)
        if device == "cuda":
            with contextlib.suppress(Exception):
                row["peak_gib"] = peak_gib(device)
        if trainer is not None:
            row["trainer"] = trainer
    finally:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            # build_trainer's SIGTERM handler finishes the step; ours, back now, ends the run.
            signal.signal(signal.SIGTERM, on_sigterm)
    row["seconds"] = time.perf_counter() - started
    return row


def release(row: dict, device: str) -> None:
    trainer = row.pop("trainer", None)
    if trainer is not None:
        with contextlib.suppress(Exception):
            trainer.accelerator.free_memory()
        del trainer
    free_memory(device)



def skipped(name: str, reason: str, setting: Setting | None = None) -> dict:
    row = {"setting": name, "status": "skipped", "error": reason}
    if setting is not None:
        row.update(description=setting.description, job=setting.job, trl=setting.trl, generation=setting.generation)
    return row


def combined_setting(tried: list[tuple[dict, Setting]], threshold: float) -> Setting | None:
    """The settings that gained at least `threshold` over the recipe, at most one of each kind."""
    best: dict[str, tuple[float, Setting]] = {}
    for row, setting in tried:
        if row["status"] != "ok" or setting.name == "recipe" or (row.get("gain") or 0) < threshold:
            continue
        kind = setting.kind or setting.name
        if kind not in best or row["gain"] > best[kind][0]:
            best[kind] = (row["gain"], setting)
    if len(best) < 2:
        return None
    parts = [s for _, s in best.values()]
    return Setting("combined: " + " + ".join(s.name for s in parts), "the settings above that gained, together",
                   job={k: v for s in parts for k, v in s.job.items()}, trl={k: v for s in parts for k, v in s.trl.items()},
                   generation={k: v for s in parts for k, v in s.generation.items()})


# --- sections -----------------------------------------------------------------------------------------

def image(seed: int, size: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))


def image_batch(processor, device: str, sizes: tuple[int, int], questions=None):
    questions = questions or ["How many red objects are in the image?",
                              "Which is closer to the camera, the cube or the sphere?"]
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                                      tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    images = [image(i + 1, size) for i, size in enumerate(sizes)]
    return processor(text=prompts, images=images, return_tensors="pt", padding=True).to(device)


def section_precision(args, model_dir: Path) -> dict:
    """bf16 against fp32 logits for a batch of two left-padded image prompts (the foundation check)."""
    from transformers import Qwen2VLForConditionalGeneration

    processor = load_processor(model_dir)
    processor.tokenizer.padding_side = "left"
    batch = image_batch(processor, args.device, (448, 336) if not args.dry_run else (56, 84))
    valid = batch["attention_mask"].bool().cpu()
    results = {}
    row: dict[str, Any] = {"comparison": "bf16 vs fp32", "status": "ok", "error": None}
    for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        reset_peak(args.device)
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=dtype).to(args.device).eval()
        with torch.no_grad():
            sync(args.device)
            started = time.perf_counter()
            logits = model(**batch).logits.float()
            sync(args.device)
            row[f"forward_s_{label}"] = time.perf_counter() - started
            tokens = model.generate(**batch, max_new_tokens=args.greedy_tokens, do_sample=False, eos_token_id=None,
                                    pad_token_id=0)
        results[label] = (logits.cpu(), tokens[:, batch["input_ids"].shape[1]:].cpu())
        row[f"peak_gib_{label}"] = peak_gib(args.device)
        del model, logits
        free_memory(args.device)
    fp32, bf16 = results["fp32"], results["bf16"]
    diff = (bf16[0] - fp32[0]).abs()[valid]
    row.update(
        max_abs_diff=diff.max().item(), mean_abs_diff=diff.mean().item(), fp32_std=fp32[0][valid].std().item(),
        argmax_agreement=(bf16[0].argmax(-1) == fp32[0].argmax(-1))[valid].float().mean().item(),
        greedy_tokens=args.greedy_tokens, greedy_equal=bool(torch.equal(fp32[1], bf16[1])),
    )
    return row


class OnnxOnProvider:
    """trainer.onnx_infer.OnnxQwen2VL with sessions on the given onnxruntime providers (that class
    uses the CPU provider only)."""

    def __new__(cls, folder: Path, dtype: str, providers: list[str]):
        import onnxruntime as ort

        from trainer.export import GRAPHS, SUFFIX
        from trainer.onnx_infer import _NP_DTYPES, OnnxQwen2VL

        model = OnnxQwen2VL.__new__(OnnxQwen2VL)
        model.config = json.loads((folder / "config.json").read_text())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        model.sessions = {graph: ort.InferenceSession(str(folder / "onnx" / f"{graph}{SUFFIX[dtype]}.onnx"), options,
                                                      providers=providers) for graph in GRAPHS}
        model.input_types = {graph: {i.name: _NP_DTYPES[i.type] for i in session.get_inputs()}
                             for graph, session in model.sessions.items()}
        text = model.config["text_config"]
        model.num_layers = text["num_hidden_layers"]
        model.kv_heads = text["num_key_value_heads"]
        model.head_dim = text["hidden_size"] // text["num_attention_heads"]
        model.image_token_id = model.config["image_token_id"]
        return model


def parity_provider(choice: str, dry_run: bool) -> tuple[str | None, str]:
    """The onnxruntime provider for the parity check, or None with the reason it is skipped."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if choice == "cpu":
        return "CPUExecutionProvider", ""
    if "CUDAExecutionProvider" in available:
        return "CUDAExecutionProvider", ""
    if choice == "cuda":
        return None, f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (it has {', '.join(available)})"
    if dry_run:
        return "CPUExecutionProvider", "dry run: the CPU provider"
    return None, (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (it has {', '.join(available)}); "
                  "carry onnxruntime-gpu or pass --parity-provider cpu")


def save_checkpoint(trainer, processor, base: Path, folder: Path) -> Path:
    """The trained policy as a model folder (what grpo.export_model saves, without the export)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    model.generation_config.eos_token_id = grpo.end_token_ids(processor.tokenizer)
    model.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    for name in ("preprocessor_config.json", "tokenizer_config.json", "tokenizer.json"):
        if (base / name).exists():
            (folder / name).write_bytes((base / name).read_bytes())
    return folder


class BackgroundExport:
    """`python -m trainer.export --dtype fp16` in a child process, started as soon as the checkpoint
    exists: the export runs on the CPU while the GPU rows go on (its log: <out>.log)."""

    def __init__(self, checkpoint: Path, out: Path, trained: bool, threads: int = 0):
        self.checkpoint, self.out, self.trained = checkpoint, out, trained
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        self.log_path = out.with_suffix(".log")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.started = time.perf_counter()
        with self.log_path.open("w") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trainer.export", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--dtype", "fp16"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(5))
        log(f"export of {checkpoint} started in the background (pid {self.process.pid}, log {self.log_path})")

    def wait(self, timeout_s: float) -> dict:
        from trainer.export import SUFFIX

        row: dict[str, Any] = {"step": "export fp16", "status": "ok", "error": None, "checkpoint": str(self.checkpoint),
                               "trained": self.trained}
        try:
            code = self.process.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        row["seconds"] = time.perf_counter() - self.started
        if code is None:
            row.update(status="error", error=f"not finished after {row['seconds']:.0f} s (killed; log {self.log_path})")
        elif code != 0:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            row.update(status="error", error=f"exit {code}: {' '.join(tail)[-300:]}")
        else:
            files = list((self.out / "onnx").glob(f"*{SUFFIX['fp16']}.onnx*"))
            row["size_mb"] = sum(f.stat().st_size for f in files) / 1e6
        return row


def parity(args, checkpoint: Path, exported: Path) -> dict:
    """Prefill logits of the fp16 graphs against PyTorch fp32 on the device, for two left-padded
    image prompts (what trainer/tests/test_export.py checks on the CPU)."""
    from transformers import Qwen2VLForConditionalGeneration

    started = time.perf_counter()
    row: dict[str, Any] = {"step": "parity fp16 vs PyTorch fp32", "status": "ok", "error": None}
    provider, note = parity_provider(args.parity_provider, args.dry_run)
    if provider is None:
        return {**row, "status": "skipped", "error": note}
    row["note"] = note
    try:
        onnx_model = OnnxOnProvider(exported, "fp16", [provider, "CPUExecutionProvider"] if provider != "CPUExecutionProvider"
                                    else [provider])
        row["provider"] = onnx_model.sessions["decoder_model_merged"].get_providers()[0]
        processor = load_processor(checkpoint)
        processor.tokenizer.padding_side = "left"
        batch = image_batch(processor, "cpu", (448, 336) if not args.dry_run else (56, 84))
        model = Qwen2VLForConditionalGeneration.from_pretrained(str(checkpoint), dtype=torch.float32).to(args.device).eval()
        with torch.no_grad():
            on_device = batch.to(args.device)
            reference = model(**on_device).logits.float().cpu().numpy()
            positions, _ = model.model.get_rope_index(on_device["input_ids"], on_device["mm_token_type_ids"],
                                                      on_device["image_grid_thw"],
                                                      attention_mask=on_device["attention_mask"])
        del model
        free_memory(args.device)
        batch = batch.to("cpu")
        embeds = onnx_model.prompt_embeds(batch["input_ids"].numpy(), batch["pixel_values"].numpy(),
                                          batch["image_grid_thw"].numpy())
        logits, _ = onnx_model.decode(embeds, batch["attention_mask"].numpy(), positions.cpu().numpy(),
                                      onnx_model.empty_past(batch["input_ids"].shape[0]), 0)
        valid = batch["attention_mask"].numpy().astype(bool)
        diff = np.abs(logits - reference)[valid]
        row.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                   reference_std=float(reference[valid].std()),
                   argmax_agreement=float((logits.argmax(-1) == reference.argmax(-1))[valid].mean()))
    except Exception as error:  # noqa: BLE001
        row.update(status="error", error=short_error(error))
        traceback.print_exc(file=sys.stderr)
    row["seconds"] = time.perf_counter() - started
    return row


# --- markdown ------------------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value != 0 and abs(value) < 0.01:
            return f"{value:.1e}"
        return f"{value:.{max(digits, 2) if abs(value) < 1 else digits}f}"
    return str(value)


def grpo_table(rows: list[dict], memory_label: str, extra: tuple[str, str] | None = None) -> list[str]:
    head = ["setting", "new tokens (max)", "completions/step", "steps timed", "s/step", "first step s",
            "rollout tokens/s", "tokens/step", "generate share", f"peak {memory_label} GiB", "1,500 steps h", "gain",
            "note"]
    if extra:
        head.insert(-1, extra[1])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            note = f"{r['status']}: {r.get('error')}"
        else:
            note = "warm-up included (1 step)" if r.get("warm_up_included") else ""
            if r.get("compiled"):
                note = (note + "; " if note else "") + "decoding compiled"
        cells = [r["setting"], fmt(r.get("max_completion_length")), fmt(r.get("completions_per_step")),
                 fmt(r.get("steps")), fmt(r.get("step_s")), fmt(r.get("first_step_s")),
                 fmt(r.get("rollout_tokens_per_s"), 0), fmt(r.get("tokens_per_step"), 0),
                 fmt(r["generate_share"] * 100, 0) + "%" if r.get("generate_share") is not None else "-",
                 fmt(r.get("peak_gib"), 1), fmt(r.get("paper_hours"), 1),
                 (fmt(r.get("gain")) + "x") if r.get("gain") is not None else "-", note.replace("|", "/")]
        if extra:
            cells.insert(-1, fmt(r.get(extra[0])))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(data: dict) -> str:
    setup = data.get("setup", {})
    memory_label = "GPU" if data.get("device_type") == "cuda" else "RSS"
    out = [f"{data.get('device')}; {data.get('versions_line')}; commit {data.get('commit')}; "
           f"{'dry run, ' if data.get('dry_run') else ''}{data.get('date')}", "",
           f"Command: `{data.get('command')}`", "",
           f"Model {setup.get('model')} (init {fmt(setup.get('init_model_s'), 0)} s); data {setup.get('data')} "
           f"({setup.get('data_source')})", ""]
    titles = {"precision": "bf16 against fp32 (the foundation check)", "recipe": "(a) the 1-GPU recipe",
              "speed": "(b) faster settings (gain: recipe s/step / row s/step)", "export": "(c) ONNX fp16 export and parity",
              "nano": "(d) the nano model's GRPO stage"}
    for name, section in data.get("sections", {}).items():
        out.append(f"### {titles.get(name, name)}")
        out.append("")
        out.append(f"Section {section['status']} in {fmt(section.get('seconds'), 0)} s of a {fmt(section.get('budget_s'), 0)} s "
                   f"budget{'; ' + section['note'] if section.get('note') else ''}.")
        out.append("")
        rows = section.get("rows", [])
        if name in ("recipe", "speed"):
            out += grpo_table(rows, memory_label)
        elif name == "nano":
            out += grpo_table(rows, memory_label, ("cpu_speedup", "speed-up over CPU s/step"))
        elif name == "precision":
            out.append("| comparison | max abs logit diff | mean abs diff | fp32 logit std | argmax agreement | "
                       "greedy tokens equal | forward s fp32 / bf16 | note |")
            out.append("|---|---|---|---|---|---|---|---|")
            for r in rows:
                out.append(f"| {r['comparison']} | {fmt(r.get('max_abs_diff'), 4)} | {fmt(r.get('mean_abs_diff'), 5)} | "
                           f"{fmt(r.get('fp32_std'), 4)} | {fmt((r.get('argmax_agreement') or 0) * 100, 1)}% | "
                           f"{fmt(r.get('greedy_equal'))} ({r.get('greedy_tokens')}) | "
                           f"{fmt(r.get('forward_s_fp32'))} / {fmt(r.get('forward_s_bf16'))} | "
                           f"{'' if r['status'] == 'ok' else r['status'] + ': ' + str(r.get('error'))} |")
        elif name == "export":
            out.append("| step | provider | seconds | size MB | max abs logit diff | mean abs diff | ref logit std | "
                       "argmax agreement | note |")
            out.append("|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                note = r.get("note") or ""
                if r["status"] != "ok":
                    note = f"{r['status']}: {r.get('error')}"
                elif r["step"].startswith("export") and not r.get("trained"):
                    note = "checkpoint: the untrained init (no recipe row)"
                agreement = r.get("argmax_agreement")
                out.append(f"| {r['step']} | {r.get('provider', '-')} | {fmt(r.get('seconds'), 1)} | "
                           f"{fmt(r.get('size_mb'), 0)} | {fmt(r.get('max_abs_diff'), 4)} | {fmt(r.get('mean_abs_diff'), 5)} | "
                           f"{fmt(r.get('reference_std'), 3)} | "
                           f"{fmt(agreement * 100 if agreement is not None else None, 1)}{'%' if agreement is not None else ''} | "
                           f"{note.replace('|', '/')} |")
        out.append("")
    return "\n".join(out) + "\n"


# --- main ----------------------------------------------------------------------------------------------

def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "trl", "accelerate", "datasets", "onnxruntime", "flash_attn", "vllm"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 - not installed, or broken: either way not usable
            found[name] = None
    if torch.cuda.is_available():
        found["cuda"] = torch.version.cuda
    return found


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() + ("+changes" if subprocess.run(
                                  ["git", "status", "--porcelain", "--untracked-files=no", "bench", "trainer", "configs"],
                                  cwd=ROOT, capture_output=True, text=True).stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="every section on CPU with the tiny preset, 2 GRPO steps, tiny sizes (the test suite's run)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available; cpu in a dry run)")
    parser.add_argument("--preset", default=None, help="model preset (default qwen2-vl-2b; tiny in a dry run)")
    parser.add_argument("--out", type=Path, default=Path("build/gpu-checks"),
                        help="the JSON of all figures (FILE.json), or a folder that gets gpu-checks.json; "
                             "the markdown tables go beside it (.md)")
    parser.add_argument("--work", type=Path, default=None,
                        help="models, data and job folders (default: build/gpu-checks; build/gpu-checks-dry in a dry run)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="a data set folder (e.g. spatial-synth carried with the call); default: generate one")
    parser.add_argument("--portable", type=Path, default=ROOT / "build" / "portable",
                        help="scripts/portable_synth.sh's bundle, used to generate spatial-synth without Node.js")
    parser.add_argument("--items", type=int, default=None, help="items to generate (default 64; 8 in a dry run)")
    parser.add_argument("--image-size", type=int, default=None, help="stand-in image size (default 448; 56 in a dry run)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole run, setup included (default 480; 600 in a dry run)")
    for name in SECTIONS:
        parser.add_argument(f"--{name}-budget", type=float, default=None,
                            help=f"seconds for the {name} section (default {BUDGETS[name]})")
    parser.add_argument("--steps", type=int, default=None, help="most GRPO steps of the recipe row (default 3; 2 dry)")
    parser.add_argument("--speed-steps", type=int, default=2, help="most GRPO steps per speed row (default 2)")
    parser.add_argument("--max-completion-length", type=int, default=None,
                        help="new tokens per completion in the recipe row (default: the config's 700)")
    parser.add_argument("--speed-max-completion-length", type=int, default=None,
                        help="new tokens per completion in the speed rows (default 128; the recipe's in a dry run); "
                             "a recipe-settings row at this length is their baseline unless it equals the recipe's")
    parser.add_argument("--speed-settings", default=None,
                        help="built-in settings to try, in order (default: all; a few in a dry run): "
                             + ", ".join(s.name for s in SPEED_SETTINGS))
    parser.add_argument("--setting", type=parse_setting, action="append", default=[], metavar="NAME=JSON",
                        help='another speed row: {"job": {...}, "trl": {...}, "generation": {...}}')
    parser.add_argument("--combine-threshold", type=float, default=1.05,
                        help="settings with at least this gain are combined in a last speed row")
    parser.add_argument("--paper-steps", type=int, default=1500)
    parser.add_argument("--parity-provider", choices=("auto", "cuda", "cpu"), default="auto",
                        help="onnxruntime provider of the parity check (auto: CUDA if present, else skipped; "
                             "CPU in a dry run)")
    parser.add_argument("--greedy-tokens", type=int, default=None, help="precision check's greedy tokens (default 16)")
    parser.add_argument("--nano-base", type=Path, default=ROOT / "models" / "nano-base")
    parser.add_argument("--nano-dataset", type=Path, default=None, help="default: the data set of the 2B rows")
    parser.add_argument("--nano-max-pixels", type=int, default=28224, help="the easy level's 168x168 images")
    parser.add_argument("--nano-steps", type=int, default=None, help="most nano GRPO steps (default 6; 1 in a dry run)")
    parser.add_argument("--nano-cpu-step-seconds", type=float, default=None,
                        help="the CPU's seconds per nano GRPO step, to compare with (from a CPU run's metrics.jsonl)")
    args = parser.parse_args(argv)

    dry = args.dry_run
    args.device = args.device or ("cpu" if dry or not torch.cuda.is_available() else "cuda")
    args.preset = args.preset or ("tiny" if dry else "qwen2-vl-2b")
    args.work = args.work or (Path("build/gpu-checks-dry") if dry else Path("build/gpu-checks"))
    args.items = args.items or (8 if dry else 64)
    args.image_size = args.image_size or (56 if dry else 448)
    args.deadline = args.deadline or (600.0 if dry else 480.0)
    args.steps = args.steps or (2 if dry else 3)
    args.nano_steps = args.nano_steps or (1 if dry else 6)
    args.greedy_tokens = args.greedy_tokens or (4 if dry else 16)
    args.budgets = {name: getattr(args, f"{name}_budget") or (DRY_BUDGETS if dry else BUDGETS)[name] for name in SECTIONS}
    args.section_list = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.section_list if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    default_settings = DRY_SPEED_SETTINGS if dry else [s.name for s in SPEED_SETTINGS]
    names = [s.strip() for s in args.speed_settings.split(",") if s.strip()] if args.speed_settings else default_settings
    known = {s.name: s for s in SPEED_SETTINGS}
    if any(n not in known for n in names):
        parser.error(f"unknown speed setting(s) {[n for n in names if n not in known]}; choose from {', '.join(known)}")
    args.settings = [known[n] for n in names] + args.setting
    if args.out.suffix != ".json":
        args.out = args.out / "gpu-checks.json"
    return args


def grpo_overrides(args, model_dir: Path, dataset: Path, steps: int, max_completion_length: int | None) -> dict:
    overrides = {"base_model": str(model_dir), "dataset": str(dataset), "steps": steps, "save_steps": 10**6,
                 "rollouts_per_step": 0, "max_items": 0, "device": args.device, "job_id": "gpu-checks"}
    if args.dry_run:
        # The recipe's structure (micro-batches of one prompt, gradient accumulation, bf16, gradient
        # checkpointing) at the tiny model's scale.
        overrides.update(num_generations=2, prompts_per_step=2, micro_batch_prompts=1, max_completion_length=8,
                         learning_rate=1e-4)
    if max_completion_length:
        overrides["max_completion_length"] = max_completion_length
    return overrides


def job_folder(work: Path, name: str) -> Path:
    return work / "jobs" / "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


class Run:
    """The sections in order, sharing the model folder, the data, the recipe row and the checkpoint."""

    def __init__(self, args):
        self.args = args
        self.clock = Clock(args.deadline)
        args.work.mkdir(parents=True, exist_ok=True)
        found = versions()
        device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                       else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
        if args.device == "cuda":
            device_name += f", {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
        versions_line = ", ".join(f"{k} {v}" for k, v in found.items() if v and k != "python")
        self.report = Report(args.out, {
            "device": device_name, "device_type": args.device, "versions": found, "versions_line": versions_line,
            "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "dry_run": args.dry_run,
            "command": "python3 bench/gpu_checks.py " + " ".join(args.argv), "preset": args.preset,
            "paper_steps": args.paper_steps, "budgets": args.budgets, "deadline_s": args.deadline,
        })
        log(f"{device_name}; {versions_line}; sections {', '.join(args.section_list)}")
        self.recipe_row: dict | None = None
        self.checkpoint: Path | None = None
        self.export: BackgroundExport | None = None

    def section(self, name: str) -> tuple[dict, float, float]:
        budget = min(self.args.budgets[name], max(0.0, self.clock.remaining()))
        return self.report.section(name, self.args.budgets[name]), time.perf_counter(), budget

    def close(self, entry: dict, began: float, note: str = "") -> None:
        statuses = {r["status"] for r in entry["rows"]}
        entry["status"] = "ok" if statuses <= {"ok"} and entry["rows"] else ("partial" if "ok" in statuses else "failed")
        entry["seconds"] = time.perf_counter() - began
        entry["note"] = note
        self.report.save()

    def start_export(self, source: Path, trained: bool) -> None:
        if "export" in self.args.section_list and self.export is None:
            try:
                self.export = BackgroundExport(source, self.args.work / "export-fp16", trained,
                                               threads=1 if self.args.dry_run else 0)
            except Exception as error:  # noqa: BLE001
                log(f"export not started: {short_error(error)}")

    def run(self) -> None:
        args, report = self.args, self.report
        self.model_dir = ensure_model(args.preset, args.work / args.preset, report)
        earlier = args.work / "recipe-checkpoint"
        if "recipe" not in args.section_list and (earlier / "model.safetensors").exists():
            # A later call on the same machine (speed or export alone) uses the checkpoint of an earlier one.
            self.checkpoint = earlier
            report.data["setup"]["checkpoint"] = f"{earlier} (an earlier run's)"
        self.dataset = ensure_dataset(args, report)
        report.save()
        try:
            for name in args.section_list_ordered:
                getattr(self, f"run_{name}")()
        except Terminated:
            report.data["terminated"] = True
            log("SIGTERM: stopped; the figures measured so far are written")
        report.data["seconds"] = self.clock.elapsed()
        report.save()

    def run_precision(self) -> None:
        entry, began, budget = self.section("precision")
        if budget <= 0:
            self.report.add("precision", {"comparison": "bf16 vs fp32", "status": "skipped", "error": "deadline reached"})
        else:
            try:
                self.report.add("precision", section_precision(self.args, self.model_dir))
            except Exception as error:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                self.report.add("precision", {"comparison": "bf16 vs fp32", "status": "error", "error": short_error(error)})
        self.close(entry, began)

    def run_recipe(self) -> None:
        args = self.args
        entry, began, budget = self.section("recipe")
        overrides = grpo_overrides(args, self.model_dir, self.dataset, args.steps, args.max_completion_length)
        if budget <= 0:
            self.report.add("recipe", skipped("recipe", "deadline reached"))
        else:
            row = run_grpo("recipe", RECIPE_CONFIG, overrides, Setting("recipe", "the config as it is"), args.device,
                           job_folder(args.work, "recipe"), budget, args.paper_steps)
            if row["status"] == "ok":
                row["gain"] = 1.0
                try:
                    trainer = row["trainer"]
                    self.checkpoint = save_checkpoint(trainer, trainer.processing_class, self.model_dir,
                                                      args.work / "recipe-checkpoint")
                except Exception as error:  # noqa: BLE001
                    traceback.print_exc(file=sys.stderr)
                    row["note"] = f"checkpoint not saved: {short_error(error)}"
            release(row, args.device)
            self.recipe_row = self.report.add("recipe", row)
            stop_if_terminated(row)
            if self.checkpoint:
                self.start_export(self.checkpoint, trained=True)
        self.close(entry, began, f"{overrides.get('max_completion_length', 'the config')} new tokens max")

    def run_speed(self) -> None:
        args = self.args
        entry, began, budget = self.section("speed")
        recipe_length = grpo_overrides(args, self.model_dir, self.dataset, 1, args.max_completion_length).get(
            "max_completion_length", config_value(RECIPE_CONFIG, "max_completion_length"))
        length = args.speed_max_completion_length or (recipe_length if args.dry_run else 128)
        # The recipe checkpoint when there is one: its weights are bf16 like the GPU rows (a faster load).
        base = self.checkpoint or self.model_dir
        overrides = grpo_overrides(args, base, self.dataset, args.speed_steps, length)
        baseline = self.recipe_row if (self.recipe_row and self.recipe_row["status"] == "ok"
                                       and self.recipe_row.get("max_completion_length") == length) else None
        queue = list(args.settings)
        if baseline is None:
            queue.insert(0, Setting("recipe", f"the config as it is, {length} new tokens (this section's baseline)"))
        tried: list[tuple[dict, Setting]] = []
        combined_done = False
        while queue or not combined_done:
            if queue:
                setting = queue.pop(0)
            else:
                combined_done = True
                setting = combined_setting(tried, args.combine_threshold)
                if setting is None:
                    self.report.add("speed", skipped("combined", f"fewer than two settings gained "
                                                     f"{args.combine_threshold:.2f}x or more"))
                    break
            left = budget - (time.perf_counter() - began)
            cost = (baseline["load_s"] + 2 * baseline["step_s"]) if baseline else 0.0
            if left <= 0 or left < 0.6 * cost:
                self.report.add("speed", skipped(setting.name, f"speed budget spent ({max(0.0, left):.0f} s left, "
                                                 f"a row needs about {cost:.0f} s)", setting))
                continue
            row = run_grpo(setting.name, RECIPE_CONFIG, overrides, setting, args.device, job_folder(args.work, setting.name),
                           left, args.paper_steps)
            release(row, args.device)
            if baseline is None and setting.name == "recipe" and row["status"] == "ok":
                baseline = row
            if baseline and row["status"] == "ok":
                row["gain"] = baseline["step_s"] / row["step_s"]
            tried.append((self.report.add("speed", row), setting))
            stop_if_terminated(row)
        against = "the recipe row of (a)" if baseline is self.recipe_row else "this section's recipe row"
        self.close(entry, began, f"{length} new tokens max; gain against {against}"
                   + ("; the ONNX export ran on the CPU meanwhile" if self.export else ""))

    def run_nano(self) -> None:
        args = self.args
        entry, began, budget = self.section("nano")
        if budget <= 0:
            self.report.add("nano", skipped("nano", "deadline reached"))
        else:
            overrides = {"base_model": str(args.nano_base), "dataset": str(args.nano_dataset or self.dataset),
                         "steps": args.nano_steps, "save_steps": 10**6, "rollouts_per_step": 0, "device": args.device,
                         "max_pixels": args.nano_max_pixels, "job_id": "gpu-checks-nano"}
            if args.dry_run:
                overrides.update(num_generations=2, prompts_per_step=2, micro_batch_prompts=2, max_completion_length=8)
            row = run_grpo("nano GRPO", NANO_CONFIG, overrides, Setting("nano", "configs/grpo-nano-r1zero.json"),
                           args.device, job_folder(args.work, "nano"), budget, config_value(NANO_CONFIG, "steps"))
            release(row, args.device)
            if row["status"] == "ok" and args.nano_cpu_step_seconds:
                row["cpu_step_s"] = args.nano_cpu_step_seconds
                row["cpu_speedup"] = args.nano_cpu_step_seconds / row["step_s"]
            self.report.add("nano", row)
            stop_if_terminated(row)
        self.close(entry, began, "1,500 steps h column: the config's 150 steps instead"
                   + (f"; CPU reference {args.nano_cpu_step_seconds} s/step" if args.nano_cpu_step_seconds else ""))

    def run_export(self) -> None:
        args = self.args
        entry, began, budget = self.section("export")
        if self.export is None and self.checkpoint is not None:
            self.start_export(self.checkpoint, trained=True)
        if self.export is None:
            if self.clock.remaining() < 0.5 * args.budgets["export"]:
                self.report.add("export", {"step": "export fp16", "status": "skipped",
                                           "error": f"{self.clock.remaining():.0f} s left before the deadline"})
                self.close(entry, began)
                return
            self.start_export(self.model_dir, trained=False)  # no trained checkpoint: the untrained model
        if self.export is None:
            self.report.add("export", {"step": "export fp16", "status": "error", "error": "the export did not start"})
            self.close(entry, began)
            return
        reserve = 0.0 if args.dry_run else PARITY_RESERVE_S
        row = self.report.add("export", self.export.wait(min(budget, self.clock.remaining() - reserve)))
        if row["status"] != "ok":
            self.report.add("export", {"step": "parity fp16 vs PyTorch fp32", "status": "skipped", "error": "no export"})
        elif self.clock.remaining() <= 0:
            self.report.add("export", {"step": "parity fp16 vs PyTorch fp32", "status": "skipped",
                                       "error": "deadline reached"})
        else:
            self.report.add("export", parity(args, self.export.checkpoint, self.export.out))
        self.close(entry, began, "the export ran in a child process from the end of (a)" if self.export.trained
                   else "the untrained model exported (no recipe checkpoint)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # In SECTIONS' order whatever the flag's: the export is waited for last, as it runs on the CPU
    # while the GPU sections go on.
    args.section_list_ordered = [s for s in SECTIONS if s in args.section_list]
    if args.dry_run:
        # One thread: on a small shared CPU, torch's spinning worker threads cost more than they give.
        torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, on_sigterm)
    run = Run(args)
    try:
        run.run()
    finally:
        if run.export is not None and run.export.process.poll() is None:
            run.export.process.kill()
    print(markdown(run.report.data))
    log(f"done in {run.clock.elapsed():.0f}s: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
