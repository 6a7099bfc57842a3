"""Prompt templates (a shared rule: the TypeScript engine renders the same strings, pinned by
test/vectors/templates.json).

- `r1`: the paper's base-model prompt (docs/method.md, "Prompts"). No roles, no system turn: the image
  placeholder, the literal text `<image>`, then the conversation text ending in `<think>`, so the
  completion starts inside the think block.
- `direct`: the same conversation without the sentence about thinking, ending in `Assistant: `.
- `instruct`: the model's own chat template, with the paper's suffix after the question.
- `raw`: the question as it is (after the image placeholder when there is an image).
"""

from __future__ import annotations

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

R1_INTRO = (
    "A conversation between User and Assistant. The user asks a question about the image, and the Assistant "
    "solves it."
)
R1_THINKING = (
    " The assistant first thinks about the reasoning process in the mind and then provides the user with the answer."
)
INSTRUCT_SUFFIX = "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."

TEMPLATES = ("r1", "direct", "instruct", "raw")


def opens_think(template: str) -> bool:
    """Whether the prompt itself opens the think block (the completion starts inside it)."""
    return template == "r1"


def render_prompt(template: str, question: str, has_image: bool, chat_template=None) -> str:
    """The full prompt text; `<|image_pad|>` stands for the image and is expanded by the processor.

    `chat_template(messages) -> str` renders the model's chat template with a generation prompt
    (needed by `instruct` only).
    """
    image = IMAGE_PLACEHOLDER if has_image else ""
    if template == "r1":
        # The original code prefixes the text with a literal "<image>" after the vision tokens.
        text = f"{R1_INTRO}{R1_THINKING}\nUser: {question} \nAssistant: Let me solve this step by step.\n<think>"
        return f"{image}<image>{text}" if has_image else text
    if template == "direct":
        text = f"{R1_INTRO}\nUser: {question} \nAssistant: "
        return f"{image}<image>{text}" if has_image else text
    if template == "raw":
        return image + question
    if template == "instruct":
        if chat_template is None:
            raise ValueError("the instruct template needs the model's chat template")
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": f"{question} {INSTRUCT_SUFFIX}"}]
        return chat_template([{"role": "user", "content": content}])
    raise ValueError(f"unknown template {template!r}; choose one of {TEMPLATES}")
