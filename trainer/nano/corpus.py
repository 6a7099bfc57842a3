"""Text of the embedded `nano` model's base pre-training, and its tokenizer corpus.

Pre-training documents are made from the scene descriptions `npm run synth -- --describe` stores
in each record's `meta.description` (src/benchmarks/spatial_synth/describe.ts): statements about
the picture, never questions, never answers to anything, never the think/answer tags. What the
documents look like, and why (docs/embedded-model.md lists the same choices):

- `prose` (share 1 - markup_share): the description as one paragraph.
- `markup` (share markup_share): the facts split into sections marked up like simple web/XML
  text, `<name>...</name>`, with section names drawn from GENERIC_TAGS (ordinary words; never
  "think" or "answer"). Most documents first announce their sections in a sentence ("The note
  first describes the objects and then provides the reader with the summary."), so a model that
  reads them can learn to name a section after a word it has read (copying from context). The
  last section is short: one value (a number, a direction word or an object name), and the
  document ends right after its closing tag. Real base models see such markup on the web; this
  is our stand-in. No section is ever called think or answer, and none holds a reply to a question.
- `sections` (share sections_share, 0 unless asked; the experiments of docs/embedded-model.md that
  try to teach the copy): 2 to 8 sections whose names come from a wide pool of words (or the
  whole tokenizer vocabulary), most announced by a sentence naming the last or every section,
  every section closed with its own name. Never think or answer, never a question.
- A quarter of the documents carry one general English remark (REMARKS), some of which use
  "think" and "answer" as ordinary words; none holds a self-reflection word.
- Half of the documents put the literal text `<image>` after the image, as the paper's prompt does
  (image-text web corpora mark image positions the same way).

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
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..data import read_split
from ..prompts import render_prompt

# Section names: plain words, none of them think or answer (no hidden format supervision).
GENERIC_TAGS = [
    "objects", "scene", "summary", "list", "count", "colors", "shapes", "layout", "notes", "details", "facts",
    "overview", "result", "final", "caption", "label", "order", "position", "depth", "distance", "relations",
    "picture", "camera", "record", "note", "data", "output", "text", "title", "header", "body", "main", "info",
    "item", "group", "table", "section", "part", "value", "total", "name", "key", "entry", "field", "size",
    "color", "shape", "place", "view", "report", "comment", "remark", "first", "second", "last", "number",
    "word", "line", "block", "box", "frame", "fact", "point", "detail", "left", "right", "near", "far",
]
FORBIDDEN_TAGS = re.compile(r"^(think|answer)", re.IGNORECASE)
assert not any(FORBIDDEN_TAGS.match(t) for t in GENERIC_TAGS)

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
IMAGE_MARK = "<image>"

# Sentences that name only the last section (the first one is opened in the text itself); the
# sentences above name every section. "The assistant first thinks about ... and then provides the
# user with the answer." has this shape; none of these is that sentence.
ANNOUNCE_LAST = [
    "The note first describes the picture and then provides the reader with the {b}.",
    "The writer first looks at the scene and then gives the reader the {b}.",
    "This text first goes over what is seen and then tells the reader the {b}.",
    "The page first lists what the camera sees and then states the {b}.",
    "The record first sets out the facts, and the {b} comes at the end.",
    "The author first writes about the objects and then provides us with the {b}.",
    "First the picture is described, then the {b} is given.",
]
# Lines that may stand between an announcement and the sections, as the question and "Let me ..."
# lines of a prompt do in the r1 template (none is a question or a reply to one).
INTERLUDES = [
    "Here it is.", "See below.", "The picture is small.", "It was made by a program.", "Read on.",
    "The text follows.", "This is one of many such notes.",
]

# General English remarks, one added to some documents (a stand-in for the everyday text a real
# base model reads). Some use "think" and "answer" as ordinary words, never as tags and never as a
# reply to a question: without them these two tokens would never be trained at all. None holds a
# self-reflection word (rewards.REFLECTION_PATTERN), so reflection in GRPO rollouts is not copied
# from pre-training.
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


def _tag(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = rng.choice(GENERIC_TAGS)
        if name not in taken:
            taken.add(name)
            return name


def _section(name: str, body: str) -> str:
    return f"<{name}>{body}</{name}>"


def make_document(description: dict, rng: random.Random, markup_share: float = 0.5) -> tuple[str, str]:
    """(kind, text) of one pre-training document for a scene description."""
    facts = description["facts"]
    remark = rng.choice(REMARKS) if rng.random() < 0.25 else ""
    if rng.random() < 1 - markup_share:
        text = description["text"]
        if remark:
            text = f"{remark} {text}" if rng.random() < 0.5 else f"{text} {remark}"
        return "prose", text
    # Markup: the object list and some facts as prose sections, one short value section last.
    taken: set[str] = set()
    last = rng.choice(facts)
    body = [f["text"] for f in facts] + ([remark] if remark else [])
    three = len(body) >= 4 and rng.random() < 0.3
    if three:
        cut = rng.randrange(1, len(body))
        sections = [(_tag(rng, taken), " ".join(body[:cut])), (_tag(rng, taken), " ".join(body[cut:]))]
    else:
        sections = [(_tag(rng, taken), " ".join(body))]
    sections.append((_tag(rng, taken), last["value"]))
    names = [n for n, _ in sections]
    sep = rng.choice(["\n", " ", ""])
    marked = sep.join(_section(n, b) for n, b in sections)
    if rng.random() < 0.8:
        template = rng.choice(ANNOUNCE_THREE if three else ANNOUNCE_TWO)
        announce = template.format(**dict(zip("abc", names, strict=False)))
        return "markup", f"{announce}\n{marked}"
    return "markup", marked


def _words(texts: Iterable[str]) -> set[str]:
    return {w for text in texts for w in re.findall(r"[a-z]{3,}", text.lower()) if not FORBIDDEN_TAGS.match(w)}


COMMON_WORDS = _words([*GENERIC_TAGS, *REMARKS, *ANNOUNCE_TWO, *ANNOUNCE_THREE, *ANNOUNCE_LAST, *INTERLUDES])


def _section_names(description: dict) -> list[str]:
    """Names a sections document may use: any word of the corpus's fixed sentences (the generic
    tags, remarks, announcements) or of its own description. With a pool this wide, guessing a
    name from the ones usually seen does not pay, so closing a section is learned as a copy of the
    name it was opened with, a copy that also works for a word never seen as a name."""
    return sorted(COMMON_WORDS | _words([description["text"]]))


def vocabulary_names(tokenizer_file: str | Path) -> list[str]:
    """Every letters-only entry of a tokenizer's vocabulary (words and word pieces) except think,
    answer and their forms: a name pool so wide that a section can only be closed by copying, for
    any token, the name it was opened with."""
    vocab = json.loads(Path(tokenizer_file).read_text())["model"]["vocab"]
    return sorted(t for t in vocab if t.isascii() and t.isalpha() and len(t) >= 2 and not FORBIDDEN_TAGS.match(t))


def make_sections_document(description: dict, rng: random.Random, names_pool: list[str] | None = None) -> str:
    """A document of sections with names drawn from a large pool, the last one a single value from
    the facts before it, the document ending right after its closing tag. Half of them hold 2 to 4
    sections with the facts spread over them; the other half are records of 4 to 8 short sections
    (one value or one fact each), which give many closing tags per token to learn the copy from.
    Most documents announce the sections first (every name, or only the last one), some with a
    line between the announcement and the sections."""
    facts = list(description["facts"])
    rng.shuffle(facts)
    record = rng.random() < 0.5
    count = rng.randint(4, 8) if record else rng.randint(2, min(4, len(facts) + 1))
    pool = names_pool or _section_names(description)
    count = min(count, len(pool))
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(pool)
        if name not in names:
            names.append(name)
    if record:
        used = [rng.choice(facts) for _ in range(count - 1)]
        bodies = [f["value"] if rng.random() < 0.6 else f["text"] for f in used]
    else:
        used = facts[:rng.randint(count - 1, len(facts))]
        cuts = sorted(rng.sample(range(1, len(used)), count - 2)) if count > 2 else []
        bounds = [0, *cuts, len(used)]
        bodies = [" ".join(f["text"] for f in used[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    bodies.append(rng.choice(used)["value"])
    sep = rng.choice(["\n", " ", ""])
    marked = sep.join(_section(n, b) for n, b in zip(names, bodies, strict=True))
    roll = rng.random()
    if roll < 0.45 or (roll < 0.8 and count > 4):
        announce = rng.choice(ANNOUNCE_LAST).format(b=names[-1])
    elif roll < 0.8:
        templates = ANNOUNCE_TWO if count == 2 else ANNOUNCE_THREE if count == 3 else ["Sections: {a}, {b}, {c}, {d}."]
        announce = rng.choice(templates).format(**dict(zip("abcd", names, strict=False)))
    else:
        return marked
    if rng.random() < 0.5:
        announce += "\n" + rng.choice(INTERLUDES + [f["text"] for f in facts[:2]])
    return f"{announce}\n{marked}"


def pretrain_examples(dataset_dir: str | Path, split: str = "train", seed: int = 0, max_items: int = 0,
                      markup_share: float = 0.5, sections_share: float = 0.0,
                      names_pool: list[str] | None = None) -> list[dict]:
    """One example per scene: {"image", "prefix", "target"}; the loss covers the target only."""
    root = Path(dataset_dir)
    rng = random.Random(seed)
    examples = []
    with (root / f"{split}.jsonl").open() as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            description = description_of(record)
            if sections_share and rng.random() < sections_share:
                text = make_sections_document(description, rng, names_pool)
            else:
                _, text = make_document(description, rng, markup_share)
            mark = IMAGE_MARK if rng.random() < 0.5 else ""
            examples.append({"image": str(root / record["images"][0]), "prefix": mark, "target": text})
            if max_items and len(examples) >= max_items:
                break
    return examples


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
