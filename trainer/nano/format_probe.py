"""Where does R1-Zero start? The step-0 probe of a base model on held-out questions.

    python -m trainer.nano.format_probe --model build/nano/base/model --dataset build/nano/spatial-synth \\
        [--split val --items 64 --samples 8 --max-new-tokens 96 --device cpu]

For each item it renders the paper's r1 prompt (ending in `<think>`) and
- samples `--samples` completions at temperature 1.0, no top-k/top-p (GRPO's rollouts) and scores
  them with the paper's rewards: the **format rate** (the format reward), the **accuracy** (the
  accuracy reward) and the accuracy among well-formatted completions, and the **on-option rate**:
  how often the answer names one of the listed options at all, by its text or by its letter
  (GRPO's accuracy reward can only be earned, and so amplified, by such answers; random picks
  among them would score chance);
- ranks the options teacher-forced: the log-probability of `</think>\\n<answer>{option}</answer>`
  and the end token for every option; **option-ranking accuracy** is how often the gold option is
  the most likely, and **letter-ranking accuracy** the same with the options' letters as answers.
  They tell whether the base already knows the answer when the format is given, i.e. whether
  GRPO has more than the format to find;
- samples answers to fresh text-only questions of the corpus's own tasks with their choices listed
  (`--text-items` per task): the on-option rate there says whether the base can pick an option
  at all, apart from the picture.

GRPO learns from the spread of rewards within a group: with format rate p, a group of G samples
holds at least one formatted completion with probability 1 - (1-p)^G (about 34% at p = 5% and
G = 8, 83% at 20%), which is why the base's format rate should be neither 0 nor near 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image

from ..data import read_split
from ..prompts import render_prompt
from ..rewards import extract_answer_text, format_reward
from ..scoring import is_correct, lettered_accuracy_reward


def _images(items) -> list:
    images = []
    for item in items:
        with Image.open(item.image) as image:
            images.append(image.convert("RGB"))
    return images


def names_an_option(answer: str, choices: list[str]) -> bool:
    """Whether an answer names one of the options, by text or by letter (evaluation's matching)."""
    return any(is_correct(answer, chr(65 + i), choices) for i in range(len(choices)))


@torch.no_grad()
def option_logprobs(model, processor, item, image, device: str, answers: list[str] | None = None) -> list[float]:
    """Log-probability of the shortest formatted completion for each answer (default: the option
    texts), teacher-forced."""
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    prompt = render_prompt("r1", item.prompt, has_image=True)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt").to(device)
    answers = item.choices if answers is None else answers
    n = len(answers)
    scores = []
    targets = [tok(f"</think>\n<answer>{option}</answer>", add_special_tokens=False)["input_ids"] + [eos]
               for option in answers]
    width = max(len(t) for t in targets)
    ids = inputs["input_ids"].repeat(n, 1)
    padded = torch.tensor([t + [eos] * (width - len(t)) for t in targets], device=device)
    full = torch.cat([ids, padded], dim=1)
    mask = torch.ones_like(full)
    mm = torch.cat([inputs["mm_token_type_ids"].repeat(n, 1), torch.zeros_like(padded)], dim=1)
    logits = model(input_ids=full, attention_mask=mask, mm_token_type_ids=mm,
                   pixel_values=inputs["pixel_values"].repeat(n, 1),
                   image_grid_thw=inputs["image_grid_thw"].repeat(n, 1)).logits
    start = ids.shape[1]
    logp = torch.log_softmax(logits[:, start - 1:-1].float(), dim=-1)
    for k, target in enumerate(targets):
        scores.append(float(sum(logp[k, j, t] for j, t in enumerate(target))))
    return scores


@torch.no_grad()
def probe(model_dir: Path, dataset: Path, split: str = "val", items: int = 64, samples: int = 8,
          max_new_tokens: int = 96, seed: int = 0, max_pixels: int | None = None, device: str = "cpu",
          batch_items: int = 8, text_items: int = 0) -> dict:
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    processor = load_processor(model_dir, **({"max_pixels": max_pixels} if max_pixels else {}))
    processor.tokenizer.padding_side = "left"
    tok = processor.tokenizer
    eos = [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    chosen, _ = read_split(dataset, split, items)
    per_task: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    examples = []
    for i in range(0, len(chosen), batch_items):
        chunk = chosen[i:i + batch_items]
        images = _images(chunk)
        for item, image in zip(chunk, images, strict=True):
            scores = option_logprobs(model, processor, item, image, device)
            gold = item.choices.index(item.answer_text)
            per_task[item.task]["ranking"].append(float(max(range(len(scores)), key=scores.__getitem__) == gold))
            letters = [chr(65 + j) for j in range(len(item.choices))]
            scores = option_logprobs(model, processor, item, image, device, letters)
            per_task[item.task]["letter_ranking"].append(float(max(range(len(scores)), key=scores.__getitem__) == gold))
        if not samples:
            continue
        prompts = [render_prompt("r1", item.prompt, has_image=True) for item in chunk]
        inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True).to(device)
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=max_new_tokens, num_return_sequences=samples, eos_token_id=eos,
                             pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for k, text in enumerate(texts):
            item = chunk[k // samples]
            fmt = format_reward(text)
            acc = lettered_accuracy_reward(text, item.answer_text, item.answer, item.choices)  # GRPO's, letters style
            rows = per_task[item.task]
            rows["format"].append(fmt)
            rows["accuracy"].append(acc)
            rows["on_option"].append(float(names_an_option(extract_answer_text(text), item.choices)))
            if fmt:
                rows["accuracy_formatted"].append(acc)
            if len(examples) < 8 and k % samples == 0:
                examples.append({"question": item.question, "gold": item.answer_text, "completion": text})

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def summary(rows: dict[str, list[float]]) -> dict:
        return {
            "format_rate": mean(rows["format"]),
            "accuracy": mean(rows["accuracy"]),
            "accuracy_formatted": mean(rows["accuracy_formatted"]),
            "option_ranking_accuracy": mean(rows["ranking"]),
            "letter_ranking_accuracy": mean(rows["letter_ranking"]),
            "on_option_rate": mean(rows["on_option"]),
            "samples": len(rows["format"]),
        }

    total: dict[str, list[float]] = defaultdict(list)
    for rows in per_task.values():
        for key, values in rows.items():
            total[key].extend(values)
    text = text_probe(model, tok, text_items, seed=seed) if text_items else {}
    return {
        "model": str(model_dir),
        "split": split,
        "items": len(chosen),
        "samples_per_item": samples,
        "total": summary(total),
        "per_task": {task: summary(rows) for task, rows in sorted(per_task.items())},
        "example_completions": examples,
        "text_tasks": text,
    }


@torch.no_grad()
def text_probe(model, tokenizer, items: int = 32, max_new_tokens: int = 64, seed: int = 0) -> dict:
    """The same sampling on fresh text-only questions of the corpus's own tasks (corpus.TEXT_TASKS),
    choices listed, in the r1 prompt: can the base answer with one of the options at all where no
    picture is involved? Per task: on-option rate and accuracy."""
    import random

    from . import corpus

    rng = random.Random(seed)
    tokenizer.padding_side = "left"
    result = {}
    for task in corpus.TEXT_TASKS:
        questions = [corpus.text_question(rng, task) for _ in range(items)]
        prompts = [render_prompt("r1", corpus.with_choices(qa)[0], has_image=False) for qa in questions]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        answers = [extract_answer_text(t) for t in texts]
        pairs = list(zip(answers, questions, strict=True))
        result[task] = {
            "on_option_rate": sum(names_an_option(a, list(qa.options)) for a, qa in pairs) / items,
            "accuracy": sum(is_correct(a, chr(65 + qa.options.index(qa.answer)), list(qa.options)) for a, qa in pairs) / items,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-pixels", type=int, default=None, help="default: the model folder's own bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-items", type=int, default=32,
                        help="fresh text-only questions per corpus text task, choices listed (0 skips)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = probe(args.model, args.dataset, args.split, args.items, args.samples, args.max_new_tokens, args.seed,
                   args.max_pixels, args.device, text_items=args.text_items)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    t = result["total"]
    print(f"[format_probe] format rate {t['format_rate']}, accuracy {t['accuracy']}, "
          f"option ranking {t['option_ranking_accuracy']}, letter ranking {t['letter_ranking_accuracy']}, "
          f"on-option {t['on_option_rate']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
