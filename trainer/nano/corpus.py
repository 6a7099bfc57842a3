"""Text of the embedded `nano` model's base pre-training, and its tokenizer corpus.

The nano model stands in for a web-pre-trained base model, so its corpus is a documented mixture
of the kinds of text such a model has read. R1-Zero RL does not invent an output format: it
selects and amplifies among the formats the base model already puts probability on. "Echo
Chamber: RL Post-training Amplifies Behaviors Learned in Pretraining" (arXiv 2504.07912) trains
models from scratch on open data mixtures and finds RL converging on one dominant output format of
the pre-training data; "On the Interplay of Pre-Training, Mid-Training, and RL on Reasoning Language
Models" (arXiv 2512.07783) finds that RL transfers a skill to a new surface context only after
minimal but sufficient pre-training exposure to that context, and gains most on tasks at the edge
of the pre-trained model's competence. A real base model has seen question/answer text, chat transcripts and `<think>`/`<answer>`-style
markup on the web; this corpus gives the nano model the same, about other domains, while the
spatial skills the benchmark measures (counting, relations, depth, distance) are only ever *stated*
in captions, never asked and answered. Mixture (`Mixture`, shares of all documents):

1. `description` (0.55; image): the scene description `npm run synth -- --describe` stores in each
   record's `meta.description` (src/benchmarks/spatial_synth/describe.ts): statements of counts,
   left/right/above/below, closer to the camera, closer to an object. Half `prose` (the paragraph,
   a quarter of them with one general remark, REMARKS), half `markup` (the facts as `<name>...</name>`
   sections, most announced by a sentence such as "The note first describes the {a} and then
   provides the reader with the {b}.", a last section of one value, the document ending right
   after its closing tag).
2. `markup` (0.10; image): generic markup over the scene's facts with any tag names (GENERIC_TAGS:
   74 ordinary words, `think` and `answer` two of them, drawn as often as any other): `sections`
   (2 to 8 sections, each closed with its own name, the last one a value) or `nested` (the same
   inside one outer element).
3. `text_qa` (0.25; no image): question/answer documents of other domains (TEXT_TASKS: small
   arithmetic, comparing two or three numbers, alphabetical order, the length of a word, a value
   looked up in a list) and
   `image_qa` (0.10; image): identity questions about the scene (the color of the one object of a
   shape, the shape of the one object of a color, the size word of an object, and which object
   (its "color shape" phrase, the form the benchmarks' options name objects in) is the one of a
   color or of a shape), asked only where the referent is unique in the scene and mostly visible,
   answered from `meta.scene.objects`.
   Each Q/A document takes one style (shares of the Q/A documents): `tagged` (0.4: the question,
   then `<think> reasoning </think>` and `<answer>VALUE</answer>`), `r1` (0.15: the conversation of
   the paper's r1 prompt, "A conversation between User and Assistant. ... User: {q} \\nAssistant:
   Let me solve this step by step.\\n<think> {reasoning} </think>\\n<answer>{value}</answer>",
   ending there; prompts.R1_INTRO/R1_THINKING or a paraphrase, and for text-only questions an
   intro that does not say "about the image"), `direct` (0.1: prompts' direct framing, "...
   \\nUser: {q} \\nAssistant: {value}") or `plain` (the rest: "Question: ... Answer: ..." or "Q: ...
   A: ..."). A share `choices` (0.3) of them list lettered options the CV-Bench way ("{q} Select
   from the following choices.\\n(A) 12\\n(B) 7") and answer with the option's text; a share
   `letter` (default 0) of the documents that list choices answer with the option's letter instead
   (`B` or `(B)`), the way multiple-choice pages and benchmarks answer. Reasoning is one or two short, correct sentences about
   the task ("7 plus 5 is 12.", "b comes before d in the alphabet."), never a self-reflection word
   (rewards.REFLECTION_PATTERN): reflection in GRPO rollouts must emerge, not be copied.

Never in any document: a question of the four evaluated families (Count, Relation, Depth,
Distance) in any wording; `evaluated_family_questions` finds such questions and
`pretrain_examples` refuses to return a corpus holding one.

Every scene gives one image document (its kind drawn by the image kinds' relative shares, exactly
apportioned), and text-only documents are added so that they make up `text_qa` of all documents.
Half of the image documents put the literal text `<image>` after the image, as the paper's prompt
does (the example's `prefix`); text-only documents have no image and an empty prefix.

The tokenizer is trained on these documents plus the question texts and the prompt templates
(r1 and direct) of the training split. In its corpus a `<` or `>` directly next to a letter is
doubled away from it and a space before a letter becomes a newline (tokenizer_text), so no merge
fuses a word with a bracket or with the space before it: `the answer` encodes as `the`, `Ġ`,
`answer` and `<answer>` as `<`, `answer`, `>`, and a word is one and the same token in prose and
as a section name. (The first attempt kept Qwen2's `Ġword` tokens, so `answer` in the prompt and
`answer` in a tag were different tokens, the bare one never trained; docs/embedded-model.md.)
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from ..data import read_split
from ..prompts import R1_INTRO, R1_THINKING, render_prompt
from ..rewards import REFLECTION_PATTERN
from . import grounding

IMAGE_MARK = "<image>"


@dataclass(frozen=True)
class Mixture:
    """Shares of the pre-training corpus (see the module docstring for what each kind is).

    description: image + scene description (prose, or generic markup of the facts).
    markup: image + generic markup with any tag names, think and answer included.
    text_qa: text-only question/answer documents of other domains (arithmetic, comparisons,
        alphabetical order, word length, list lookup).
    image_qa: image + identity question about the scene (color, shape, size of a unique referent).
    grounding: image + facts about it worded with the answer last, the loss on the answers only
        (trainer.nano.grounding); 0 in the shipped corpus.
    one_object: share of the grounding documents that state only where single named objects are
        (the first step of a grounding curriculum).
    relations: share of the grounding documents that state only left/right and above/below
        relations between two named objects, as often against the subject's own half of the
        picture as with it (the second step); one_object + relations is at most 1.
    first_wording: share of the grounding documents whose facts all come in their kind's first
        wording (a curriculum learns the lookup in one wording before the others).
    single_fact: share of the grounding documents that state one fact, as the binding test's
        examples do (it did not make the one-object step learn: docs/embedded-model.md, "The
        curriculum experiment").
    The five kinds sum to 1. The styles are shares of the Q/A documents (text_qa and image_qa):
    tagged: the question, then <think> reasoning </think> <answer>value</answer>.
    r1: the conversation framing of the paper's r1 prompt, think/answer completion included.
    direct: the direct framing ("User: {q} \\nAssistant: {value}"); the rest are plain
        ("Question: ... Answer: ..." / "Q: ... A: ...").
    choices: share of the Q/A documents other than option-picking ones whose question lists
        lettered choices (answered by option text, or by letter: see `letter`).
    pick: share of the text Q/A documents that are option-picking questions (always with choices);
        the rest are spread evenly over the other text tasks.
    letter: share of the Q/A documents that list choices (option-picking ones included) whose
        answer is the option's letter (`B` or `(B)`) rather than its text.
    shuffled: share of the prose descriptions whose facts come in a random order, the
        left-to-right object list among them, so a relation stated before the list can only be
        read off the picture (style `shuffled`).
    match: share of the Q/A documents that are reference-matching questions ("Which object has the
        same color as the red cone, the blue cone or the red cube?", MATCH_TASKS), always with
        choices: text-only ones among the text Q/A, picture ones among the image Q/A (where the
        scene allows one). They name a reference object before the options, as distance
        questions do, and teach that the answer is an option copied whole, never the reference.
    recite: share of the tagged and r1 Q/A documents listing choices whose reasoning first
        restates the options and ends by naming the one it picks ("The choices are red and blue.
        The cube is blue. So the answer is blue."), as worked multiple-choice answers do.
    """

    description: float = 0.55
    markup: float = 0.10
    text_qa: float = 0.25
    image_qa: float = 0.10
    grounding: float = 0.0
    one_object: float = 0.0
    relations: float = 0.0
    first_wording: float = 0.0
    single_fact: float = 0.0
    tagged: float = 0.4
    r1: float = 0.15
    direct: float = 0.1
    choices: float = 0.3
    pick: float = 0.2
    letter: float = 0.0
    shuffled: float = 0.0
    recite: float = 0.0
    match: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"Mixture.{field.name} = {value!r} is not a share in [0, 1]")
        kinds = {k: getattr(self, k) for k in KINDS}
        if abs(sum(kinds.values()) - 1) > 1e-6:
            parts = " + ".join(f"{k} {v}" for k, v in kinds.items())
            raise ValueError(f"Mixture kinds must sum to 1: {parts} = {sum(kinds.values()):.6g}")
        if self.one_object + self.relations > 1 + 1e-6:
            raise ValueError(f"Mixture.one_object + relations must be at most 1: {self.one_object} + {self.relations}")
        styles = {k: getattr(self, k) for k in ("tagged", "r1", "direct")}
        if sum(styles.values()) > 1 + 1e-6:
            parts = " + ".join(f"{k} {v}" for k, v in styles.items())
            raise ValueError(f"Mixture styles must sum to at most 1 (the rest is plain): {parts} = {sum(styles.values()):.6g}")

    def styles(self) -> dict[str, float]:
        """Shares of the Q/A styles, plain included."""
        plain = max(0.0, 1 - self.tagged - self.r1 - self.direct)
        return {"tagged": self.tagged, "r1": self.r1, "direct": self.direct, "plain": plain}


KINDS = ("description", "markup", "text_qa", "image_qa", "grounding")
QA_STYLES = ("tagged", "r1", "direct", "plain")
CHOICES_LINE = "Select from the following choices."

# --- scene description and markup documents --------------------------------------------------------

# Section names: ordinary words, think and answer among them (drawn as often as any other).
GENERIC_TAGS = [
    "objects", "scene", "summary", "list", "count", "colors", "shapes", "layout", "notes", "details", "facts",
    "overview", "result", "final", "caption", "label", "order", "position", "depth", "distance", "relations",
    "picture", "camera", "record", "note", "data", "output", "text", "title", "header", "body", "main", "info",
    "item", "group", "table", "section", "part", "value", "total", "name", "key", "entry", "field", "size",
    "color", "shape", "place", "view", "report", "comment", "remark", "first", "second", "last", "number",
    "word", "line", "block", "box", "frame", "fact", "point", "detail", "left", "right", "near", "far",
    "think", "answer", "reason", "reply", "response", "solution",
]

# Sentences announcing two sections, in order ({a} first, {b} last).
ANNOUNCE_TWO = [
    "This record first lists the {a} and then gives the {b}.",
    "The {a} comes first and the {b} follows.",
    "Sections: {a}, {b}.",
    "The note first describes the {a} and then provides the reader with the {b}.",
    "It has two parts: the {a} and the {b}.",
    "Below are the {a} and then the {b}.",
    "First the {a}, then the {b}.",
]
ANNOUNCE_THREE = [
    "This record gives the {a}, the {b} and then the {c}.",
    "Sections: {a}, {b}, {c}.",
    "It has three parts: first the {a}, then the {b}, and last the {c}.",
]
# Sentences that name only the last section.
ANNOUNCE_LAST = [
    "The note first describes the picture and then provides the reader with the {b}.",
    "The writer first looks at the scene and then gives the reader the {b}.",
    "This text first goes over what is seen and then tells the reader the {b}.",
    "The page first lists what the camera sees and then states the {b}.",
    "The record first sets out the facts, and the {b} comes at the end.",
    "The author first writes about the objects and then provides us with the {b}.",
    "First the picture is described, then the {b} is given.",
]

# General English remarks, one added to some prose and markup descriptions (a stand-in for the
# everyday text a real base model reads). None holds a self-reflection word.
REMARKS = [
    "I think the picture was taken from a low angle.",
    "We think the light comes from one side.",
    "Many people think that nearer objects look bigger, and they are right.",
    "Objects that are farther away look smaller and sit higher in the picture.",
    "There is no single answer to how a scene should be described.",
    "A careful look at the picture gives a clear answer about most things in it.",
    "The shadows fall away from the light.",
    "The ground is flat and the camera looks down at it.",
    "It is easy to think that two objects touch when one hides part of the other.",
    "Counting one by one gives the same answer every time.",
    "The sky is light and the ground is a little darker near the camera.",
    "You can think of the picture as a small table seen from above.",
]


def description_of(record: dict) -> dict:
    meta = record.get("meta") or {}
    description = meta.get("description")
    if not description or "facts" not in description:
        raise ValueError(f"record {record.get('id')} has no meta.description: write the data with `npm run synth -- --describe`")
    return description


def _names(rng: random.Random, count: int) -> list[str]:
    return rng.sample(GENERIC_TAGS, count)


def _section(name: str, body: str) -> str:
    return f"<{name}>{body}</{name}>"


def make_document(description: dict, rng: random.Random, markup_share: float = 0.5) -> tuple[str, str]:
    """(style, text) of one scene description document: `prose` (share 1 - markup_share) or
    `markup` (the facts in one or two sections and one short value section last)."""
    facts = description["facts"]
    remark = rng.choice(REMARKS) if rng.random() < 0.25 else ""
    if rng.random() < 1 - markup_share:
        text = description["text"]
        if remark:
            text = f"{remark} {text}" if rng.random() < 0.5 else f"{text} {remark}"
        return "prose", text
    last = rng.choice(facts)
    body = [f["text"] for f in facts] + ([remark] if remark else [])
    three = len(body) >= 4 and rng.random() < 0.3
    names = _names(rng, 3 if three else 2)
    if three:
        cut = rng.randrange(1, len(body))
        bodies = [" ".join(body[:cut]), " ".join(body[cut:])]
    else:
        bodies = [" ".join(body)]
    bodies.append(last["value"])
    sep = rng.choice(["\n", " ", ""])
    marked = sep.join(_section(n, b) for n, b in zip(names, bodies, strict=True))
    if rng.random() < 0.8:
        template = rng.choice(ANNOUNCE_THREE if three else ANNOUNCE_TWO)
        return "markup", template.format(**dict(zip("abc", names, strict=False))) + "\n" + marked
    return "markup", marked


def make_markup_document(description: dict, rng: random.Random) -> tuple[str, str]:
    """(style, text) of one generic markup document over the facts: 2 to 8 sections with names
    from GENERIC_TAGS, each closed with its own name, the last one a single value, the document
    ending right after its last closing tag; `nested` ones wrap the sections in one outer element.
    Most are announced by a sentence naming every section or only the last one."""
    facts = list(description["facts"])
    rng.shuffle(facts)
    nested = rng.random() < 0.3
    count = rng.randint(2, 8)
    names = _names(rng, count + (1 if nested else 0))
    outer = names.pop(0) if nested else None
    bodies = []
    for _ in range(count - 1):
        fact = rng.choice(facts)
        bodies.append(fact["value"] if rng.random() < 0.4 else fact["text"])
    bodies.append(rng.choice(facts)["value"])
    sep = rng.choice(["\n", " ", ""])
    marked = sep.join(_section(n, b) for n, b in zip(names, bodies, strict=True))
    if outer:
        marked = f"<{outer}>{sep}{marked}{sep}</{outer}>"
    roll = rng.random()
    if roll < 0.4:
        announce = rng.choice(ANNOUNCE_LAST).format(b=names[-1])
    elif roll < 0.7 and count <= 3:
        templates = ANNOUNCE_TWO if count == 2 else ANNOUNCE_THREE
        announce = rng.choice(templates).format(**dict(zip("abc", names, strict=False)))
    else:
        return ("nested" if nested else "sections"), marked
    return ("nested" if nested else "sections"), f"{announce}\n{marked}"


# --- question/answer items ----------------------------------------------------------------------

@dataclass(frozen=True)
class QA:
    """One question with its answer (a short value), the reasoning that reaches it, and the
    candidate options a choices list may show (the answer among them, in their shown order when
    `keep_order`)."""

    task: str
    question: str
    answer: str
    reasoning: str
    options: tuple[str, ...]
    keep_order: bool = False


TEXT_TASKS = ("arithmetic", "comparison", "alphabet", "length", "lookup", "pick")
IMAGE_TASKS = ("color", "shape", "size", "object")

# Words for the alphabet, length and lookup tasks: ordinary nouns, none a word of the evaluated
# families' questions (no left, near, camera, ...) and none a self-reflection word.
WORDS = [
    "apple", "pear", "plum", "grape", "lemon", "melon", "bread", "butter", "cheese", "honey", "river", "stone",
    "garden", "window", "chair", "table", "pencil", "paper", "house", "bridge", "forest", "mountain", "island",
    "ocean", "cloud", "winter", "summer", "autumn", "morning", "evening", "music", "story", "rabbit", "tiger",
    "horse", "mouse", "eagle", "turtle", "dolphin", "kitten", "candle", "basket", "bottle", "button", "ladder",
    "hammer", "needle", "pillow", "blanket", "carpet", "jacket", "pocket", "rocket", "planet", "silver", "garlic",
    "onion", "carrot", "potato", "tomato", "banana", "cherry", "violin", "guitar", "piano", "dragon", "castle",
    "village", "market", "doctor", "farmer", "sailor", "painter", "teacher", "kitchen", "office", "school",
    "engine", "wagon", "ticket", "coffee", "sugar", "pepper", "flower", "lake", "moon", "sun", "tree", "bird",
    "fish", "book", "door", "hat", "cup", "ship", "train", "clock", "key", "ring", "egg", "milk", "rice",
]
LOOKUP_KEYS = list("abcdefghkmpqrstuvwxyz")
COLOR_NAMES = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "brown", "cyan", "pink"]
SHAPES = ["cube", "sphere", "cylinder", "cone"]
SIZES = ["small", "large"]
MIN_VISIBLE = 0.6  # as describe.ts and the questions: at most 40% of a referent hidden


def _numbers_near(answer: int, extra: Iterable[int] = ()) -> list[int]:
    pool = {answer + d for d in (-3, -2, -1, 1, 2, 3, 10)} | set(extra)
    return [n for n in pool if n >= 0 and n != answer]


def _options(answer: str, distractors: Iterable[str], rng: random.Random) -> tuple[str, ...]:
    """The answer and 1 to 3 distractors, in a random order (2 options most often, as most CV-Bench tasks)."""
    others = sorted(set(distractors) - {answer})
    rng.shuffle(others)
    count = min(len(others), rng.choice([1, 1, 2, 3]))
    chosen = [answer, *others[:count]]
    rng.shuffle(chosen)
    return tuple(chosen)


def _arithmetic(rng: random.Random) -> QA:
    op = rng.choice(["plus", "minus", "times"])
    if op == "plus":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        c, sym, verb = a + b, "+", f"What do you get if you add {a} and {b}?"
        reasoning = rng.choice([f"{a} plus {b} is {c}.", f"{a} + {b} = {c}.", f"Adding {b} to {a} gives {c}."])
    elif op == "minus":
        a = rng.randint(1, 30)
        b = rng.randint(0, a)
        c, sym, verb = a - b, "-", f"What do you get if you subtract {b} from {a}?"
        reasoning = rng.choice([f"{a} minus {b} is {c}.", f"{a} - {b} = {c}.", f"Taking {b} away from {a} leaves {c}."])
    else:
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        c, sym, verb = a * b, "*", f"What do you get if you multiply {a} by {b}?"
        reasoning = rng.choice([f"{a} times {b} is {c}.", f"{a} * {b} = {c}.", f"{a} groups of {b} make {c}."])
    question = rng.choice([f"What is {a} {op} {b}?", f"What is {a} {sym} {b}?", f"Compute {a} {op} {b}.", verb])
    distractors = _numbers_near(c, [a + b, a * b, abs(a - b)])
    return QA("arithmetic", question, str(c), reasoning, _options(str(c), map(str, distractors), rng))


def _comparison(rng: random.Random) -> QA:
    numbers = rng.sample(range(0, 100), rng.choice([2, 2, 3]))
    larger = rng.random() < 0.5
    best = max(numbers) if larger else min(numbers)
    rest = [n for n in numbers if n != best]
    shown = [str(n) for n in numbers]
    if len(numbers) == 2:
        x, y = shown
        word = "larger" if larger else "smaller"
        question = rng.choice([f"Which number is {word}, {x} or {y}?", f"Which is {word}: {x} or {y}?",
                               f"Which of {x} and {y} is {'greater' if larger else 'less'}?"])
        reasoning = f"{best} is {word} than {rest[0]}."
    else:
        x, y, z = shown
        word = "largest" if larger else "smallest"
        question = rng.choice([f"Which is the {word} of {x}, {y} and {z}?", f"Which number is the {word}: {x}, {y} or {z}?"])
        reasoning = f"{best} is {'larger' if larger else 'smaller'} than {rest[0]} and {rest[1]}."
    return QA("comparison", question, str(best), reasoning, tuple(shown), keep_order=True)


def alphabet_reason(first: str, second: str) -> str:
    """Why `first` comes before `second` in alphabetical order (they differ, neither a prefix of the other)."""
    i = next(k for k, (p, q) in enumerate(zip(first, second, strict=False)) if p != q)
    letters = f"{first[i]} comes before {second[i]} in the alphabet, so {first} comes before {second}."
    return letters if i == 0 else f"Both words start with {first[:i]}, and {letters}"


def _alphabet(rng: random.Random) -> QA:
    while True:
        x, y = rng.sample(WORDS, 2)
        if not (x.startswith(y) or y.startswith(x)):
            break
    early, late = sorted([x, y])
    if rng.random() < 0.7:
        question = rng.choice([f"Which word comes first in alphabetical order, {x} or {y}?",
                               f"In a dictionary, which word comes first: {x} or {y}?",
                               f"Which of {x} and {y} comes first in the alphabet?"])
        answer = early
    else:
        question = rng.choice([f"Which word comes last in alphabetical order, {x} or {y}?",
                               f"In a dictionary, which word comes second: {x} or {y}?"])
        answer = late
    return QA("alphabet", question, answer, alphabet_reason(early, late), (x, y), keep_order=True)


def _length(rng: random.Random) -> QA:
    word = rng.choice(WORDS)
    n = len(word)
    question = rng.choice([f"What is the length of the word {word}?", f"What is the length of the word {word} in letters?",
                           f"How long is the word {word}, in letters?"])
    spelled = rng.choice([", ".join(word), "-".join(word)])
    reasoning = rng.choice([f"The word {word} is spelled {spelled}, so it has {n} letters.",
                            f"{word} is spelled {spelled}: {n} letters."])
    return QA("length", question, str(n), reasoning, _options(str(n), map(str, _numbers_near(n)), rng))


def _lookup(rng: random.Random) -> QA:
    size = rng.randint(2, 5)
    keys = rng.sample(LOOKUP_KEYS if rng.random() < 0.6 else WORDS, size)
    values = [str(v) for v in rng.sample(range(0, 20), size)] if rng.random() < 0.7 else rng.sample(WORDS, size)
    key = rng.choice(keys)
    value = values[keys.index(key)]
    pairs = [f"{k}: {v}" for k, v in zip(keys, values, strict=True)]
    listed = ", ".join(pairs)
    question = rng.choice([f"In the list {listed}, what is the value of {key}?",
                           f"Here is a list: {listed}. What is the value of {key}?",
                           f"Given the list {listed}, what is {key}?"])
    reasoning = rng.choice([f"In the list, {key} is {value}.", f"The list has {key}: {value}, so {key} is {value}."])
    return QA("lookup", question, value, reasoning, _options(value, values, rng))


# Option-picking questions: the answer can only be one of the listed options, and the options'
# forms are as varied as the benchmarks' (single words, numbers, "color shape" phrases), so what is
# learnt is to copy an option into the answer, whatever the option looks like.
CATEGORIES = {
    "fruit": ["apple", "pear", "plum", "grape", "lemon", "melon", "banana", "cherry"],
    "animal": ["rabbit", "tiger", "horse", "mouse", "eagle", "turtle", "dolphin", "kitten", "bird", "fish"],
    "tool": ["hammer", "needle", "ladder", "pencil", "candle", "basket", "bottle", "button", "key"],
    "musical instrument": ["violin", "guitar", "piano"],
    "food": ["bread", "butter", "cheese", "honey", "garlic", "onion", "carrot", "potato", "tomato", "rice", "milk",
             "egg", "sugar", "pepper", "coffee"],
    "job": ["doctor", "farmer", "sailor", "painter", "teacher"],
    "place": ["garden", "kitchen", "office", "school", "village", "market", "castle", "forest", "island", "ocean",
              "river", "mountain", "lake"],
    "season": ["winter", "summer", "autumn"],
    "color": COLOR_NAMES,
    "shape": SHAPES,
    "size": SIZES,
}
PICK_KINDS = ("category", "odd", "mention", "object", "parity")
SENTENCES = ["I saw the {a} and the {b} today.", "The {a} was bought with the {b}.", "She drew a {a} and a {b}.",
             "My story is about a {a} and a {b}.", "We talked about the {a} and the {b}."]


def _pick(rng: random.Random) -> QA:
    kind = rng.choice(PICK_KINDS)
    n = rng.choice([2, 2, 3, 4])
    if kind in ("category", "odd"):
        cat, other = rng.sample(sorted(CATEGORIES), 2)
        if kind == "category":
            answer = rng.choice(CATEGORIES[cat])
            pool = [w for c, words in CATEGORIES.items() if c != cat for w in words]
            question = rng.choice([f"Which of these is a {cat}?", f"Which one of the choices is a {cat}?",
                                   f"Which word names a {cat}?"])
            reasoning = f"{answer} is a {cat}."
        else:  # the odd one out needs two or more of one category beside it
            cat = rng.choice([c for c, words in CATEGORIES.items() if len(words) >= 3 and c != other])
            answer = rng.choice(CATEGORIES[other])
            pool = CATEGORIES[cat]
            n = max(n, 3)
            question = rng.choice([f"Which of these is not a {cat}?", "Which one does not belong with the others?"])
            reasoning = f"{answer} is not a {cat}, and the others are."
        options = [answer, *rng.sample(pool, n - 1)]
    elif kind == "mention":
        a, b = rng.sample(WORDS, 2)
        answer = rng.choice([a, b])
        sentence = rng.choice(SENTENCES).format(a=a, b=b)
        options = [answer, *rng.sample([w for w in WORDS if w not in (a, b)], n - 1)]
        question = rng.choice([f"Which of these words is in the sentence \"{sentence}\"?",
                               f"Read this: {sentence} Which word from the choices does it use?"])
        reasoning = f"The sentence has the word {answer}."
    elif kind == "object":
        phrases = rng.sample([f"{c} {s}" for c in COLOR_NAMES for s in SHAPES], 12)
        color, shape = phrases[0].split()
        if rng.random() < 0.5:
            others = [p for p in phrases[1:] if not p.startswith(color + " ")]
            question = rng.choice([f"Which of these names a {color} object?", f"Which choice is {color}?"])
        else:
            others = [p for p in phrases[1:] if not p.endswith(" " + shape)]
            question = rng.choice([f"Which of these names a {shape}?", f"Which choice is a {shape}?"])
        answer = phrases[0]
        options = [answer, *others[:n - 1]]
        reasoning = f"The {answer} is {color} and a {shape}."
    else:
        even = rng.random() < 0.5
        pool = list(range(0, 21))
        answer = rng.choice([k for k in pool if (k % 2 == 0) == even])
        rest = rng.sample([k for k in pool if (k % 2 == 0) != even], n - 1)
        word = "even" if even else "odd"
        question = rng.choice([f"Which of these is an {word} number?", f"Which choice is {word}?"])
        reasoning = f"{answer} is {word}."
        answer, options = str(answer), [str(answer), *map(str, rest)]
    rng.shuffle(options)
    return QA("pick", question, answer, reasoning, tuple(options), keep_order=True)


# Reference-matching questions: "Which object has the same color as the red cone, the blue cone or
# the red cube?". The question names a reference object first and then the options, as the
# benchmarks' distance questions do ("closer to the X, the A or the B"), but asks about colour or
# shape, never about place. The answer is always one option copied whole, never the reference, and
# the distractors share the reference's other attribute, so mixing the reference's words into an
# option ("red cone" -> "red cube" when "blue cube" is meant) is wrong.
MATCH_TASKS = ("match", "picture_match")


def _match_question(attribute: str, reference: str, options: list[str], differ: bool, rng: random.Random) -> str:
    named = f", the {options[0]} or the {options[1]}" if len(options) == 2 else ""
    if differ:
        return rng.choice([f"Which object is a different {attribute} from the {reference}{named}?",
                           f"Which object does not have the same {attribute} as the {reference}{named}?"])
    return rng.choice([f"Which object has the same {attribute} as the {reference}{named}?",
                       f"Which object is the same {attribute} as the {reference}{named}?",
                       f"Which object shares its {attribute} with the {reference}{named}?"])


def _match(rng: random.Random) -> QA:
    """A text-only reference-matching question over "color shape" phrases (MATCH_TASKS)."""
    attribute = rng.choice(["color", "shape"])
    differ = rng.random() < 1 / 3
    n = rng.choice([2, 2, 2, 3])
    colors, shapes = rng.sample(COLOR_NAMES, 4), rng.sample(SHAPES, 4)
    ref_color, ref_shape = colors[0], shapes[0]
    reference = f"{ref_color} {ref_shape}"
    # Phrases that share the asked attribute with the reference (and not the other one), and
    # phrases that share only the other attribute: the confusable ones.
    if attribute == "color":
        same = [f"{ref_color} {s}" for s in shapes[1:]]
        other = [f"{c} {ref_shape}" for c in colors[1:]] + [f"{c} {s}" for c in colors[1:] for s in shapes[1:]]
    else:
        same = [f"{c} {ref_shape}" for c in colors[1:]]
        other = [f"{ref_color} {s}" for s in shapes[1:]] + [f"{c} {s}" for c in colors[1:] for s in shapes[1:]]
    if differ:
        same, other = other, same
    # Three of each list: the distractors are then the confusable phrases (the answer too when
    # `differ` swaps the lists).
    answer = rng.choice(same[:3])
    options = [answer, *rng.sample(other[:3], n - 1)]
    rng.shuffle(options)
    value = ref_color if attribute == "color" else f"a {ref_shape}"
    if differ:
        reasoning = f"The {reference} is {value}, and the {answer} is not."
    else:
        reasoning = rng.choice([f"The {reference} is {value}, and so is the {answer}.",
                                f"The {answer} is {value}, like the {reference}."])
    question = _match_question(attribute, reference, options, differ, rng)
    return QA("match", question, answer, reasoning, tuple(options), keep_order=True)


def picture_match_question(record: dict, rng: random.Random) -> QA | None:
    """A reference-matching question about the record's scene, answered from the picture: "Which
    object has the same color as the cone, the red cube or the blue sphere?" names the reference
    by its one unique attribute, so its other attribute must be seen. None when the scene has no
    such reference with another object sharing the attribute that the question does not name."""
    objects = _scene_objects(record)
    if len(objects) < 2 or not all(_in_view(record)):  # every object in view, so "the same" is decidable
        return None
    phrases = Counter(f"{o['color']} {o['shape']}" for o in objects)
    shapes, colors = Counter(o["shape"] for o in objects), Counter(o["color"] for o in objects)
    candidates = []
    for ref in objects:
        for attribute, named_by in (("color", "shape"), ("shape", "color")):
            if (shapes if named_by == "shape" else colors)[ref[named_by]] != 1:
                continue
            matches = [o for o in objects if o is not ref and o[attribute] == ref[attribute]
                       and phrases[f"{o['color']} {o['shape']}"] == 1]
            if matches:
                candidates.append((ref, attribute, named_by, matches))
    if not candidates:
        return None
    ref, attribute, named_by, matches = rng.choice(candidates)
    answer_obj = rng.choice(matches)
    answer = f"{answer_obj['color']} {answer_obj['shape']}"
    reference = ref["shape"] if named_by == "shape" else f"{ref['color']} object"
    wrong = [f"{o['color']} {o['shape']}" for o in objects if o[attribute] != ref[attribute]]
    if not wrong:  # every other object shares the attribute: an object not in the scene
        pool = [c for c in COLOR_NAMES if c != ref["color"]] if attribute == "color" else [s for s in SHAPES if s != ref["shape"]]
        pick = rng.choice(pool)
        wrong = [f"{pick} {answer_obj['shape']}" if attribute == "color" else f"{answer_obj['color']} {pick}"]
    options = [answer, rng.choice(sorted(set(wrong)))]
    rng.shuffle(options)
    value = ref["color"] if attribute == "color" else f"a {ref['shape']}"
    reasoning = rng.choice([f"The {reference} is {value}, and so is the {answer}.",
                            f"The {reference} in the picture is {value}, like the {answer}."])
    question = _match_question(attribute, reference, options, False, rng)
    return QA("picture_match", question, answer, reasoning, tuple(options), keep_order=True)


_TEXT_MAKERS = {"arithmetic": _arithmetic, "comparison": _comparison, "alphabet": _alphabet, "length": _length,
                "lookup": _lookup, "pick": _pick, "match": _match}


def text_question(rng: random.Random, task: str | None = None, pick: float | None = None) -> QA:
    """A text-only question of another domain: `task` when given; else an option-picking question
    with probability `pick` (when given) and otherwise a task of TEXT_TASKS drawn uniformly."""
    if task is None and pick is not None:
        task = "pick" if rng.random() < pick else rng.choice([t for t in TEXT_TASKS if t != "pick"])
    return _TEXT_MAKERS[task or rng.choice(TEXT_TASKS)](rng)


def _scene_objects(record: dict) -> list[dict]:
    return ((record.get("meta") or {}).get("scene") or {}).get("objects") or []


def _in_view(record: dict) -> list[bool]:
    """Per scene object: whether it is mostly visible (MIN_VISIBLE), as a referent must be."""
    layout = (record.get("meta") or {}).get("objects") or []
    return [(layout[i].get("visible", 1) if i < len(layout) else 1) >= MIN_VISIBLE
            for i in range(len(_scene_objects(record)))]


def identity_referents(record: dict) -> dict[str, list[tuple[str, dict]]]:
    """What the scene allows asking, per identity task: (referent phrase, object) pairs whose object
    is the only one of its shape (color task), of its color (shape task), or of its shape, color or
    color and shape (size task), among all objects of the scene, and mostly visible."""
    objects = _scene_objects(record)
    visible = _in_view(record)
    shapes = Counter(o["shape"] for o in objects)
    colors = Counter(o["color"] for o in objects)
    kinds = Counter((o["color"], o["shape"]) for o in objects)
    found: dict[str, list[tuple[str, dict]]] = {t: [] for t in IMAGE_TASKS}
    for o, seen in zip(objects, visible, strict=True):
        if not seen:
            continue
        if shapes[o["shape"]] == 1:
            found["color"].append((o["shape"], o))
            found["size"].append((o["shape"], o))
            found["object"].append((o["shape"], o))
        if colors[o["color"]] == 1:
            found["shape"].append((f"{o['color']} object", o))
            found["size"].append((f"{o['color']} object", o))
            found["object"].append((f"{o['color']} object", o))
        if kinds[(o["color"], o["shape"])] == 1 and shapes[o["shape"]] > 1 and colors[o["color"]] > 1:
            found["size"].append((f"{o['color']} {o['shape']}", o))
    return found


def image_question(record: dict, rng: random.Random) -> QA | None:
    """An identity question about the record's scene, or None when no referent is unique."""
    found = identity_referents(record)
    tasks = [t for t in IMAGE_TASKS if found[t]]
    if not tasks:
        return None
    task = rng.choice(tasks)
    name, obj = rng.choice(found[task])
    if task == "color":
        color = obj["color"]
        question = rng.choice([f"What color is the {name}?", f"What is the color of the {name} in the image?",
                               f"Which color does the {name} have?"])
        reasoning = rng.choice([f"The {name} is {color}.", f"The only {name} in the picture is {color}."])
        return QA("color", question, color, reasoning, _options(color, COLOR_NAMES, rng))
    if task == "shape":
        shape = obj["shape"]
        question = rng.choice([f"What shape is the {name}?", f"What is the shape of the {name}?",
                               f"Which shape does the {name} have?"])
        reasoning = rng.choice([f"The {name} is a {shape}.", f"The only {name} in the picture is a {shape}."])
        return QA("shape", question, shape, reasoning, _options(shape, SHAPES, rng))
    if task == "object":
        # Named by its one unique attribute, answered with the "color shape" phrase the benchmarks'
        # options use for objects; the distractors are the scene's other objects, then unseen pairs.
        phrase = f"{obj['color']} {obj['shape']}"
        if name.endswith(" object"):
            color = name.split()[0]
            question = rng.choice([f"Which object is {color}?", f"Which object in the image is {color}?",
                                   f"What is the {color} object?"])
        else:
            question = rng.choice([f"Which object is the {name}?", f"What is the {name} in the image?",
                                   f"Which object in the picture is a {name}?"])
        reasoning = rng.choice([f"The {name} is the {phrase}.", f"The only {name} in the picture is the {phrase}."])
        objects = _scene_objects(record)
        others = [f"{o['color']} {o['shape']}" for o in objects]
        unseen = [f"{c} {s}" for c in rng.sample(COLOR_NAMES, 3) for s in rng.sample(SHAPES, 1)]
        return QA("object", question, phrase, reasoning, _options(phrase, others if len(set(others)) > 1 else unseen, rng))
    size = obj["size"]
    question = rng.choice([f"What size is the {name}, small or large?", f"Is the {name} small or large?",
                           f"What is the size of the {name}?"])
    reasoning = rng.choice([f"The {name} is {size}.", f"The {name} in the picture is a {size} one."])
    return QA("size", question, size, reasoning, tuple(SIZES), keep_order=True)


def with_choices(qa: QA) -> tuple[str, list[str]]:
    """The question with its options listed the CV-Bench way, and the options."""
    options = list(qa.options)
    lines = "\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
    return f"{qa.question} {CHOICES_LINE}\n{lines}", options


# Conversation intros (no thinking sentence): the prompts' own and paraphrases; for text-only
# questions none says "about the image".
IMAGE_INTROS = [
    R1_INTRO, R1_INTRO, R1_INTRO,
    "A conversation between User and Assistant. The user asks a question about the picture, and the Assistant solves it.",
    "A dialogue between User and Assistant. The user asks about the image, and the Assistant answers.",
]
TEXT_INTROS = [
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.",
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.",
    "A conversation between User and Assistant. The user asks a question and the Assistant answers it.",
    "A dialogue between User and Assistant. The user asks a question, and the Assistant solves it.",
]
THINKING = [
    R1_THINKING, R1_THINKING, R1_THINKING,
    " The assistant first thinks about the reasoning process and then gives the user the answer.",
    " The Assistant first reasons in the mind and then provides the user with the answer.",
]
R1_TAIL = " \nAssistant: Let me solve this step by step.\n<think>"
# How a letter answer is written (L is the letter); evaluation's exact-letter rule takes both.
LETTER_FORMS = ("L", "L", "(L)")
# A document that ends in a letter answer, in any style.
LETTER_ANSWER = re.compile(r"(?:<answer>|Answer: |\nA: |Assistant: )(\(?([A-Z])\)?)(?:</answer>)?$")


RECITALS = ("The choices are {options}.", "The options are {options}.", "The choices: {options}.")
CONCLUSIONS = ("So the answer is {value}.", "The answer is {value}.", "So it is {value}.")


def recited(reasoning: str, options: list[str], value: str, rng: random.Random) -> str:
    """The reasoning of a worked multiple-choice answer: the options, the reasoning, the pick."""
    listed = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " and " + options[-1]
    return f"{rng.choice(RECITALS).format(options=listed)} {reasoning} {rng.choice(CONCLUSIONS).format(value=value)}"


def render_qa(qa: QA, style: str, choices: bool, has_image: bool, rng: random.Random,
              letter: str | None = None, recite: bool = False) -> str:
    """One Q/A document of a style (QA_STYLES). The answer is the option text, or with `letter`
    (a form such as `B` or `(B)`, for a question that lists its choices) the option's letter.
    With `recite` (choices listed) the reasoning restates the options and names its pick."""
    needs_choices = "a letter answer" if letter is not None else "reciting the options" if recite else None
    if needs_choices and not choices:
        raise ValueError(f"{needs_choices} needs the choices listed")
    question, options = with_choices(qa) if choices else (qa.question, [])
    value, reasoning = qa.answer, qa.reasoning
    if recite:
        reasoning = recited(reasoning, options, qa.answer, rng)
    if letter is not None:
        value = letter.replace("L", chr(65 + options.index(qa.answer)))
    if style == "r1":
        intro = rng.choice(IMAGE_INTROS if has_image else TEXT_INTROS) + rng.choice(THINKING)
        think = rng.choice([f" {reasoning} ", f" {reasoning} ", f"\n{reasoning}\n"])
        return f"{intro}\nUser: {question}{R1_TAIL}{think}</think>\n<answer>{value}</answer>"
    if style == "direct":
        intro = rng.choice(IMAGE_INTROS if has_image else TEXT_INTROS)
        return f"{intro}\nUser: {question} \nAssistant: {value}"
    if style == "tagged":
        lead = rng.choice(["", "", "Question: ", "Q: "])
        think = rng.choice([f"<think> {reasoning} </think>", f"<think>{reasoning}</think>", f"<think>\n{reasoning}\n</think>"])
        gap = rng.choice(["\n", "\n", " ", ""])
        return f"{lead}{question}\n{think}{gap}<answer>{value}</answer>"
    if style == "plain":
        if rng.random() < 0.5:
            return f"Question: {question}\nAnswer: {value}"
        return f"Q: {question}\nA: {value}"
    raise ValueError(f"unknown Q/A style {style!r}; choose one of {QA_STYLES}")


# --- the scanner for evaluated-family questions ------------------------------------------------------

# Words of the four evaluated families' questions (Count; Relation left/right/above/below; Depth:
# closer to the camera; Distance: closer to an object), in any wording.
FAMILY_PATTERN = re.compile(
    r"how\s+many|\bcount\w*|\bnumber\s+of|\bamount\s+of|\bquantity|\btotal\b"
    r"|\b(?:left|right|above|below|under|underneath|beneath|over|on\s+top|top|bottom|higher|lower|upper|beside"
    r"|next\s+to|between|where|locat\w*|position\w*|relative|side)\b"
    r"|\b(?:clos\w*|near\w*|far|farther|farthest|further|furthest|distan\w*|depth|deep\w*|camera|viewer|front"
    r"|behind|foreground|background|apart|away|3d)\b",
    re.IGNORECASE,
)
# A sentence ending in "?", with the lettered choices that may follow it.
_QUESTION_SENTENCE = re.compile(r"[^.?!\n]*\?(?: Select from the following choices\.(?:\n\([A-Z]\) [^\n]*)+)?")
# An imperative asking for something ("Count the cubes.", "Name the object ...").
_REQUEST_SENTENCE = re.compile(
    r"(?<![^\s>])(?:Count|Name|Find|Tell|Say|Determine|Identify|List|Compute|Give|State|Choose|Pick|Select)\b[^.?!\n]*[.!]")
_FRAMED_QUESTION = re.compile(
    r"(?:\bUser:|\bQuestion:|(?<![\w(])Q:)(.*?)(?=\bAssistant:|\bAnswer:|(?<![\w(])A:|<think>|\Z)", re.DOTALL)


def question_parts(text: str) -> list[str]:
    """Every question in a text: each sentence ending in '?' (with the lettered choices after it),
    each request sentence ("Count the cubes.", "Name the ..."), and the question part (choices
    included) of "User: ... Assistant:", "Question: ... Answer:" and "Q: ... A:" framings."""
    parts = [m.group(0).strip() for m in _QUESTION_SENTENCE.finditer(text)]
    parts += [m.group(0).strip() for m in _REQUEST_SENTENCE.finditer(text)]
    parts += [m.group(1).strip() for m in _FRAMED_QUESTION.finditer(text)]
    return [p for p in parts if p]


def evaluated_family_questions(text: str) -> list[str]:
    """The questions of a text that belong to an evaluated family (counting, left/right/above/
    below relations, depth or closeness to the camera, distance or closeness to an object), by
    their words. Statements are not questions and are never reported."""
    return [q for q in question_parts(text) if FAMILY_PATTERN.search(q)]


# --- the corpus ---------------------------------------------------------------------------------------

def _allocate(rng: random.Random, n: int, shares: dict[str, float]) -> list[str]:
    """n labels in the given shares (largest remainder), shuffled."""
    total = sum(shares.values())
    if n <= 0 or total <= 0:
        return []
    exact = {k: n * v / total for k, v in shares.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    rest = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:rest]:
        counts[k] += 1
    labels = [k for k in shares for _ in range(counts[k])]
    rng.shuffle(labels)
    return labels


def _read_records(root: Path, split: str, max_items: int) -> list[dict]:
    records = []
    with (root / f"{split}.jsonl").open() as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            description_of(record)
            records.append(record)
            if max_items and len(records) >= max_items:
                break
    return records


def _check_document(text: str) -> None:
    hits = evaluated_family_questions(text)
    if hits:
        raise RuntimeError(f"a pre-training document asks an evaluated-family question: {hits[0]!r}")
    if REFLECTION_PATTERN.search(text):
        raise RuntimeError(f"a pre-training document holds a self-reflection word: {text!r}")


def pretrain_examples(dataset_dir: str | Path, split: str = "train", seed: int = 0, max_items: int = 0,
                      mixture: Mixture = Mixture()) -> list[dict]:
    """The pre-training documents of a described split, in a random (seeded) order.

    Each is {"kind", "style", "image", "prefix", "target", "task"} (task: the Q/A task, None for
    descriptions and markup); the loss covers the target only.
    `max_items` limits the scenes read (0: all). Every scene gives one image document (kinds by
    the image kinds' relative shares), and text-only documents (image None, prefix '') are added
    so that they make up `mixture.text_qa` of all; with text_qa 1 every scene gives one text-only
    document instead. A scene without a unique referent takes no identity question: its image
    document is swapped with one that can, or is a description when none is left.
    """
    root = Path(dataset_dir)
    rng = random.Random(seed)
    records = _read_records(root, split, max_items)
    n = len(records)
    image_shares = {k: getattr(mixture, k) for k in ("description", "markup", "image_qa", "grounding")}
    if mixture.text_qa >= 1 - 1e-9:
        kinds, text_count = [], n
    else:
        kinds = _allocate(rng, n, image_shares)
        text_count = round(n * mixture.text_qa / (1 - mixture.text_qa))
    able = [any(identity_referents(r).values()) for r in records]
    for i, kind in enumerate(kinds):
        if kind == "image_qa" and not able[i]:
            spare = [j for j in range(n) if able[j] and kinds[j] != "image_qa"]
            if spare:
                j = rng.choice(spare)
                kinds[i], kinds[j] = kinds[j], kinds[i]
            else:
                kinds[i] = "description"
    styles = mixture.styles()
    image_qa_count = kinds.count("image_qa")
    image_styles = iter(_allocate(rng, image_qa_count, styles))
    image_choices = iter(_allocate(rng, image_qa_count, {"yes": mixture.choices, "no": 1 - mixture.choices}))

    # Letter answers are drawn from their own generator, so a corpus without them (letter 0) is
    # the same document for document as before the share existed.
    letter_rng = random.Random(seed + 7919)
    shuffle_rng = random.Random(seed + 104729)  # likewise for shuffled descriptions
    recite_rng = random.Random(seed + 32452843)  # and for recited options
    grounding_rng = random.Random(seed + 15485863)  # and for grounding facts
    match_rng = random.Random(seed + 49979687)  # and for reference-matching questions

    def matching() -> bool:
        return mixture.match > 0 and match_rng.random() < mixture.match

    def letter_form(listed: bool) -> str | None:
        if not listed or mixture.letter <= 0 or letter_rng.random() >= mixture.letter:
            return None
        return letter_rng.choice(LETTER_FORMS)

    def recites(listed: bool, style: str) -> bool:
        return listed and style in ("tagged", "r1") and mixture.recite > 0 and recite_rng.random() < mixture.recite

    examples = []
    for record, kind in zip(records, kinds, strict=False):
        image = str(root / record["images"][0])
        description = description_of(record)
        pieces = None
        if kind == "grounding":
            step = grounding_rng.random() if mixture.one_object + mixture.relations > 0 else 1.0
            first = mixture.first_wording > 0 and grounding_rng.random() < mixture.first_wording
            single = mixture.single_fact > 0 and grounding_rng.random() < mixture.single_fact
            stated = grounding.document(record, grounding_rng, per_document=1 if single else 4,
                                        one_object=step < mixture.one_object,
                                        relations=mixture.one_object <= step < mixture.one_object + mixture.relations,
                                        first_wording=first)
            kind = "grounding" if stated else "description"  # a scene with nothing clear to state
        if kind == "grounding":
            style, pieces = "facts", grounding.segments(stated)
            text = "".join(piece for piece, _ in pieces)
        elif kind == "description":
            style, text = make_document(description, rng)
            if style == "prose" and mixture.shuffled > 0 and shuffle_rng.random() < mixture.shuffled:
                facts = [f["text"] for f in description["facts"]]
                shuffle_rng.shuffle(facts)
                style, text = "shuffled", " ".join(facts)
        elif kind == "markup":
            style, text = make_markup_document(description, rng)
        else:
            qa = (picture_match_question(record, match_rng) if matching() else None) or image_question(record, rng)
            style = next(image_styles)
            listed = next(image_choices) == "yes" or qa.task in MATCH_TASKS
            text = render_qa(qa, style, listed, True, rng, letter_form(listed), recites(listed, style))
        task = qa.task if kind == "image_qa" else None
        mark = IMAGE_MARK if rng.random() < 0.5 else ""
        example = {"kind": kind, "style": style, "image": image, "prefix": mark, "target": text, "task": task}
        if pieces:
            example["segments"] = pieces
        examples.append(example)
    text_styles = _allocate(rng, text_count, styles)
    text_choices = _allocate(rng, text_count, {"yes": mixture.choices, "no": 1 - mixture.choices})
    for style, choice in zip(text_styles, text_choices, strict=True):
        qa = text_question(match_rng, "match") if matching() else text_question(rng, pick=mixture.pick)
        listed = choice == "yes" or qa.task in ("pick", *MATCH_TASKS)
        text = render_qa(qa, style, listed, False, rng, letter_form(listed), recites(listed, style))
        examples.append({"kind": "text_qa", "style": style, "image": None, "prefix": "", "target": text,
                         "task": qa.task})
    for example in examples:
        _check_document(example["target"])
    rng.shuffle(examples)
    return examples


def mixture_report(examples: list[dict]) -> dict:
    """Counts and shares of a corpus: per kind (of all documents), per Q/A style and with choices
    (of the Q/A documents), per style of the description and markup documents (of their kind)."""
    total = len(examples)

    def table(counter: Counter, whole: int) -> dict:
        return {k: {"count": v, "share": round(v / whole, 4) if whole else 0.0} for k, v in sorted(counter.items())}

    kinds = Counter({k: 0 for k in KINDS})  # every kind listed, those the mixture leaves out with 0
    kinds.update(e["kind"] for e in examples)
    qa = [e for e in examples if e["kind"] in ("text_qa", "image_qa")]
    report = {
        "documents": total,
        "with_image": sum(e["image"] is not None for e in examples),
        "kinds": table(kinds, total),
        "qa_styles": table(Counter(e["style"] for e in qa), len(qa)),
        "qa_choices": table(Counter("choices" if CHOICES_LINE in e["target"] else "open" for e in qa), len(qa)),
        "qa_tasks": table(Counter(e.get("task") for e in qa), len(qa)),
    }
    listed = [e for e in qa if CHOICES_LINE in e["target"]]
    report["choices_answer"] = table(
        Counter("letter" if LETTER_ANSWER.search(e["target"]) else "text" for e in listed), len(listed))
    for kind in ("description", "markup"):
        report[f"{kind}_styles"] = table(Counter(e["style"] for e in examples if e["kind"] == kind), kinds[kind])
    return report


def prompt_texts(dataset_dir: str | Path, split: str = "train", max_items: int = 0) -> Iterator[str]:
    """The r1 and direct prompts (without the image) of a question split, for the tokenizer."""
    items, _ = read_split(dataset_dir, split, max_items)
    for item in items:
        for template in ("r1", "direct"):
            yield render_prompt(template, item.prompt, has_image=False)
        yield item.answer_text


def tokenizer_text(text: str) -> str:
    """How a text is shown to the BPE trainer: `<` before a letter becomes `</`, `>` before a letter
    `>>`, and a space before a letter a newline, so no learned merge joins a word with a bracket or
    with the space before it (the Qwen2 split attaches one leading non-letter to a word)."""
    text = re.sub(r"<(?=[^\W\d_])", "</", text)
    text = re.sub(r">(?=[^\W\d_])", ">>", text)
    return re.sub(r" (?=[^\W\d_])", "\n", text)


def tokenizer_corpus(documents: Iterable[str], prompts: Iterable[str]) -> Iterator[str]:
    for texts in (documents, prompts):
        for text in texts:
            yield tokenizer_text(text)
