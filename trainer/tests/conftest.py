"""Shared fixtures: a tiny model made by our own commands, once per test session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.export import export
from trainer.init_model import init_model
from trainer.processor import load_processor


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    init_model("tiny", out, seed=0)
    export(out, out, ["fp32", "fp16", "q8", "q4"])
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tiny_processor(tiny_dir):
    processor = load_processor(tiny_dir)
    processor.tokenizer.padding_side = "left"
    return processor


def random_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def chat_prompt(processor, question: str, with_image: bool) -> str:
    content = [{"type": "image"}, {"type": "text", "text": question}] if with_image else question
    return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)
