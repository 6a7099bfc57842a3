"""The GRPO recipe: the paper's settings reach TRL, its loss/advantage/KL are the paper's on a
hand-computed example, training moves every trainable weight and no frozen one, several prompts
with different image sizes line up, and the CLI writes the job folder and resumes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer import grpo
from trainer.config import JobConfig, parse_args
from trainer.metrics import JsonlWriter, read_jsonl
from trainer.prompts import render_prompt

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "models" / "tiny-random"
SIZES = [(56, 56), (84, 56), (56, 112), (112, 84)]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A small data set in our format (docs/architecture.md), images of several sizes."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        h, w = SIZES[i % len(SIZES)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        choices = ["left", "right"] if i % 2 else ["2", "3", "4"]
        lines.append({
            "id": f"toy/train/{i}", "images": [f"images/{i}.png"], "question": f"Question {i}?", "choices": choices,
            "answer": "A", "answer_text": choices[0],
            "prompt": f"Question {i}? Select from the following choices.\n" + "\n".join(f"({chr(65 + k)}) {c}" for k, c in enumerate(choices)),
            "task": "Relation" if i % 2 else "Count", "source": "toy", "meta": {},
        })
    (root / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def job(dataset_dir, tmp_path, **overrides) -> JobConfig:
    base = dict(base_model=str(TINY), dataset=str(dataset_dir), output_dir=str(tmp_path / "job"), steps=2,
                num_generations=4, prompts_per_step=2, max_completion_length=8, learning_rate=1e-3, device="cpu",
                save_steps=1, seed=0)
    base.update(overrides)
    return JobConfig.from_dict(base).validate()


def make_trainer(config: JobConfig, tmp_path: Path, reward_funcs=None):
    rollouts = grpo.Rollouts(None, 0)
    metrics = JsonlWriter(tmp_path / "metrics.jsonl")
    trainer, processor, _ = grpo.build_trainer(config, "cpu", Path(config.output_dir), rollouts, metrics)
    if reward_funcs is not None:
        trainer.reward_funcs = reward_funcs
        trainer.reward_func_names = [f.__name__ for f in reward_funcs]
        trainer.reward_processing_classes = [None] * len(reward_funcs)
        trainer.reward_weights = torch.ones(len(reward_funcs))
    return trainer, processor


# --- configuration ------------------------------------------------------------------------------

def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"base_model": "m", "dataset": "d", "output_dir": "o", "steps": 10, "beta": 0.1}))
    config = parse_args(["--config", str(path), "--steps", "20", "--freeze-vision", "true"])
    assert (config.steps, config.beta, config.freeze_vision, config.num_generations) == (20, 0.1, True, 8)


@pytest.mark.parametrize("data, message", [
    ({"stepz": 1}, "unknown key"),
    ({"steps": 0}, "steps=0 must be at least 1"),
    ({"num_generations": 1}, "G >= 2"),
    ({"template": "chatml"}, "template='chatml'"),
    ({"steps": "many"}, "steps must be a int"),
    ({"export_dtypes": ["int3"]}, "export_dtypes"),
])
def test_bad_configurations_name_the_bad_value(data, message):
    with pytest.raises(ValueError, match=message):
        JobConfig.from_dict({"base_model": "m", "dataset": "d", "output_dir": "o", **data}).validate()


def test_resolved_config_holds_the_values_the_run_uses_not_auto(dataset_dir, tmp_path):
    from types import SimpleNamespace

    auto = job(dataset_dir, tmp_path, device="auto", learning_rate=0.0)
    assert (auto.dtype, auto.gradient_checkpointing, auto.attn_implementation) == ("auto", "auto", "auto")
    # CPU: fp32, no checkpointing, sdpa; the auto learning rate follows the model's size.
    for num_params, lr in ((2_200_000_000, 1e-6), (245_000, 1e-5)):
        resolved = grpo.resolved_config(auto, "cpu", grpo.recipe_args(auto, "cpu", num_params=num_params))
        assert (resolved.device, resolved.dtype, resolved.learning_rate, resolved.gradient_checkpointing,
                resolved.attn_implementation) == ("cpu", "fp32", lr, "off", "sdpa")
    # CUDA (the GRPOConfig stands in: building a bf16 one needs a GPU): bf16, checkpointing on.
    resolved = grpo.resolved_config(auto, "cuda", SimpleNamespace(learning_rate=1e-6, gradient_checkpointing=True))
    assert (resolved.device, resolved.dtype, resolved.gradient_checkpointing) == ("cuda", "bf16", "on")
    assert resolved.attn_implementation in ("flash_attention_2", "sdpa")
    # Explicit values stay; the saved file has no "auto" left and loads back as a valid job.
    explicit = job(dataset_dir, tmp_path, learning_rate=3e-4, dtype="bf16")
    resolved = grpo.resolved_config(explicit, "cpu", grpo.recipe_args(explicit, "cpu", num_params=245_000))
    assert (resolved.learning_rate, resolved.dtype) == (3e-4, "bf16")
    resolved.save(tmp_path / "config.resolved.json")
    saved = json.loads((tmp_path / "config.resolved.json").read_text())
    assert "auto" not in saved.values() and saved["learning_rate"] == 3e-4
    assert JobConfig.from_dict(saved).validate() == resolved
    assert auto.device == "auto" and auto.learning_rate == 0.0  # the job's own config is left as given


# --- the recipe ---------------------------------------------------------------------------------

def test_the_papers_settings_reach_trl(dataset_dir, tmp_path):
    args = grpo.recipe_args(job(dataset_dir, tmp_path, prompts_per_step=8, learning_rate=0.0), "cpu", num_params=2_200_000_000)
    assert (args.loss_type, args.scale_rewards, args.beta, args.num_iterations) == ("grpo", "group", 0.04, 1)
    assert (args.temperature, args.top_p, args.top_k) == (1.0, 1.0, 0)
    assert (args.learning_rate, args.lr_scheduler_type, args.warmup_steps, args.max_grad_norm) == (1e-6, "linear", 0, 1.0)
    # 8 prompts x G completions per step, one rollout batch per optimizer step (on-policy).
    assert args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 8
    assert args.steps_per_generation == args.gradient_accumulation_steps


@pytest.mark.parametrize("style, rewarded", [("letters", [1.0, 1.0, 0.0]), ("sat", [1.0, 0.0, 0.0])])
def test_a_letter_answer_is_rewarded_only_where_the_question_shows_the_letters(dataset_dir, tmp_path, style, rewarded):
    config = job(dataset_dir, tmp_path, question_style=style)
    row = grpo.load_data(config, grpo.load_processor_for(config))[1]  # gold A: "left" of (A) left (B) right
    columns = {k: [row[k]] * 3 for k in row if k not in ("prompt", "image")}
    accuracy = grpo.make_rewards(grpo.Rollouts(None, 0), 0.0)[0]
    completions = [" x </think><answer>left</answer>", " x </think><answer>(A)</answer>", " x </think><answer>B</answer>"]
    assert accuracy(prompts=[row["prompt"]] * 3, completions=completions, completion_ids=[[1]] * 3, **columns) == rewarded


def test_r1_prompt_rendered_for_trl_is_exactly_the_papers(dataset_dir, tmp_path):
    config = job(dataset_dir, tmp_path)
    processor = grpo.load_processor_for(config)
    from trainer.data import prompt_messages, read_split, sat_question

    item = read_split(dataset_dir, "train")[0][0]
    messages = prompt_messages(item, "r1", "sat")
    from trl.data_utils import prepare_multimodal_messages

    rendered = processor.apply_chat_template(prepare_multimodal_messages(messages, images=[None]), tokenize=False,
                                             add_generation_prompt=True)
    assert rendered == render_prompt("r1", sat_question(item.question, item.choices), has_image=True)
    assert rendered.startswith("<|vision_start|><|image_pad|><|vision_end|><image>A conversation")
    assert rendered.endswith("Assistant: Let me solve this step by step.\n<think>")


def test_loss_advantage_and_kl_match_a_hand_computed_example(dataset_dir, tmp_path):
    config = job(dataset_dir, tmp_path, beta=0.04)
    trainer, _ = make_trainer(config, tmp_path)
    model = trainer.model
    prompt_ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    completion_ids = torch.tensor([[20, 21, 22], [23, 24, 25]])
    completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages = torch.tensor([0.7, -1.3])
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, prompt_ids.size(1) - 1:-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion_ids[..., None])[..., 0]
    delta = torch.tensor([[0.1, -0.2, 0.3], [0.05, 0.4, 0.0]])
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": advantages, "ref_per_token_logps": logp + delta,
              "num_items_in_batch": completion_mask.sum()}
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; one micro-batch here
    loss = trainer._compute_loss(model, inputs)
    # Paper: per token -(exp(logp - logp.detach()) * A - beta * kl), kl = exp(ref - logp) - (ref - logp) - 1;
    # mean over each sequence's completion tokens, then over sequences.
    expected = 0.0
    for i in range(2):
        terms = [-(advantages[i].item() - 0.04 * (math.exp(d) - d - 1)) for d, m in zip(delta[i].tolist(), completion_mask[i].tolist(), strict=True) if m]
        expected += sum(terms) / len(terms) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_advantages_are_group_normalised_with_the_unbiased_std(dataset_dir, tmp_path):
    config = job(dataset_dir, tmp_path)
    rewards = [1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 2.0]  # two prompts x G=4

    def fixed(completions, **_):
        return rewards[: len(completions)]

    trainer, _ = make_trainer(config, tmp_path, [fixed])
    batch = [trainer.train_dataset[0]] * 4 + [trainer.train_dataset[1]] * 4
    out = trainer._generate_and_score_completions(batch)
    r = torch.tensor(rewards).view(2, 4)
    expected = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=True, keepdim=True) + 1e-4)).view(-1)
    assert torch.allclose(out["advantages"], expected, atol=1e-6)


def test_both_end_tokens_of_the_base_model_end_a_completion(dataset_dir, tmp_path):
    trainer, processor = make_trainer(job(dataset_dir, tmp_path), tmp_path)
    ids = {processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    assert ids <= set(trainer.eos_token_ids)
    assert trainer.generation_config.temperature == 1.0 and trainer.generation_config.top_k == 0


def test_several_prompts_with_different_image_sizes_line_up(dataset_dir, tmp_path):
    """TRL's batched reference log-probs equal each sample computed alone (image/grid ordering)."""
    config = job(dataset_dir, tmp_path, beta=0.04)
    trainer, processor = make_trainer(config, tmp_path)
    batch = [trainer.train_dataset[0]] * 4 + [trainer.train_dataset[2]] * 4  # 56x56 and 56x112 images
    out = trainer._generate_and_score_completions(batch)
    model = trainer.ref_model or trainer.model
    for row, example in ((0, batch[0]), (5, batch[5])):
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example["prompt"][0]["content"]}]}],
            tokenize=False, add_generation_prompt=True)
        single = processor(text=[prompt], images=[example["image"]], return_tensors="pt")
        completion = out["completion_ids"][row][out["completion_mask"][row].bool()]
        ids = torch.cat([single["input_ids"][0], completion])[None]
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=single["pixel_values"], image_grid_thw=single["image_grid_thw"],
                           mm_token_type_ids=torch.cat([single["mm_token_type_ids"][0], torch.zeros_like(completion)])[None]).logits
        n = completion.numel()
        alone = torch.log_softmax(logits[0, -n - 1:-1].float(), -1).gather(-1, completion[:, None])[:, 0]
        assert torch.allclose(out["ref_per_token_logps"][row][:n], alone, atol=1e-4), f"row {row}"


@pytest.mark.parametrize("freeze", ["none", "vision", "llm"])
def test_a_step_moves_every_trainable_weight_and_no_frozen_one(dataset_dir, tmp_path, freeze):
    config = job(dataset_dir, tmp_path, steps=1, freeze_vision=freeze == "vision", freeze_llm=freeze == "llm",
                 max_completion_length=6, save_steps=100)

    def varied(completions, **_):
        return [float(i % 3) for i in range(len(completions))]  # non-zero advantages in every group

    trainer, _ = make_trainer(config, tmp_path, [varied])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved, still = [], []
    for name, param in trainer.model.named_parameters():
        (still if torch.equal(before[name], param.detach()) else moved).append(name)
    frozen = {"vision": "model.visual.", "llm": ("model.language_model.", "lm_head.")}.get(freeze)
    for name in moved:
        assert not (frozen and name.startswith(frozen)), f"frozen parameter {name} changed"
    for name in still:
        assert frozen and name.startswith(frozen), f"trainable parameter {name} did not change"


# --- the command line ---------------------------------------------------------------------------

def test_cli_writes_the_job_folder_exports_a_servable_model_and_resumes(dataset_dir, tmp_path):
    out = tmp_path / "job"
    common = ["--base-model", str(TINY), "--dataset", str(dataset_dir), "--output-dir", str(out), "--device", "cpu",
              "--num-generations", "4", "--prompts-per-step", "2", "--max-completion-length", "8",
              "--learning-rate", "1e-3", "--save-steps", "1", "--rollouts-per-step", "-1"]
    assert grpo.main([*common, "--steps", "3"]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        for key in ("reward", "reward_std", "rewards/accuracy", "rewards/format", "completion_length", "kl", "loss",
                    "learning_rate", "reflection_rate", "seconds", "answer_top_share"):
            assert m[key] is not None, key
        assert 0 <= m["reward"] <= 2
        assert 1 / 8 <= m["answer_top_share"] <= 1  # 8 completions a step
    rollouts = read_jsonl(out / "rollouts.jsonl")
    assert len(rollouts) == 3 * 8 and {r["step"] for r in rollouts} == {1, 2, 3}
    assert rollouts[0]["prompt"].startswith("<|vision_start|><|image_pad|><|vision_end|><image>A conversation")
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded" and result["steps"] == 3
    model_dir = Path(result["model_dir"])
    assert json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"] == [1097, 1099]
    from trainer.onnx_infer import OnnxQwen2VL

    ids = np.array([[5, 6, 7]], dtype=np.int64)
    tokens = OnnxQwen2VL(model_dir).greedy(ids, np.ones_like(ids), np.broadcast_to(np.arange(3)[None, None], (3, 1, 3)), 3)
    assert tokens.shape == (1, 3)
    assert (out / "checkpoints" / "checkpoint-2" / "job_config.json").exists()
    # The saved configurations hold what the run used, not "auto".
    for path in (out / "config.resolved.json", out / "checkpoints" / "checkpoint-2" / "job_config.json"):
        saved = json.loads(path.read_text())
        assert (saved["device"], saved["dtype"], saved["learning_rate"], saved["gradient_checkpointing"]) == (
            "cpu", "fp32", 1e-3, "off"), path

    # A crash after checkpoint-2 (step 3 logged, its checkpoint lost): the job resumes from step 2,
    # forgets the lost step's lines and redoes step 3 on the same learning-rate schedule.
    import shutil

    shutil.rmtree(out / "checkpoints" / "checkpoint-3")
    (out / "result.json").unlink()
    lr_step_3 = metrics[2]["learning_rate"]
    assert grpo.main([*common, "--steps", "3"]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert metrics[2]["learning_rate"] == pytest.approx(lr_step_3) == pytest.approx(1e-3 / 3)
    assert {r["step"] for r in read_jsonl(out / "rollouts.jsonl")} == {1, 2, 3}
    assert len(read_jsonl(out / "rollouts.jsonl")) == 3 * 8

    # A finished job run again with a larger total continues from its last checkpoint (how the
    # shipped nano run went from 300 to 500 steps), the schedule spread over the new total.
    (out / "result.json").unlink()
    assert grpo.main([*common, "--steps", "5"]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert metrics[2]["learning_rate"] == pytest.approx(lr_step_3)
    assert metrics[4]["learning_rate"] == pytest.approx(1e-3 / 5)
    assert json.loads((out / "result.json").read_text())["steps"] == 5


def test_a_resumed_job_continues_from_the_checkpoints_weights(tmp_path):
    """A checkpoint holds Qwen2-VL's weights under their saved names; the Trainer's own resume matched
    none of them and went on from the base. restore_policy must put every trained weight back."""
    import types

    from safetensors.torch import load_file
    from transformers import Qwen2VLForConditionalGeneration

    trained = Qwen2VLForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    trained.save_pretrained(tmp_path / "checkpoint-7")
    policy = Qwen2VLForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    # What the Trainer would have done: no saved name is a name of the module in memory.
    missed = policy.load_state_dict(load_file(tmp_path / "checkpoint-7" / "model.safetensors"), strict=False)
    assert missed.unexpected_keys and len(missed.missing_keys) >= len(trained.state_dict()) - 1
    job = types.SimpleNamespace(model=policy)
    grpo.restore_policy(job, tmp_path / "checkpoint-7")
    restored = policy.state_dict()
    assert restored.keys() == trained.state_dict().keys()
    for name, want in trained.state_dict().items():
        assert torch.equal(want, restored[name]), name
    job._load_from_checkpoint(str(tmp_path / "checkpoint-7"))  # the Trainer's own load is now a no-op


def test_sigterm_saves_a_checkpoint_and_exits_143(dataset_dir, tmp_path):
    out = tmp_path / "job"
    command = [sys.executable, "-m", "trainer.grpo", "--base-model", str(TINY), "--dataset", str(dataset_dir),
               "--output-dir", str(out), "--device", "cpu", "--steps", "50", "--num-generations", "2",
               "--prompts-per-step", "1", "--max-completion-length", "4", "--save-steps", "1000"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not read_jsonl(out / "metrics.jsonl"):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    checkpoints = list((out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, process.stderr.read()
    assert not (out / "result.json").exists()
