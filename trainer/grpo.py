"""GRPO training of a Qwen2-VL model with the VisualThinker-R1-Zero recipe, on TRL's GRPOTrainer.

    python -m trainer.grpo --config JOB.json [--steps 20 --device cpu ...]

The job folder and the process contract are in docs/training.md; every option is in config.py.

Where TRL 1.16 departs from the paper (docs/method.md, "GRPO" and "The recipe"), and what this recipe does:
 1. Loss aggregation: TRL defaults to "dapo" (tokens of the whole batch); the paper averages each
    sequence's tokens, then the sequences -> loss_type="grpo".
 2. KL: TRL defaults to beta=0 (no reference model); the paper uses 0.04 with the k3 estimator,
    which is TRL's -> beta=0.04.
 3. Clipping: TRL clips the ratio at 1 +/- epsilon. With one on-policy step per rollout batch
    (num_iterations=1, steps_per_generation = gradient accumulation) the ratio is exactly 1, so the
    loss is the paper's -(exp(logp - logp.detach()) * A - beta * kl), with no clipping in effect.
 4. Advantages: TRL's (r - mean_group) / (std_group + 1e-4), std unbiased -> scale_rewards="group"
    (the paper's; TRL's default too, set explicitly so a default change cannot alter it).
 5. Sampling: temperature 1.0, top_p 1.0, top_k 0 set explicitly. TRL builds its own
    GenerationConfig, so sampling defaults saved in a checkpoint cannot override them (a defect of
    the original).
 6. End tokens: TRL ends a completion at the model's generation_config eos ids plus the tokenizer's
    eos; we set both <|endoftext|> and <|im_end|> (the original masked only one).
 7. Prompts: TRL passes images only with conversational prompts rendered by the processor's chat
    template. For the r1 base-model prompt (no roles, no system turn) the processor gets
    RAW_CHAT_TEMPLATE, which renders the image placeholder and the text and nothing else, so the
    rendered prompt is exactly the paper's (docs/method.md, "Prompts"; test_grpo.py checks it).
 8. Several prompts per step: TRL re-runs the processor over the prompts for the forward pass; it
    left-pads prompt ids, so the processor must pad on the left too, or mm_token_type_ids (and so
    image/grid positions) misalign with the ids. The original only worked with one prompt per device.
 9. Prompt length: TRL 1.16 has no max_prompt_length; items whose prompt (image tokens included)
    is longer are left out when the data is loaded, instead of truncated through the image.
10. Freezing: parameters get requires_grad=False (the original assigned a Python attribute and
    froze nothing); a test checks frozen weights stay bit-identical after a step.
11. Logging: our own metrics.jsonl / rollouts.jsonl (docs/training.md) with reflection_rate;
    TRL's log_completions is off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from .config import JobConfig, parse_args
from .metrics import JsonlWriter, step_record
from .prompts import IMAGE_PLACEHOLDER
from .rewards import accuracy_reward, extract_answer_text, format_reward, has_reflection
from .scoring import lettered_accuracy_reward

# Renders a conversation as its image placeholders and texts only: the r1 template has no roles.
RAW_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
)


def log(message: str) -> None:
    print(f"[grpo] {message}", file=sys.stderr, flush=True)


# --- rewards (docs/method.md, "Rewards"; the shared rules in rewards.py) -------------------------

def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


class Rollouts:
    """Collects what the reward functions see: reflection rate, tokens, and sampled rollouts."""

    def __init__(self, writer: JsonlWriter | None, per_step: int):
        self.writer = writer
        self.per_step = per_step
        self.reflection: list[bool] = []
        self.answers: Counter[str] = Counter()
        self.completion_tokens = 0

    def record(self, step: int, prompts, completions, completion_ids, answers, item_ids, accuracy, fmt) -> None:
        texts = [_text(c) for c in completions]
        flags = [has_reflection(t) for t in texts]
        self.reflection.extend(flags)
        self.answers.update(extract_answer_text(t) for t in texts)
        self.completion_tokens += sum(len(ids) for ids in completion_ids)
        if not self.writer or self.per_step == 0:
            return
        count = len(texts) if self.per_step < 0 else min(self.per_step, len(texts))
        for i in range(count):
            prompt = prompts[i]
            prompt_text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
            if isinstance(prompt_text, list):
                prompt_text = "".join(p["text"] if p["type"] == "text" else IMAGE_PLACEHOLDER for p in prompt_text)
            self.writer.write({
                "step": step, "item_id": item_ids[i], "prompt": prompt_text, "completion": texts[i],
                "answer": extract_answer_text(texts[i]), "gold": answers[i],
                "rewards": {"accuracy": accuracy[i], "format": fmt[i]}, "reflection": flags[i],
            })

    def take(self) -> tuple[float, int, float | None]:
        """The step's reflection rate, completion tokens, and the share of its completions that give
        its most common answer (near 1 when the policy has settled on one answer for every prompt,
        such as the same option letter whatever the picture shows)."""
        rate = sum(self.reflection) / len(self.reflection) if self.reflection else 0.0
        total = sum(self.answers.values())
        top = self.answers.most_common(1)[0][1] / total if total else None
        tokens = self.completion_tokens
        self.reflection, self.answers, self.completion_tokens = [], Counter(), 0
        return rate, tokens, top


def make_rewards(rollouts: Rollouts, length_weight: float):
    """TRL calls these once per rollout batch; `trainer_state.global_step` is the step being made."""

    def accuracy(prompts, completions, completion_ids, answer_text, item_id, trainer_state=None,
                 answer_letter=None, choices=None, **_):
        letters = answer_letter or [""] * len(completions)
        options = choices or [()] * len(completions)
        # A gold letter means the prompt listed lettered choices: a letter answer names an option too.
        scores = [lettered_accuracy_reward(_text(c), gold, letter, opts) if letter else accuracy_reward(_text(c), gold)
                  for c, gold, letter, opts in zip(completions, answer_text, letters, options, strict=True)]
        formats = [format_reward(_text(c)) for c in completions]
        step = (trainer_state.global_step if trainer_state is not None else 0) + 1
        rollouts.record(step, prompts, completions, completion_ids, answer_text, item_id, scores, formats)
        return scores

    def format(completions, **_):  # noqa: A001 - TRL logs the function's name: rewards/format
        return [format_reward(_text(c)) for c in completions]

    def length(completion_ids, **_):
        return [length_weight * len(ids) for ids in completion_ids]

    return [accuracy, format] + ([length] if length_weight > 0 else [])


# --- model, processor, data -----------------------------------------------------------------------

def resolve_device(config: JobConfig) -> str:
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    return config.device


def attn_implementation(config: JobConfig, device: str) -> str:
    if config.attn_implementation != "auto":
        return config.attn_implementation
    if device == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            return "sdpa"
    return "sdpa"


def model_dtype(config: JobConfig, device: str) -> torch.dtype:
    """bf16 when asked for, or by default on CUDA; fp32 otherwise."""
    return torch.bfloat16 if (config.dtype == "bf16" or (config.dtype == "auto" and device == "cuda")) else torch.float32


def load_model(config: JobConfig, device: str):
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(
        config.base_model, dtype=model_dtype(config, device), attn_implementation=attn_implementation(config, device)
    )
    return model


def restore_policy(trainer, checkpoint: Path) -> None:
    """Put a checkpoint's weights into the policy, and keep the Trainer from loading them itself.

    The Trainer's own resume reads `model.safetensors` into `load_state_dict(strict=False)`. But
    `save_pretrained` writes Qwen2-VL's weights under their original names (`model.layers...`,
    `visual...`) while the module in memory calls them `model.language_model...` and
    `model.visual...`: nothing matched, and a resumed job went on from the base's weights with only
    a warning. `from_pretrained` maps the names, and strict loading makes any mismatch an error.
    The reference model stays the base: the trainer made it before this runs.
    """
    model = trainer.model
    saved = type(model).from_pretrained(checkpoint, dtype=model.dtype)
    model.load_state_dict(saved.state_dict(), strict=True)
    # The optimizer, scheduler, RNG and step still come from the Trainer's resume.
    trainer._load_from_checkpoint = lambda *args, **kwargs: None


def end_token_ids(tokenizer) -> list[int]:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


def prepare_model(model, tokenizer, config: JobConfig) -> None:
    """Both end tokens stop a completion; frozen parts really stop learning (departures 6, 10)."""
    model.generation_config.eos_token_id = end_token_ids(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    for name in ("temperature", "top_p", "top_k", "do_sample"):
        # A checkpoint's sampling defaults must not leak into rollouts (departure 5).
        if hasattr(model.generation_config, name):
            setattr(model.generation_config, name, None)
    if config.freeze_vision:
        model.model.visual.requires_grad_(False)
    if config.freeze_llm:
        model.model.language_model.requires_grad_(False)
        model.lm_head.requires_grad_(False)


def load_processor_for(config: JobConfig):
    from .processor import load_processor

    processor = load_processor(config.base_model, max_pixels=config.max_pixels, min_pixels=config.min_pixels)
    processor.tokenizer.padding_side = "left"  # departure 8
    if config.template == "r1":
        processor.chat_template = RAW_CHAT_TEMPLATE  # departure 7
    return processor


def prompt_token_count(processor, item, text: str) -> int:
    """Tokens of a rendered prompt, image tokens included, without decoding the image."""
    from PIL import Image

    with Image.open(item.image) as image:
        width, height = image.size
    patches = processor.image_processor.get_number_of_image_patches(height, width, {})
    image_tokens = patches // processor.image_processor.merge_size**2
    return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) - 1 + image_tokens


def load_data(config: JobConfig, processor):
    from .data import prompt_messages, read_split, to_hf_dataset

    items, skipped = read_split(config.dataset, config.split, config.max_items)
    kept = []
    too_long = 0
    for item in items:
        messages = prompt_messages(item, config.template, config.question_style)
        rendered = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": messages[0]["content"]}]}],
            tokenize=False, add_generation_prompt=True,
        )
        if prompt_token_count(processor, item, rendered) > config.max_prompt_length:
            too_long += 1
            continue
        kept.append(item)
    if not kept:
        raise ValueError(f"no usable items in {config.dataset}/{config.split}.jsonl (skipped {skipped}, too long {too_long})")
    log(f"data: {len(kept)} items from {config.dataset}/{config.split}.jsonl "
        f"(left out: {too_long} over {config.max_prompt_length} tokens, {skipped['multi_image']} multi-image)")
    return to_hf_dataset(kept, config.template, config.question_style)


# --- the recipe -----------------------------------------------------------------------------------

def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def recipe_args(config: JobConfig, device: str, num_params: int):
    """Every paper setting (docs/method.md, "The recipe") mapped to its TRL option."""
    from trl import GRPOConfig

    devices = world_size()
    prompts_per_device_step = config.micro_batch_prompts * devices
    if config.prompts_per_step % prompts_per_device_step:
        raise ValueError(f"prompts_per_step={config.prompts_per_step} must be a multiple of micro_batch_prompts x devices "
                         f"({config.micro_batch_prompts} x {devices})")
    accumulation = config.prompts_per_step // prompts_per_device_step
    learning_rate = config.learning_rate or (1e-6 if num_params >= 1e9 else 1e-5)
    cuda = device == "cuda"
    checkpointing = config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and cuda)
    return GRPOConfig(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        # Batch: per_device_train_batch_size counts completions (prompts x G); one rollout batch per
        # optimizer step, split over the accumulation steps (on-policy, departure 3).
        num_generations=config.num_generations,
        per_device_train_batch_size=config.micro_batch_prompts * config.num_generations,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_iterations=1,
        # Sampling (departure 5).
        temperature=config.temperature,
        top_p=1.0,
        top_k=0,
        max_completion_length=config.max_completion_length,
        # Loss (departures 1-4).
        loss_type="grpo",
        scale_rewards="group",
        beta=config.beta,
        mask_truncated_completions=False,
        # Optimiser: AdamW, linear decay, no warm-up, clip 1.0.
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=config.max_grad_norm,
        weight_decay=config.weight_decay,
        optim="adamw_torch",
        max_steps=config.steps,
        # Devices.
        use_cpu=not cuda,
        bf16=cuda and config.dtype != "fp32",
        gradient_checkpointing=checkpointing,
        # Bookkeeping.
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        log_completions=False,
        disable_tqdm=True,
    )


def resolved_config(config: JobConfig, device: str, args) -> JobConfig:
    """The job's options as this run uses them: every "auto" replaced by its value.

    `args` is the run's GRPOConfig (recipe_args), which holds the learning rate and gradient
    checkpointing as resolved. Written to config.resolved.json and beside every checkpoint.
    """
    return dataclasses.replace(
        config,
        device=device,
        dtype="bf16" if model_dtype(config, device) == torch.bfloat16 else "fp32",
        learning_rate=args.learning_rate,
        gradient_checkpointing="on" if args.gradient_checkpointing else "off",
        attn_implementation=attn_implementation(config, device),
    )


# --- callbacks --------------------------------------------------------------------------------------

def make_callbacks(config: JobConfig, rollouts: Rollouts, metrics: JsonlWriter):
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """metrics.jsonl line and a progress line per step, the resolved config beside checkpoints."""

        def __init__(self):
            self.last = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs and "reward" not in logs:
                return
            now = time.time()
            reflection_rate, tokens, top_share = rollouts.take()
            record = step_record(state.global_step, state.max_steps, logs, reflection_rate, now - self.last, tokens,
                                 top_share)
            self.last = now
            metrics.write(record)
            shown = {k: "-" if record[k] is None else f"{record[k]:.4g}" for k in
                     ("reward", "rewards/accuracy", "rewards/format", "completion_length", "kl", "learning_rate")}
            log(f"step {record['step']}/{record['total_steps']} reward {shown['reward']} "
                f"acc {shown['rewards/accuracy']} fmt {shown['rewards/format']} len {shown['completion_length']} "
                f"kl {shown['kl']} reflect {reflection_rate:.2f} top-answer {'-' if top_share is None else f'{top_share:.2f}'} "
                f"lr {shown['learning_rate']} {record['seconds']:.1f}s")

        def on_save(self, args, state, control, **kwargs):
            config.save(Path(args.output_dir) / f"checkpoint-{state.global_step}" / "job_config.json")

    class StopOnSigterm(TrainerCallback):
        """SIGTERM: finish the current step, save a checkpoint, stop (the CLI then exits 143)."""

        requested = False

        def __init__(self):
            signal.signal(signal.SIGTERM, self._handle)

        def _handle(self, signum, frame):
            StopOnSigterm.requested = True
            log("SIGTERM: stopping after this step with a checkpoint")

        def on_step_end(self, args, state, control, **kwargs):
            if StopOnSigterm.requested:
                control.should_save = True
                control.should_training_stop = True

    return [StepLog(), StopOnSigterm()], StopOnSigterm


def forget_steps_after(output_dir: Path, step: int) -> None:
    """Resuming from checkpoint `step` redoes later steps: drop their metrics and rollouts lines."""
    for name in ("metrics.jsonl", "rollouts.jsonl"):
        path = output_dir / name
        if not path.exists():
            continue
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(path)


def latest_checkpoint(output_dir: Path) -> Path | None:
    folder = output_dir / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


# --- main -------------------------------------------------------------------------------------------

def build_trainer(config: JobConfig, device: str, output_dir: Path, rollouts: Rollouts, metrics: JsonlWriter,
                  reward_funcs: list | None = None):
    """The GRPOTrainer of a job, with the StepLog that writes metrics.jsonl.

    reward_funcs: for tests and library users only (no CLI option or config key), TRL reward
    functions `f(prompts, completions, completion_ids, **columns) -> list[float]` used instead of the
    paper's (make_rewards: accuracy + format). metrics.jsonl still gets `reward`, `kl` and the other
    TRL figures; rollouts.jsonl, reflection_rate and rollout tokens come from the paper's accuracy
    function, so with other rewards they stay empty / 0.
    """
    from trl import GRPOTrainer

    model = load_model(config, device)
    processor = load_processor_for(config)
    prepare_model(model, processor.tokenizer, config)
    dataset = load_data(config, processor)
    num_params = sum(p.numel() for p in model.parameters())
    args = recipe_args(config, device, num_params)
    callbacks, stopper = make_callbacks(resolved_config(config, device, args), rollouts, metrics)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list(reward_funcs) if reward_funcs is not None else make_rewards(rollouts, config.length_reward),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=callbacks,
    )
    # Our StepLog replaces the stdout dump of every log dict.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, processor, stopper


def export_model(trainer, processor, config: JobConfig, output_dir: Path) -> Path:
    """Save the trained policy as a Hugging Face folder and add its ONNX graphs (a servable model)."""
    from .export import export

    export_dir = Path(config.export_dir) if config.export_dir else output_dir / "model"
    export_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    model.generation_config.eos_token_id = end_token_ids(processor.tokenizer)
    model.save_pretrained(export_dir)
    processor.tokenizer.save_pretrained(export_dir)
    base = Path(config.base_model)
    for name in ("preprocessor_config.json", "tokenizer_config.json", "tokenizer.json"):
        if (base / name).exists():
            (export_dir / name).write_bytes((base / name).read_bytes())
    (export_dir / "README.md").write_text(
        f"# {export_dir.name}\n\nGRPO-trained by job {config.job_id} from {base.name} on {Path(config.dataset).name} "
        f"({config.steps} steps, G={config.num_generations}, {config.prompts_per_step} prompts/step, "
        f"lr {trainer.args.learning_rate:g}, beta {config.beta}).\nMade by `python -m trainer.grpo` (docs/training.md).\n"
    )
    export(export_dir, export_dir, config.export_dtypes)
    return export_dir


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config)
    started = time.time()
    resume = latest_checkpoint(output_dir)
    if resume:
        # Before the files are opened for appending.
        forget_steps_after(output_dir, int(resume.name.split("-")[1]))
    metrics = JsonlWriter(output_dir / "metrics.jsonl")
    rollouts = Rollouts(JsonlWriter(output_dir / "rollouts.jsonl"), config.rollouts_per_step)
    try:
        trainer, processor, stopper = build_trainer(config, device, output_dir, rollouts, metrics)
        # Once the model is loaded: the auto learning rate depends on its size.
        resolved_config(config, device, trainer.args).save(output_dir / "config.resolved.json")
        if resume:
            restore_policy(trainer, resume)
        log(f"training {config.base_model} on {device} for {config.steps} steps"
            + (f", resuming from {resume.name}" if resume else ""))
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if stopper.requested:
            log(f"stopped at step {trainer.state.global_step}; checkpoint saved")
            return 143
        export_dir = export_model(trainer, processor, config, output_dir)
    finally:
        metrics.close()
        if rollouts.writer:
            rollouts.writer.close()
    result = {
        "status": "succeeded",
        "steps": trainer.state.global_step,
        "model_dir": str(export_dir),
        "model_name": export_dir.name,
        "seconds": math.floor(time.time() - started),
    }
    (output_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"done: {result['steps']} steps, model {export_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
