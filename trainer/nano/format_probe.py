"""How reachable is the r1 answer format for a model? A diagnostic for R1-Zero on small bases.

    python -m trainer.nano.format_probe --model build/nano/base/model --dataset build/nano/spatial-synth \\
        [--split val --items 16 --samples 8 --max-new-tokens 64]

For each item it renders the r1 prompt (ending in `<think>`), then
- scores the shortest completion that earns both rewards, `</think>\\n<answer>{gold}</answer>` and
  the end token, token by token (log-probabilities under the model), and
- samples `--samples` completions at temperature 1.0 (as GRPO's rollouts) and counts how many pass
  the format check and how many contain `</think>` or `<answer>` at all.
It prints a JSON summary: the mean log-probability of the formatted completion, the mean
log-probability of its tag tokens, the sampled rates, and how often the model closes a section it
opened (`<objects>` ... right after the image) with the same name (`closing_tag_matches_opening`):
closing `</think>` needs exactly that copy; `closing_name_logprob` measures that copy teacher-forced
for words that were and were not section names in pre-training, think and answer among them. A
format that the model gives probability e^-30 is never sampled, so GRPO's format reward cannot
find it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image

from ..data import read_split
from ..prompts import IMAGE_PLACEHOLDER, render_prompt
from ..rewards import format_reward

COPY_PROBE_NAMES = ("summary", "notes", "sky", "light", "mind", "process", "think", "answer")


@torch.no_grad()
def probe(model_dir: Path, dataset: Path, split: str, items: int, samples: int, max_new_tokens: int, seed: int,
          max_pixels: int) -> dict:
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_processor

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    processor = load_processor(model_dir, max_pixels=max_pixels)
    tok = processor.tokenizer
    eos = [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    chosen, _ = read_split(dataset, split, items)
    per_token: dict[str, list[float]] = defaultdict(list)
    totals, formatted, close_think, open_answer, n_samples = [], 0, 0, 0, 0
    examples = []
    for item in chosen:
        prompt = render_prompt("r1", item.prompt, has_image=True)
        with Image.open(item.image) as image:
            inputs = processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt")
        target_text = f"</think>\n<answer>{item.answer_text}</answer>"
        target = tok(target_text, add_special_tokens=False)["input_ids"] + [eos[0]]
        ids = torch.cat([inputs["input_ids"], torch.tensor([target])], dim=1)
        mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(target), dtype=torch.long)], dim=1)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm,
                       pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits[0]
        logp = torch.log_softmax(logits[-len(target) - 1:-1].float(), dim=-1)
        token_logp = [float(logp[k, t]) for k, t in enumerate(target)]
        totals.append(sum(token_logp))
        for t, lp in zip(target, token_logp, strict=True):
            per_token[tok.convert_ids_to_tokens(t)].append(lp)
        if samples:
            out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens, num_return_sequences=samples, eos_token_id=eos,
                                 pad_token_id=eos[0])
            texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for text in texts:
                n_samples += 1
                formatted += format_reward(text) == 1.0
                close_think += "</think>" in text
                open_answer += "<answer>" in text
            examples.append(texts[0])
    # Does the model close a section with the name it opened it with (a copy from context)? Sections
    # named as in pre-training, opened right after the image; the first closing tag is compared.
    # Both copy checks below use the first item's picture.
    picture = None
    if chosen:
        with Image.open(chosen[0].image) as image:
            picture = image.convert("RGB")
    matched, opened = 0, 0
    if samples and picture is not None:
        for name in ("objects", "summary", "facts", "notes"):
            inputs = processor(text=[f"{IMAGE_PLACEHOLDER}<{name}>"], images=[picture], return_tensors="pt")
            out = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens * 2, num_return_sequences=samples, eos_token_id=eos,
                                 pad_token_id=eos[0])
            for text in tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True):
                close = re.search(r"</([^>]*)>", text)
                if close:
                    opened += 1
                    matched += close.group(1) == name
    # The same copy, teacher-forced and for any word: log-probability of NAME right after
    # `<NAME>{a sentence}</`. Words seen as section names in pre-training against think and answer,
    # which never are (and two words of the r1 prompt the pre-training may or may not use as names).
    closing_name = {}
    if picture is not None:
        for name in COPY_PROBE_NAMES:
            inputs = processor(text=[f"{IMAGE_PLACEHOLDER}<{name}>There are 2 pink cubes.</"], images=[picture],
                               return_tensors="pt")
            logp = torch.log_softmax(model(**inputs).logits[0, -1].float(), dim=-1)
            closing_name[name] = float(logp[tok(name, add_special_tokens=False)["input_ids"][0]])
    return {
        "model": str(model_dir),
        "closing_name_logprob": closing_name,
        "closing_tag_matches_opening": matched / opened if opened else None,
        "closing_tags_seen": opened,
        "items": len(chosen),
        "formatted_completion_logprob_mean": sum(totals) / len(totals),
        "formatted_completion_probability_mean": sum(math.exp(t) for t in totals) / len(totals),
        "token_logprob_mean": {t: sum(v) / len(v) for t, v in per_token.items() if t in
                               ("</", "think", ">", "<", "answer", ">Ċ", "Ċ", "<|endoftext|>")},
        "samples": n_samples,
        "sampled_format_rate": formatted / n_samples if n_samples else None,
        "sampled_with_close_think": close_think / n_samples if n_samples else None,
        "sampled_with_open_answer": open_answer / n_samples if n_samples else None,
        "example_completions": examples[:4],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-pixels", type=int, default=168 * 168)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = probe(args.model, args.dataset, args.split, args.items, args.samples, args.max_new_tokens, args.seed,
                   args.max_pixels)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(f"[format_probe] formatted completion log-prob {result['formatted_completion_logprob_mean']:.1f}, "
          f"sampled format rate {result['sampled_format_rate']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
