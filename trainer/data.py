"""Training data: a data set folder in our format (docs/architecture.md, "A data set on disk", written by
`npm run synth` and `npm run prepare-data`) turned into GRPO prompts.

Each item becomes one conversational prompt whose single user turn holds the image and the text
of the chosen template; the trainer's processor renders it (for `r1`, with no roles at all, see
grpo.RAW_CHAT_TEMPLATE). The gold answer for the accuracy reward is the option text (docs/method.md,
"Rewards"), as in the paper's SAT training; when the question lists lettered choices (style
`letters`) the gold letter names the option too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .prompts import INSTRUCT_SUFFIX, render_prompt

REQUIRED = ("id", "images", "question", "choices", "answer", "answer_text", "prompt", "task")


@dataclass(frozen=True)
class Item:
    id: str
    image: Path
    question: str
    choices: list[str]
    answer_text: str
    prompt: str  # the CV-Bench style question with lettered choices
    task: str
    answer: str = ""  # the gold option's letter


def read_split(dataset_dir: str | Path, split: str, max_items: int = 0) -> tuple[list[Item], dict[str, int]]:
    """Single-image items of <dataset_dir>/<split>.jsonl, in file order; also counts what was skipped."""
    root = Path(dataset_dir)
    path = root / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no {split}.jsonl in {root}: write one with `npm run synth -- --out {root}` or `npm run prepare-data` "
                                "(a service job with dataset spatial-synth generates its split itself, into STATE_DIR/datasets)")
    items: list[Item] = []
    skipped = {"multi_image": 0, "no_image": 0}
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is not JSON: {error}") from error
            missing = [k for k in REQUIRED if k not in record]
            if missing:
                raise ValueError(f"{path} line {number} lacks {', '.join(missing)}")
            images = record["images"]
            if len(images) != 1:
                skipped["multi_image" if images else "no_image"] += 1
                continue
            image = (root / images[0]).resolve()
            if root.resolve() not in image.parents:
                raise ValueError(f"{path} line {number}: image path {images[0]!r} leaves the data set folder")
            items.append(Item(record["id"], image, record["question"], list(record["choices"]), record["answer_text"],
                              record["prompt"], record["task"], record["answer"]))
            if max_items and len(items) >= max_items:
                break
    return items, skipped


def sat_question(question: str, choices: list[str]) -> str:
    """The paper's SAT training question (docs/method.md, "The training question"): options in natural language."""
    options = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + f" or {choices[-1]}"
    return f"Answer in natural language. {question} Choose between the following options: {options}"


def question_text(item: Item, style: str) -> str:
    return sat_question(item.question, item.choices) if style == "sat" else item.prompt


def prompt_messages(item: Item, template: str, style: str) -> list[dict]:
    """The user turn as text; TRL inserts the image before it (one image per prompt)."""
    question = question_text(item, style)
    if template == "r1":
        # render_prompt gives "<|vision_start|>...<|vision_end|><image>A conversation ..."; the
        # vision tokens come from the image part the chat template renders in front of this text.
        text = render_prompt("r1", question, has_image=True).split("<|vision_end|>", 1)[1]
    elif template == "instruct":
        text = f"{question} {INSTRUCT_SUFFIX}"
    else:
        raise ValueError(f"template {template!r} cannot be trained; use r1 or instruct")
    return [{"role": "user", "content": text}]


def to_hf_dataset(items: list[Item], template: str, style: str):
    """A `datasets.Dataset` with the columns the GRPO trainer reads; images decode lazily."""
    import datasets

    rows = {
        "prompt": [prompt_messages(i, template, style) for i in items],
        "image": [str(i.image) for i in items],
        "answer_text": [i.answer_text for i in items],
        # The accuracy reward takes the gold letter only where the question shows the letters.
        "answer_letter": [i.answer if style == "letters" else "" for i in items],
        "choices": [i.choices for i in items],
        "item_id": [i.id for i in items],
        "task": [i.task for i in items],
    }
    return datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
