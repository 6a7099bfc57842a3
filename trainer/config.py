"""The GRPO job configuration: every option in one place, with its meaning, unit and default.

Overrides go defaults -> job.json -> command-line flags; unknown keys are rejected; invariants are
checked with messages that name the bad value; the resolved configuration is written to
`<output_dir>/config.resolved.json` and beside every checkpoint (docs/training.md).

Defaults are the paper's recipe (docs/method.md, "The recipe"). Options marked "auto" are resolved
for the model and the device when the job starts (`resolved_config` in trainer/grpo.py); the saved
config.resolved.json and job_config.json hold the resolved values, not "auto".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class JobConfig:
    # --- what to train and where ---------------------------------------------------------------
    base_model: str = ""  # Hugging Face model folder (safetensors) to start from
    dataset: str = ""  # data set folder in our format (docs/architecture.md): <dataset>/<split>.jsonl + images/
    output_dir: str = ""  # job folder: metrics.jsonl, rollouts.jsonl, checkpoints/, result.json
    job_id: str = "local"  # used in logs and the exported model's name
    split: str = "train"  # JSONL split trained on
    export_dir: str = ""  # servable model folder written at the end ("" = <output_dir>/model)
    export_dtypes: list[str] = field(default_factory=lambda: ["fp32"])  # ONNX variants written at the end
    max_items: int = 0  # use only the first N items of the split (0 = all; the paper used 15,000)

    # --- prompts and data ----------------------------------------------------------------------
    template: str = "r1"  # r1: the paper's base-model prompt; instruct: the model's chat template + suffix
    # sat: "Answer in natural language. {q} Choose between the following options: a, b or c" (the paper);
    # letters: the CV-Bench style prompt with (A)/(B) options stored in the data set.
    question_style: str = "sat"
    max_prompt_length: int = 1024  # tokens, image tokens included; longer items are left out
    max_pixels: int = 401408  # image resize upper bound (<= 512 visual tokens)
    min_pixels: int = 3136  # image resize lower bound

    # --- GRPO (docs/method.md) -----------------------------------------------------------------
    steps: int = 1500  # optimizer steps
    num_generations: int = 8  # G: completions sampled per prompt
    prompts_per_step: int = 8  # prompts per optimizer step, all devices together (8 x G = 64 completions)
    micro_batch_prompts: int = 1  # prompts per device per forward/backward pass
    temperature: float = 1.0  # rollout sampling temperature (no top-k, no top-p)
    max_completion_length: int = 700  # new tokens per completion
    beta: float = 0.04  # KL coefficient (k3 estimator against the frozen initial policy)
    learning_rate: float = 0.0  # peak LR, linear decay to 0, no warm-up (0 = auto: 1e-6 for >= 1B params, 1e-5 below)
    max_grad_norm: float = 1.0  # gradient-norm clip
    weight_decay: float = 0.0  # AdamW weight decay
    length_reward: float = 0.0  # weight of the tokens-count reward the paper tried (0 = off)
    freeze_vision: bool = False  # train the language model only
    freeze_llm: bool = False  # train the vision tower only

    # --- device and bookkeeping ----------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (fp32 on CPU, bf16 on CUDA) | fp32 | bf16
    gradient_checkpointing: str = "auto"  # auto (on for CUDA) | on | off
    attn_implementation: str = "auto"  # auto (flash_attention_2 if installed, else sdpa) | sdpa | eager | flash_attention_2
    seed: int = 0  # data order, sampling and initial RNG
    save_steps: int = 50  # checkpoint every N steps
    save_total_limit: int = 3  # checkpoints kept
    rollouts_per_step: int = 16  # completions of each step written to rollouts.jsonl (-1 = all)
    threads: int = 0  # torch CPU threads (0 = torch's default)

    REQUIRED = ("base_model", "dataset", "output_dir")
    CHOICES = {
        "template": ("r1", "instruct"),
        "question_style": ("sat", "letters"),
        "device": ("auto", "cpu", "cuda"),
        "dtype": ("auto", "fp32", "bf16"),
        "gradient_checkpointing": ("auto", "on", "off"),
        "attn_implementation": ("auto", "sdpa", "eager", "flash_attention_2"),
    }
    EXPORT_DTYPES = ("fp32", "fp16", "q8", "q4")
    # Bounds of single options (JSON-Schema words: minimum and maximum inclusive, exclusive_minimum
    # not), checked by validate() and listed in test/vectors/training_options.json. Bounds that tie
    # two options together (min_pixels <= max_pixels, prompts_per_step a multiple of
    # micro_batch_prompts, not both freezes) are in validate() alone.
    LIMITS = {
        "max_items": {"minimum": 0},
        "max_prompt_length": {"minimum": 1},
        "min_pixels": {"minimum": 784},
        "steps": {"minimum": 1},
        "num_generations": {"minimum": 2},
        "prompts_per_step": {"minimum": 1},
        "micro_batch_prompts": {"minimum": 1},
        "temperature": {"exclusive_minimum": 0, "maximum": 10},
        "max_completion_length": {"minimum": 1},
        "beta": {"minimum": 0},
        "learning_rate": {"minimum": 0},
        "max_grad_norm": {"exclusive_minimum": 0},
        "length_reward": {"minimum": 0},
        "seed": {"minimum": 0, "maximum": 2**32 - 1},  # numpy's seeding takes no more
        "save_steps": {"minimum": 1},
        "save_total_limit": {"minimum": 1},
        "rollouts_per_step": {"minimum": -1},
        "threads": {"minimum": 0},
    }
    WHY = {"num_generations": "group-normalised advantages need G >= 2"}

    def validate(self) -> JobConfig:
        problems = []
        for name in self.REQUIRED:
            if not getattr(self, name):
                problems.append(f"{name} is required")
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name, limits in self.LIMITS.items():
            value = getattr(self, name)
            if not _within(value, limits):
                why = f" ({self.WHY[name]})" if name in self.WHY else ""
                problems.append(f"{name}={value} must be {_describe(limits)}{why}")
        if self.micro_batch_prompts >= 1 and self.prompts_per_step % self.micro_batch_prompts:
            problems.append(f"prompts_per_step={self.prompts_per_step} is not a multiple of micro_batch_prompts={self.micro_batch_prompts}")
        if self.min_pixels > self.max_pixels:
            problems.append(f"need min_pixels ({self.min_pixels}) <= max_pixels ({self.max_pixels})")
        if self.freeze_vision and self.freeze_llm:
            problems.append("freeze_vision and freeze_llm together leave nothing to train")
        bad = [d for d in self.export_dtypes if d not in self.EXPORT_DTYPES]
        if bad or not self.export_dtypes:
            problems.append(f"export_dtypes={self.export_dtypes} must be a non-empty list of {', '.join(self.EXPORT_DTYPES)}")
        if problems:
            raise ValueError("invalid job configuration: " + "; ".join(problems))
        return self

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in fields(cls)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "job.json") -> JobConfig:
        known = cls.keys()
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{origin}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(known)}")
        config = cls()
        for name, value in data.items():
            setattr(config, name, _coerce(name, known[name], value, origin))
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _within(value: float, limits: dict[str, float]) -> bool:
    return (
        ("minimum" not in limits or value >= limits["minimum"])
        and ("exclusive_minimum" not in limits or value > limits["exclusive_minimum"])
        and ("maximum" not in limits or value <= limits["maximum"])
    )


def _describe(limits: dict[str, float]) -> str:
    low = "[" if "minimum" in limits else "("
    lowest = limits.get("minimum", limits.get("exclusive_minimum"))
    if "maximum" in limits:
        return f"in {low}{lowest}, {limits['maximum']}]"
    return f"at least {lowest}" if low == "[" else f"greater than {lowest}"


TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def option_table() -> list[dict[str, Any]]:
    """Every option a job may set: name, JSON type, default, whether required, choices and bounds.

    Written to test/vectors/training_options.json (python -m trainer.vectors), which the service's
    request schema, the dashboard's form and the fake trainer of the service's tests are checked
    against.
    """
    rows = []
    for f in fields(JobConfig):
        default = _default(f)
        row: dict[str, Any] = {"name": f.name, "type": TYPE_NAMES[type(default)], "default": default,
                               "required": f.name in JobConfig.REQUIRED}
        if f.name in JobConfig.CHOICES:
            row["choices"] = list(JobConfig.CHOICES[f.name])
        if f.name == "export_dtypes":
            row["item_choices"] = list(JobConfig.EXPORT_DTYPES)
        row.update(JobConfig.LIMITS.get(f.name, {}))
        rows.append(row)
    return rows


def _coerce(name: str, f: dataclasses.Field, value: Any, origin: str) -> Any:
    kind = type(_default(f))
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, bool):
            raise ValueError(f"{origin}: {name} must be an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and number.is_integer():
            return int(number)
    elif kind is float:
        if not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    elif kind is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return list(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{origin}: {name} must be a {kind.__name__}, got {value!r}")


def parse_args(argv: list[str] | None = None) -> JobConfig:
    """--config JOB.json plus one --flag per option (flags win over the file)."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer.grpo",
        description="GRPO training of a Qwen2-VL model with the VisualThinker-R1-Zero recipe (docs/training.md).",
    )
    parser.add_argument("--config", type=Path, help="job.json (see docs/training.md)")
    for name in JobConfig.keys():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE")
    args = vars(parser.parse_args(argv))
    config_path: Path | None = args.pop("config")
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            data = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read {config_path}: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{config_path} must hold a JSON object")
    config = JobConfig.from_dict(data)
    flags = {k: v for k, v in args.items() if v is not None}
    for name, value in flags.items():
        setattr(config, name, _coerce(name, JobConfig.keys()[name], value, "command line"))
    return config.validate()
