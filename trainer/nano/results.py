"""The results table of docs/embedded-model.md from the service's stored evaluation runs.

    python -m trainer.nano.results --state build/nano-standard/state [--models nano-standard-base ...]

Reads the evaluation runs that `npm run evaluate` stored in `<state>/service.db` (the newest
succeeded run of each model and template) and prints one markdown row per run: accuracy per task
and in total, the format rate, and the accuracy among well-formatted answers (the paper's r1
template only; a `direct` answer has no format to check).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

TASKS = ("Count", "Relation", "Depth", "Distance")


def runs(state: Path) -> list[dict]:
    db = sqlite3.connect(state / "service.db")
    try:
        newest: dict[tuple[str, str], dict] = {}
        for run_id, model, template, result in db.execute(
                "select id, model, template, result from eval_runs where status = 'succeeded' "
                "and benchmark = 'spatial-synth' order by finished_at"):
            rows = db.execute("select task, correct, format_ok from eval_predictions where run_id = ?", (run_id,)).fetchall()
            formatted = [correct for _, correct, ok in rows if ok]
            summary = json.loads(result)
            newest[(model, template)] = {
                "model": model, "template": template, "n": summary["n"], "level": summary.get("level", "standard"),
                "accuracy": summary["accuracy"], "format_rate": summary.get("format_rate"),
                "by_task": {task: summary["by_task"].get(task, {}).get("accuracy") for task in TASKS},
                "accuracy_formatted": sum(formatted) / len(formatted) if formatted else None,
            }
        return list(newest.values())
    finally:
        db.close()


def table(rows: list[dict]) -> str:
    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| model | template | items | " + " | ".join(TASKS) + " | **total** | format rate | accuracy if formatted |",
             "|---|---|---|" + "---|" * len(TASKS) + "---|---|---|"]
    for r in rows:
        r1 = r["template"] == "r1"
        lines.append(f"| {r['model']} | {r['template']} | {r['n']} | " + " | ".join(pct(r["by_task"][t]) for t in TASKS)
                     + f" | **{pct(r['accuracy'])}** | {pct(r['format_rate']) if r1 else '-'} | "
                     + f"{pct(r['accuracy_formatted']) if r1 else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", required=True, type=Path, help="the STATE_DIR the evaluations used")
    parser.add_argument("--models", nargs="*", help="only these models, in this order")
    args = parser.parse_args(argv)
    found = runs(args.state)
    if args.models:
        found = [r for m in args.models for r in found if r["model"] == m]
    print(table(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
