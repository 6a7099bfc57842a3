"""Plot a GRPO job's training dynamics (the paper's figure 1) from its metrics.jsonl, with PIL only.

    python -m trainer.nano.plot_dynamics --job build/nano/grpo --out docs/nano-dynamics.png [--smooth 10]

Four panels against the optimizer step: the reward and its two parts (accuracy and format) over the
step's rollouts, mean completion length (tokens), reflection rate (share of completions with a
self-reflection word, rewards.REFLECTION_PATTERN) with the share of the step's most common answer
(near 1: one answer for every prompt) and the KL to the initial policy. While a run stays within its first epoch every step's prompts are new
to the policy, so the accuracy panel is accuracy on held-out items (sampled at the rollout
temperature). Thin lines are the per-step values, thick lines a moving average.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from ..metrics import read_jsonl

WIDTH, PANEL_HEIGHT = 900, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 34, 34
COLOURS = {"accuracy": (31, 119, 180), "format": (255, 127, 14), "reward": (90, 90, 90), "length": (44, 160, 44),
           "reflection": (214, 39, 40), "kl": (148, 103, 189), "top": (100, 116, 139)}
PANELS = 4


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _lighter(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * 0.6) for c in colour)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5):
        for scale in (0.01, 0.1, 1, 10, 100, 1000):
            if step * scale >= value:
                return step * scale
    return value


def draw_panel(draw: ImageDraw.ImageDraw, top: int, title: str, steps: list[int],
               series: list[tuple[str, list[float], tuple[int, int, int]]], y_max: float | None, smooth: int) -> None:
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = top + MARGIN_TOP, top + PANEL_HEIGHT - MARGIN_BOTTOM
    values = [v for _, vs, _ in series for v in vs]
    top_value = y_max if y_max is not None else _nice_max(max(values, default=1.0))
    last_step = max(steps[-1], 1) if steps else 1
    draw.text((x0, top + 8), title, fill=(0, 0, 0))
    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
    for k in range(5):
        frac = k / 4
        y = y1 - frac * (y1 - y0)
        draw.line((x0 - 4, y, x0, y), fill=(0, 0, 0))
        draw.line((x0 + 1, y, x1 - 1, y), fill=(235, 235, 235))
        draw.text((8, y - 6), f"{top_value * frac:.3g}", fill=(0, 0, 0))
    for k in range(6):
        step = round(last_step * k / 5)
        x = x0 + (x1 - x0) * step / last_step
        draw.line((x, y1, x, y1 + 4), fill=(0, 0, 0))
        draw.text((x - 8, y1 + 8), str(step), fill=(0, 0, 0))

    def point(step: int, value: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * step / last_step, y1 - (y1 - y0) * min(value, top_value) / top_value

    legend_x = x1 - 10
    for name, vs, colour in reversed(series):
        if len(vs) >= 2:
            draw.line([point(s, v) for s, v in zip(steps, vs, strict=True)], fill=_lighter(colour), width=1)
            draw.line([point(s, v) for s, v in zip(steps, moving_average(vs, smooth), strict=True)], fill=colour, width=3)
        elif vs:
            x, y = point(steps[0], vs[0])
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        legend_x -= 8 * len(name) + 24
        draw.line((legend_x, top + 14, legend_x + 14, top + 14), fill=colour, width=3)
        draw.text((legend_x + 18, top + 8), name, fill=(0, 0, 0))


def plot(metrics: list[dict], out: Path, smooth: int = 10, title: str = "") -> Path:
    rows = [m for m in metrics if isinstance(m.get("step"), int)]
    if not rows:
        raise ValueError("no metrics lines with a step")
    steps = [m["step"] for m in rows]
    get = lambda key: [float(m.get(key) or 0.0) for m in rows]  # noqa: E731
    image = Image.new("RGB", (WIDTH, PANELS * PANEL_HEIGHT + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN_LEFT, 8), title or "GRPO training dynamics", fill=(0, 0, 0))
    draw_panel(draw, 30, "reward = accuracy + format (rollouts on unseen items)", steps,
               [("reward", get("reward"), COLOURS["reward"]), ("accuracy", get("rewards/accuracy"), COLOURS["accuracy"]),
                ("format", get("rewards/format"), COLOURS["format"])], 2.0, smooth)
    draw_panel(draw, 30 + PANEL_HEIGHT, "mean completion length (tokens)", steps,
               [("length", get("completion_length"), COLOURS["length"])], None, smooth)
    # Older runs have no answer_top_share; their panel shows the reflection rate alone.
    top = [("top answer", get("answer_top_share"), COLOURS["top"])] if any("answer_top_share" in m for m in rows) else []
    draw_panel(draw, 30 + 2 * PANEL_HEIGHT, "reflection rate; share of the step's most common answer", steps,
               [("reflection", get("reflection_rate"), COLOURS["reflection"]), *top], 1.0, smooth)
    draw_panel(draw, 30 + 3 * PANEL_HEIGHT, "KL to the initial policy", steps,
               [("kl", get("kl"), COLOURS["kl"])], None, smooth)
    draw.text((WIDTH // 2 - 20, PANELS * PANEL_HEIGHT + 12), "step", fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, type=Path, help="GRPO job folder (holds metrics.jsonl)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window (steps)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    plot(read_jsonl(args.job / "metrics.jsonl"), args.out, args.smooth, args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
