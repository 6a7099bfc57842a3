"""Load a model folder's processor (image processor + tokenizer) without torchvision.

`AutoProcessor` builds Qwen2-VL's video processor, which needs torchvision, and torchvision has no
CPU build for this machine kind. We use the PIL image backend everywhere (CPU and GPU alike) so
pixel values are the same on every machine; images are all this project feeds the model.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


def load_image_processor(model_dir: str | Path, **overrides) -> Qwen2VLImageProcessorPil:
    """`overrides` such as min_pixels / max_pixels replace the folder's preprocessor_config values."""
    return Qwen2VLImageProcessorPil.from_pretrained(str(model_dir), **overrides)


class Qwen2VLImageTextProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor for images and text only: no video processor attribute to build."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def load_processor(model_dir: str | Path, **image_overrides) -> Qwen2VLImageTextProcessor:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return Qwen2VLImageTextProcessor(
        image_processor=load_image_processor(model_dir, **image_overrides),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
