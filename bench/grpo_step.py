"""GRPO step time and rollout throughput: our recipe (TRL samples all G x prompts completions of a
step in one batched generate call) against the original project's sampling, one completion per
generate call, on the same model, data, steps and seed. Prints a markdown table.

    .venv/bin/python bench/grpo_step.py [--model models/tiny-random] [--steps 4] [--generations 8]
        [--prompts 2] [--tokens 64]

The data set is a spatial-synth train split written by `npm run synth` into a temporary folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer import grpo  # noqa: E402
from trainer.config import JobConfig  # noqa: E402
from trainer.metrics import JsonlWriter, read_jsonl  # noqa: E402


class GenerateTimer:
    """Wraps model.generate: times every call; `one_at_a_time` generates each row separately."""

    def __init__(self, model, one_at_a_time: bool):
        self.model = model
        self.original = model.generate
        self.one_at_a_time = one_at_a_time
        self.seconds = 0.0
        self.tokens = 0
        model.generate = self

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        out = self._rows(**kwargs) if self.one_at_a_time else self.original(*args, **kwargs)
        self.seconds += time.perf_counter() - started
        prompt_length = kwargs["input_ids"].shape[1]
        pad = kwargs["generation_config"].pad_token_id
        self.tokens += int((out[:, prompt_length:] != pad).sum())
        return out

    def _rows(self, input_ids, attention_mask, pixel_values=None, image_grid_thw=None, mm_token_type_ids=None, **rest):
        """The original's sampling: one completion per generate call (each row has one image)."""
        rows_per_image = image_grid_thw.prod(-1).tolist() if image_grid_thw is not None else []
        starts = [sum(rows_per_image[:i]) for i in range(len(rows_per_image))]
        outs = []
        for r in range(input_ids.shape[0]):
            extra = {}
            if image_grid_thw is not None:
                extra = {"pixel_values": pixel_values[starts[r]:starts[r] + rows_per_image[r]], "image_grid_thw": image_grid_thw[r:r + 1]}
            if mm_token_type_ids is not None:
                extra["mm_token_type_ids"] = mm_token_type_ids[r:r + 1]
            outs.append(self.original(input_ids=input_ids[r:r + 1], attention_mask=attention_mask[r:r + 1], **extra, **rest)[0])
        pad = rest["generation_config"].pad_token_id
        width = max(o.shape[0] for o in outs)
        return torch.stack([torch.nn.functional.pad(o, (0, width - o.shape[0]), value=pad) for o in outs])


def run(config: JobConfig, one_at_a_time: bool) -> dict:
    out = Path(config.output_dir)
    metrics = JsonlWriter(out / "metrics.jsonl")
    trainer, _, _ = grpo.build_trainer(config, "cpu", out, grpo.Rollouts(None, 0), metrics)
    timer = GenerateTimer(trainer.model, one_at_a_time)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    metrics.close()
    steps = read_jsonl(out / "metrics.jsonl")
    later = [m["seconds"] for m in steps[1:]] or [m["seconds"] for m in steps]
    return {
        "step_seconds": sum(later) / len(later),
        "rollout_tps": timer.tokens / timer.seconds if timer.seconds else float("nan"),
        "generate_share": timer.seconds / seconds,
        "reward": sum(m["reward"] for m in steps) / len(steps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "tiny-random"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "spatial-synth"
        subprocess.run(["npx", "tsx", "src/cli/synth.ts", "--out", str(data), "--train", "64", "--val", "0", "--test", "0",
                        "--size", "224"], cwd=ROOT, check=True, capture_output=True)
        results = {}
        for mode in ("ours", "original"):
            config = JobConfig.from_dict(dict(
                base_model=args.model, dataset=str(data), output_dir=str(Path(tmp) / mode), steps=args.steps,
                num_generations=args.generations, prompts_per_step=args.prompts, max_completion_length=args.tokens,
                device="cpu", save_steps=10_000, seed=0, rollouts_per_step=0)).validate()
            results[mode] = run(config, one_at_a_time=mode == "original")
    ours, original = results["ours"], results["original"]
    print(f"\nGRPO step benchmark: {Path(args.model).name}, CPU threads {torch.get_num_threads()}, {args.steps} steps, "
          f"G={args.generations}, {args.prompts} prompts/step, {args.tokens} new tokens max, seed 0\n")
    print("| sampling | seconds per step | rollout tokens/s | generation share of time | mean reward |")
    print("|---|---|---|---|---|")
    for name, r in (("ours: G x prompts completions per generate call (TRL)", ours),
                    ("original: one completion per generate call", original)):
        print(f"| {name} | {r['step_seconds']:.2f} | {r['rollout_tps']:.1f} | {r['generate_share']:.0%} | {r['reward']:.3f} |")
    print(f"\nspeed-up: {original['step_seconds'] / ours['step_seconds']:.2f}x per step, "
          f"{ours['rollout_tps'] / original['rollout_tps']:.2f}x rollout tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
