"""The trainer provably learns (issue 12, item 1): GRPO with our recipe (build_trainer, recipe_args)
on the tiny random model raises a reward its initial policy earns only sometimes, and the KL to the
frozen reference grows from 0. Checked on metrics.jsonl, what a user of the trainer sees.

The reward: 1 when a completion's first token is one of a fixed fifth of the vocabulary (ids
divisible by 5), else 0. The random model's first-token distribution is nearly uniform over its
1152 tokens, so the initial policy earns it about 20% of the time. Measured with this setting
(seed 0, one thread; the figures are the same run to run): reward 0.28 at step 1, 0.225 over the
first five steps, 0.98 over the last five; KL 0 at step 1, 2.4-3.6 over the last five. Seeds 0-9
start at 0.17-0.25 over the first five steps; seeds 1, 2 and 6 (the slowest of them at 30 steps)
end at 0.86-0.94 over the last five of 40, a margin of 0.64 or more over the 0.4 asserted.
With the learning rate forced to 0 the reward stays at 0.18-0.19 and the KL at 0, and the test fails.
The vision tower is frozen only to skip its backward pass (test_grpo.py checks freezing itself).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import grpo
from trainer.metrics import JsonlWriter, read_jsonl
from trainer.tests import test_grpo

dataset_dir = test_grpo.dataset_dir  # the toy data set fixture of test_grpo.py
job = test_grpo.job

STEPS = 40


def first_token_in_a_fifth(completion_ids, **_):
    return [1.0 if len(ids) and ids[0] % 5 == 0 else 0.0 for ids in completion_ids]


@pytest.fixture
def one_thread():
    """One thread: the run's figures depend on the thread count, and on 2 shared cores it is 2x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_grpo_raises_a_reward_the_initial_policy_earns_sometimes(dataset_dir, tmp_path, one_thread):
    config = job(dataset_dir, tmp_path, steps=STEPS, num_generations=8, prompts_per_step=4, micro_batch_prompts=4,
                 max_completion_length=4, temperature=1.0, learning_rate=2e-2, beta=0.04, freeze_vision=True,
                 save_steps=1000, seed=0)
    output_dir = Path(config.output_dir)
    metrics = JsonlWriter(output_dir / "metrics.jsonl")
    try:
        trainer, _, _ = grpo.build_trainer(config, "cpu", output_dir, grpo.Rollouts(None, 0), metrics,
                                           reward_funcs=[first_token_in_a_fifth])
        trainer.train()
    finally:
        metrics.close()

    records = read_jsonl(output_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    reward = [r["reward"] for r in records]
    kl = [r["kl"] for r in records]
    # Step 1 samples the initial policy: it earns the reward, but rarely.
    assert 0.05 <= reward[0] <= 0.5, reward
    first, last = sum(reward[:5]) / 5, sum(reward[-5:]) / 5
    assert last >= first + 0.4, f"reward did not rise: first 5 steps {first:.3f}, last 5 {last:.3f}: {reward}"
    # The policy equals the reference at step 1, then moves away from it.
    assert abs(kl[0]) <= 1e-6, kl
    assert min(kl[-5:]) > 0.1, kl
