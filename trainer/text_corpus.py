"""Text the project generates to train its own small tokenizer.

The embedded models never see downloaded text, so their byte-level BPE vocabulary is learned from
sentences of the kinds they will read and write: the R1 prompt, CV-Bench/SAT-style spatial
questions with lettered choices, scene descriptions, think/answer completions with self-reflection,
and some general English and other scripts so that no input falls off the learned merges entirely.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

R1_PREFIX = (
    "A conversation between User and Assistant. The user asks a question about the image, and the "
    "Assistant solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer.\nUser: "
)
R1_SUFFIX = " \nAssistant: Let me solve this step by step.\n<think>"
INSTRUCT_SUFFIX = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "black", "white", "brown", "pink", "cyan"]
SHAPES = ["cube", "sphere", "cylinder", "cone", "pyramid", "torus", "box", "ball", "block", "disk"]
SIZES = ["small", "large", "big", "tiny", "medium-sized"]
OBJECTS = [
    "person", "car", "chair", "table", "lamp", "bed", "sofa", "book", "bottle", "cup", "dog", "cat",
    "tree", "window", "door", "plant", "refrigerator", "television", "monitor", "keyboard", "bicycle",
    "truck", "bus", "shelf", "cabinet", "pillow", "sink", "toilet", "oven", "clock", "vase", "desk",
]
RELATIONS = ["left of", "right of", "above", "below", "in front of", "behind", "next to", "on top of", "under"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
REFLECTIONS = [
    "Wait, let me re-check.", "Hmm, wait.", "Let me verify this.", "Let me check again.",
    "Aha, I see.", "But possibly the other one is closer.", "Yet the shadow suggests otherwise.",
    "Let me re-evaluate.", "On second thought,", "Actually,",
]
GENERAL = [
    "The quick brown fox jumps over the lazy dog.",
    "Please describe the image in detail.",
    "What is shown in this picture?",
    "I think the answer is correct, but let me explain why.",
    "The camera is looking at the scene from a low angle.",
    "Objects that are farther away appear smaller and higher in the image.",
    "Hello! How can I help you today?",
    "Thank you for the question.",
    "The total is 42, which is 6 times 7.",
    "def add(a, b):\n    return a + b\n",
    "{\"answer\": \"A\", \"score\": 0.95}",
    "<html><body><p>Image</p></body></html>",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -7 50%",
    "Le chat est sur la table. Der Hund ist unter dem Tisch. El coche es rojo.",
    "这是一个红色的立方体。 これは青い球です。 빨간 상자가 있습니다.",
    "Emoji: 🙂 👍 🚗 🐱 ✨",
]


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def _choices_block(options: list[str]) -> str:
    lines = [f"({letter}) {text}" for letter, text in zip(_letters(len(options)), options, strict=False)]
    return "Select from the following choices.\n" + "\n".join(lines)


def _object(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(COLOURS)} {rng.choice(SHAPES)}"
    return rng.choice(OBJECTS)


def _question(rng: random.Random) -> tuple[str, list[str], int]:
    kind = rng.randrange(5)
    if kind == 0:
        colour = rng.choice(COLOURS)
        n = rng.randrange(0, 7)
        options = sorted({str(n), str(max(0, n - 1)), str(n + 1), str(n + 2)}, key=int)
        return f"How many {colour} objects are in the image?", options, options.index(str(n))
    a, b = _object(rng), _object(rng)
    if kind == 1:
        options = ["left", "right"] if rng.random() < 0.5 else ["above", "below"]
        return f"Where is the {a} located with respect to the {b}?", options, rng.randrange(2)
    if kind == 2:
        return f"Which object is closer to the camera taking this photo, the {a} or the {b}?", [a, b], rng.randrange(2)
    if kind == 3:
        c = _object(rng)
        return f"Which object is closer to the {c} (in 3D), the {a} or the {b}?", [a, b], rng.randrange(2)
    options = ["True", "False"]
    return f"Is the {a} {rng.choice(RELATIONS)} the {b}?", options, rng.randrange(2)


def _completion(rng: random.Random, options: list[str], gold: int) -> str:
    letter = _letters(len(options))[gold]
    thoughts = [f"The image shows a {_object(rng)} {rng.choice(RELATIONS)} a {_object(rng)}."]
    if rng.random() < 0.5:
        thoughts.append(rng.choice(REFLECTIONS))
    thoughts.append(f"So the answer is {options[gold]}.")
    answer = rng.choice([f"({letter})", letter, options[gold], f"{letter}. {options[gold]}"])
    return f" {' '.join(thoughts)} </think>\n<answer>{answer}</answer>"


def _scene_description(rng: random.Random) -> str:
    n = rng.randrange(2, 7)
    parts = []
    for _ in range(n):
        parts.append(f"a {rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)}")
    first, second = rng.sample(parts, 2)
    return (
        f"The scene contains {NUMBER_WORDS[n]} objects: {', '.join(parts)}. "
        f"{first[0].upper() + first[1:]} is {rng.choice(RELATIONS)} {second}. "
        f"The {rng.choice(SHAPES)} at ({rng.randrange(640)}, {rng.randrange(480)}) is closer to the camera."
    )


def generate_corpus(lines: int = 20000, seed: int = 0) -> Iterator[str]:
    """Yield `lines` training texts; the same seed always gives the same texts."""
    rng = random.Random(seed)
    for i in range(lines):
        kind = i % 6
        if kind in (0, 1):
            question, options, gold = _question(rng)
            prompt = f"{question} {_choices_block(options)}"
            yield R1_PREFIX + prompt + R1_SUFFIX + _completion(rng, options, gold)
        elif kind == 2:
            question, options, gold = _question(rng)
            answers = ", ".join(options[:-1]) + f" or {options[-1]}"
            text = f"Answer in natural language. {question} Choose between the following options: {answers}"
            yield f"User: {text} {INSTRUCT_SUFFIX}\nAssistant: <think>{_completion(rng, options, gold)}"
        elif kind == 3:
            yield _scene_description(rng)
        elif kind == 4:
            yield rng.choice(GENERAL)
        else:
            yield " ".join(rng.choice(OBJECTS + COLOURS + SHAPES + RELATIONS) for _ in range(rng.randrange(3, 12)))
