"""The nano pre-training corpus mixture (trainer/nano/corpus.py) on real described spatial-synth
scenes: its shares, the r1 documents' format, the answers of every Q/A document (recomputed here
from the question text and the scene), and that no document asks an evaluated-family question."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from trainer.nano import corpus
from trainer.nano.corpus import CHOICES_LINE, GENERIC_TAGS, Mixture, evaluated_family_questions, pretrain_examples
from trainer.rewards import REFLECTION_PATTERN, extract_answer_text, format_reward

ROOT = Path(__file__).resolve().parents[2]
TSX = ROOT / "node_modules" / ".bin" / "tsx"
SCENES = 1500  # about 2000 documents per seed with the default mixture


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    """Described spatial-synth scenes, as `npm run synth -- --describe` writes them (small images)."""
    if not TSX.exists() or shutil.which("node") is None:
        pytest.skip("needs node and `npm install` (node_modules/.bin/tsx) to write spatial-synth scenes")
    out = tmp_path_factory.mktemp("corpus-synth")
    subprocess.run([str(TSX), "src/cli/synth.ts", "--out", str(out), "--train", str(SCENES), "--val", "0", "--test", "0",
                    "--seed", "2", "--describe", "--size", "64"], cwd=ROOT, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def records(synth_dir) -> dict[str, dict]:
    """Records by image path, as pretrain_examples names the images."""
    lines = (synth_dir / "train.jsonl").read_text().splitlines()
    return {str(synth_dir / r["images"][0]): r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def examples(synth_dir) -> list[dict]:
    return pretrain_examples(synth_dir, seed=0)


# --- reading Q/A documents back -------------------------------------------------------------------

R1 = re.compile(r"([^\n]*)\nUser: (.*) \nAssistant: Let me solve this step by step\.\n<think>(.*)", re.DOTALL)
DIRECT = re.compile(r"([^\n]*)\nUser: (.*) \nAssistant: ([^\n]*)", re.DOTALL)
TAGGED = re.compile(r"(?:Question: |Q: )?(.*?)\n<think>(.*?)</think>\s*<answer>([^\n]*)</answer>", re.DOTALL)
PLAIN = re.compile(r"(?:Question: (.*)\nAnswer: |Q: (.*)\nA: )([^\n]*)", re.DOTALL)


def read_qa(example: dict) -> tuple[str, list[str] | None, str, str | None]:
    """(question stem, options or None, answer, reasoning or None) of a Q/A document."""
    text, style = example["target"], example["style"]
    reasoning = None
    if style == "r1":
        m = R1.fullmatch(text)
        assert m, text
        intro, question, completion = m.groups()
        assert format_reward(completion) == 1.0, text
        answer = extract_answer_text(completion)
        reasoning = re.search(r"^(.*)</think>", completion, re.DOTALL).group(1).strip()
        assert intro.startswith(("A conversation between User and Assistant.", "A dialogue between User and Assistant."))
        assert intro.endswith("answer.")
        if example["image"] is None:
            assert "image" not in intro and "picture" not in intro, intro
    elif style == "direct":
        m = DIRECT.fullmatch(text)
        assert m, text
        intro, question, answer = m.groups()
        if example["image"] is None:
            assert "image" not in intro and "picture" not in intro, intro
    elif style == "tagged":
        m = TAGGED.fullmatch(text)
        assert m, text
        question, reasoning, answer = m.groups()
        reasoning = reasoning.strip()
    else:
        assert style == "plain"
        m = PLAIN.fullmatch(text)
        assert m, text
        question, answer = m.group(1) or m.group(2), m.group(3)
    options = None
    if CHOICES_LINE in question:
        question, listed = question.split(f" {CHOICES_LINE}\n")
        lines = listed.split("\n")
        assert 2 <= len(lines) <= 4
        options = []
        for i, line in enumerate(lines):
            option = re.fullmatch(rf"\({chr(65 + i)}\) (.+)", line)
            assert option, listed
            options.append(option.group(1))
        assert len(set(options)) == len(options) and answer in options  # the option text, not the letter
    return question, options, answer, reasoning


def _lookup(listed: str, key: str) -> str:
    pairs = dict(p.split(": ") for p in listed.split(", "))
    assert len(pairs) == len(listed.split(", "))
    return pairs[key]


def _compare(word: str, *numbers: str) -> str:
    values = [int(n) for n in numbers]
    assert len(set(values)) == len(values)
    return str(max(values) if word in ("larger", "largest", "greater") else min(values))


ARITHMETIC = {"plus": lambda a, b: a + b, "+": lambda a, b: a + b, "minus": lambda a, b: a - b, "-": lambda a, b: a - b,
              "times": lambda a, b: a * b, "*": lambda a, b: a * b}
TEXT_SOLVERS = [
    (r"What is (\d+) (plus|minus|times|\+|-|\*) (\d+)\?|Compute (\d+) (plus|minus|times) (\d+)\.",
     lambda g: str(ARITHMETIC[g[1] or g[4]](int(g[0] or g[3]), int(g[2] or g[5])))),
    (r"What do you get if you add (\d+) and (\d+)\?", lambda g: str(int(g[0]) + int(g[1]))),
    (r"What do you get if you subtract (\d+) from (\d+)\?", lambda g: str(int(g[1]) - int(g[0]))),
    (r"What do you get if you multiply (\d+) by (\d+)\?", lambda g: str(int(g[0]) * int(g[1]))),
    (r"Which number is (larger|smaller), (\d+) or (\d+)\?|Which is (larger|smaller): (\d+) or (\d+)\?",
     lambda g: _compare(*(g[:3] if g[0] else g[3:]))),
    (r"Which of (\d+) and (\d+) is (greater|less)\?", lambda g: _compare(g[2], g[0], g[1])),
    (r"Which is the (largest|smallest) of (\d+), (\d+) and (\d+)\?|Which number is the (largest|smallest): (\d+), (\d+) or (\d+)\?",
     lambda g: _compare(*(g[:4] if g[0] else g[4:]))),
    (r"Which word comes (first|last) in alphabetical order, (\w+) or (\w+)\?",
     lambda g: sorted(g[1:])[0 if g[0] == "first" else 1]),
    (r"In a dictionary, which word comes (first|second): (\w+) or (\w+)\?",
     lambda g: sorted(g[1:])[0 if g[0] == "first" else 1]),
    (r"Which of (\w+) and (\w+) comes first in the alphabet\?", lambda g: sorted(g)[0]),
    (r"What is the length of the word (\w+)(?: in letters)?\?|How long is the word (\w+), in letters\?",
     lambda g: str(len(g[0] or g[1]))),
    (r"In the list (.+), what is the value of (\w+)\?|Here is a list: (.+)\. What is the value of (\w+)\?"
     r"|Given the list (.+), what is (\w+)\?", lambda g: _lookup(*[x for x in g if x])),
]
IMAGE_SOLVERS = [
    (r"What color is the (.+)\?|What is the color of the (.+) in the image\?|Which color does the (.+) have\?", "color"),
    (r"What shape is the (.+)\?|What is the shape of the (.+)\?|Which shape does the (.+) have\?", "shape"),
    (r"What size is the (.+), small or large\?|Is the (.+) small or large\?|What is the size of the (.+)\?", "size"),
    (r"Which object is (?:the )?(.+)\?|Which object in the image is (.+)\?|What is the (\w+ object)\?"
     r"|What is the (.+) in the image\?|Which object in the picture is a (.+)\?", "object"),
]


def solve_text(question: str) -> str:
    for pattern, solve in TEXT_SOLVERS:
        m = re.fullmatch(pattern, question)
        if m:
            return solve(m.groups())
    raise AssertionError(f"not a known text question: {question!r}")


def solve_image(question: str, record: dict) -> tuple[str, str]:
    """(task, answer) of an identity question, its referent resolved among all the scene's objects."""
    for pattern, attribute in IMAGE_SOLVERS:
        m = re.fullmatch(pattern, question)
        if not m:
            continue
        phrase = next(g for g in m.groups() if g)
        words = phrase.split()
        objects = record["meta"]["scene"]["objects"]
        if attribute == "object":  # "red" / "red object": the one object of that color; "cone": of that shape
            key = "color" if words[0] in corpus.COLOR_NAMES else "shape"
            hits = [i for i, o in enumerate(objects) if o[key] == words[0]]
            assert len(hits) == 1, f"{question!r}: referent not unique in the scene"
            return attribute, f"{objects[hits[0]]['color']} {objects[hits[0]]['shape']}"
        if words[-1] == "object":  # "red object": the one object of that color
            hits = [i for i, o in enumerate(objects) if o["color"] == words[0]]
            assert len(words) == 2 and attribute != "color"
        elif len(words) == 1:  # "cone": the one object of that shape
            hits = [i for i, o in enumerate(objects) if o["shape"] == words[0]]
            assert attribute != "shape"
        else:  # "red cone"
            hits = [i for i, o in enumerate(objects) if (o["color"], o["shape"]) == tuple(words)]
            assert attribute == "size"
        assert len(hits) == 1, f"{question!r}: referent not unique in the scene"
        assert record["meta"]["objects"][hits[0]]["visible"] >= corpus.MIN_VISIBLE
        return attribute, objects[hits[0]][attribute]
    raise AssertionError(f"not a known identity question: {question!r}")


# --- the scanner ---------------------------------------------------------------------------------

REAL_QUESTIONS = [  # src/benchmarks/spatial_synth/questions.ts, one or two per family
    "How many cyan objects are in the image?",
    "How many red cubes are in the image?",
    "Considering the relative positions of the two objects in the image, where is the red cube located with respect to the blue sphere?",
    "Which object is closer to the camera taking this photo, the gray cone or the large red sphere?",
    "Which object is closer to the red sphere (in 3D), the pink cylinder or the gray cone?",
]
OTHER_WORDINGS = [
    "Count the cubes.", "What is the number of spheres?", "Is the cube left of the sphere?",
    "Which object is on the right?", "Is the cone above the cube?", "What lies below the sphere?",
    "Which is nearer to the viewer, the cube or the cone?", "Which object is farther away?",
    "Which object is nearest to the camera?", "What is the distance between the cube and the cone?",
    "Which object is far from the red cube?", "What is the depth order?",
]


def test_the_scanner_catches_each_family_in_real_and_other_wordings():
    for question in REAL_QUESTIONS + OTHER_WORDINGS:
        assert evaluated_family_questions(question) == [question], question
        # Inside a longer text, framed with choices, or in markup.
        text = f"The sky is light. {question} Select from the following choices.\n(A) 1\n(B) 2"
        assert any(question in hit for hit in evaluated_family_questions(text))
        assert evaluated_family_questions(f"<q>{question}</q><a>1</a>")
    # Framed questions without a question mark, and questions whose family shows in the options only.
    assert evaluated_family_questions("User: Count the red cubes. \nAssistant: 3")
    assert evaluated_family_questions("Q: Name the object beside the cube.\nA: cone")
    assert evaluated_family_questions("Question: Where is it? Select from the following choices.\n(A) left\n(B) right\nAnswer: left")
    assert evaluated_family_questions("Which one? Select from the following choices.\n(A) left\n(B) right")
    assert evaluated_family_questions("User: Which one? Select from the following choices.\n(A) left\n(B) right \nAssistant: left")


def test_the_scanner_lets_statements_and_other_questions_pass():
    statements = "There are 3 cones. The red cube is on the left of the blue sphere. The gray cone is closer to the camera than the red cube."
    assert evaluated_family_questions(statements) == []
    assert evaluated_family_questions("<count>3</count><think>The cube is below the cone.</think><answer>below</answer>") == []
    for question in ["What is 7 plus 5?", "Which number is larger, 7 or 12?", "What color is the cone?",
                     "In the list a: 3, b: 7, c: 1, what is the value of b?", "What is the length of the word garden?"]:
        assert evaluated_family_questions(f"Q: {question}\nA: 1") == []


def test_no_document_asks_an_evaluated_family_question_or_reflects(synth_dir):
    documents = 0
    for seed in range(3):
        for example in pretrain_examples(synth_dir, seed=seed):
            documents += 1
            assert evaluated_family_questions(example["target"]) == [], example["target"]
            assert not REFLECTION_PATTERN.search(example["target"]), example["target"]
    assert documents > 5000


# --- the mixture ---------------------------------------------------------------------------------

def test_measured_shares_follow_the_mixture(examples):
    mixture = Mixture()
    assert len(examples) == SCENES + round(SCENES * mixture.text_qa / (1 - mixture.text_qa))
    report = corpus.mixture_report(examples)
    assert report["documents"] == len(examples) and report["with_image"] == SCENES
    for kind in corpus.KINDS:
        assert report["kinds"][kind]["share"] == pytest.approx(getattr(mixture, kind), abs=0.01), kind
    for style, share in mixture.styles().items():
        assert report["qa_styles"][style]["share"] == pytest.approx(share, abs=0.01), style
    # Option-picking questions always list their choices; the other Q/A documents in the share `choices`.
    text_qa = report["kinds"]["text_qa"]["count"]
    picks = report["qa_tasks"]["pick"]["count"]
    assert picks / text_qa == pytest.approx(mixture.pick, abs=0.03)
    qa = sum(v["count"] for v in report["qa_tasks"].values())
    expected = (picks + mixture.choices * (qa - picks)) / qa
    assert report["qa_choices"]["choices"]["share"] == pytest.approx(expected, abs=0.015)
    assert report["description_styles"]["prose"]["share"] == pytest.approx(0.5, abs=0.06)
    # Image documents: half with the literal <image> mark; text-only ones without image or mark.
    images = [e for e in examples if e["image"] is not None]
    assert all(e["prefix"] in ("", "<image>") and Path(e["image"]).exists() for e in images)
    assert sum(e["prefix"] == "<image>" for e in images) / len(images) == pytest.approx(0.5, abs=0.05)
    assert all(e["kind"] == "text_qa" and e["prefix"] == "" for e in examples if e["image"] is None)
    assert {e["kind"] for e in images} == {"description", "markup", "image_qa"}
    # Both pools have every style and choices.
    for kind in ("text_qa", "image_qa"):
        pool = [e for e in examples if e["kind"] == kind]
        assert {e["style"] for e in pool} == set(corpus.QA_STYLES)
        low, high = (0.35, 0.55) if kind == "text_qa" else (0.2, 0.4)  # text: 0.2 picks + 0.3 of the rest
        assert low < sum(CHOICES_LINE in e["target"] for e in pool) / len(pool) < high


def test_other_mixtures_and_the_edges(synth_dir):
    only_descriptions = pretrain_examples(synth_dir, seed=1, max_items=40,
                                          mixture=Mixture(description=1.0, markup=0.0, text_qa=0.0, image_qa=0.0))
    assert len(only_descriptions) == 40 and {e["kind"] for e in only_descriptions} == {"description"}
    only_text = pretrain_examples(synth_dir, seed=1, max_items=40,
                                  mixture=Mixture(description=0.0, markup=0.0, text_qa=1.0, image_qa=0.0, r1=1.0, tagged=0.0, direct=0.0))
    assert len(only_text) == 40 and all(e["kind"] == "text_qa" and e["style"] == "r1" and e["image"] is None for e in only_text)
    half = pretrain_examples(synth_dir, seed=1, max_items=40, mixture=Mixture(description=0.25, markup=0.0, text_qa=0.5, image_qa=0.25))
    assert len(half) == 80 and sum(e["kind"] == "image_qa" for e in half) == 20


def test_the_corpus_is_deterministic_for_a_seed(synth_dir, examples):
    assert pretrain_examples(synth_dir, seed=0) == examples
    assert pretrain_examples(synth_dir, seed=1) != examples


@pytest.mark.parametrize(("values", "message"), [
    ({"markup": 1.5}, r"Mixture\.markup = 1\.5"),
    ({"choices": -0.1}, r"Mixture\.choices = -0\.1"),
    ({"text_qa": "a lot"}, r"Mixture\.text_qa = 'a lot'"),
    ({"description": 0.5}, r"kinds must sum to 1: description 0\.5 \+ markup 0\.1 \+ text_qa 0\.25 \+ image_qa 0\.1 \+ grounding 0(?:\.0)? = 0\.95"),
    ({"tagged": 0.6, "r1": 0.3, "direct": 0.2}, r"styles must sum to at most 1 .*tagged 0\.6 \+ r1 0\.3 \+ direct 0\.2 = 1\.1"),
])
def test_mixture_validation_names_the_bad_value(values, message):
    with pytest.raises(ValueError, match=message):
        Mixture(**values)


# --- the documents -------------------------------------------------------------------------------

def test_r1_documents_carry_the_format_the_reward_accepts(examples):
    r1 = [e for e in examples if e["style"] == "r1"]
    assert len(r1) > 50 and {e["kind"] for e in r1} == {"text_qa", "image_qa"}
    for example in r1:
        question, options, answer, reasoning = read_qa(example)  # asserts the format reward
        completion = example["target"].split(corpus.R1_TAIL, 1)[1]
        assert completion.endswith(f"<answer>{answer}</answer>")  # the document ends with the answer
        assert re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reasoning), example["target"]


def test_every_question_is_answered_correctly(examples, records):
    tasks = set()
    for example in examples:
        if example["kind"] not in ("text_qa", "image_qa"):
            continue
        question, options, answer, reasoning = read_qa(example)
        if example["kind"] == "text_qa":
            assert example["image"] is None
            if example["task"] == "pick":
                expected = solve_pick(question, tuple(options))
            else:
                expected = solve_text(question)
        else:
            task, expected = solve_image(question, records[example["image"]])
            tasks.add(task)
            if options:
                phrases = [f"{c} {s}" for c in corpus.COLOR_NAMES for s in corpus.SHAPES]
                assert set(options) <= set({"color": corpus.COLOR_NAMES, "shape": corpus.SHAPES, "size": corpus.SIZES,
                                            "object": phrases}[task])
        assert answer == expected, example["target"]
        if reasoning is not None:  # the reasoning reaches the stated answer
            assert re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reasoning), example["target"]
    assert tasks == set(corpus.IMAGE_TASKS)


def solve_pick(question: str, options: tuple[str, ...]) -> str:
    """The one option an option-picking question allows, found from the question and the options
    alone (an independent reading of corpus._pick's wordings)."""
    category_of = {w: c for c, words in corpus.CATEGORIES.items() for w in words}

    def only(predicate) -> str:
        hits = [o for o in options if predicate(o)]
        assert len(hits) == 1, f"{question!r} {options}: {hits} qualify"
        return hits[0]

    if m := re.fullmatch(r"Which (?:of these|one of the choices|word names a) ?(?:is )?(?:a )?(.+)\?", question):
        if m.group(1) in corpus.CATEGORIES and not question.startswith("Which of these names"):
            return only(lambda o: category_of[o] == m.group(1))
    if m := re.fullmatch(r"Which of these is not a (.+)\?", question):
        return only(lambda o: category_of[o] != m.group(1))
    if question == "Which one does not belong with the others?":
        counts = Counter(category_of[o] for o in options)  # three or more options: one outside the shared category
        return only(lambda o: counts[category_of[o]] == 1)
    if m := re.search(r'"(.+)"|Read this: (.+) Which word', question):
        sentence = m.group(1) or m.group(2)
        return only(lambda o: re.search(rf"\b{o}\b", sentence) is not None)
    if m := re.fullmatch(r"Which (?:of these names an?|choice is an?) (\w+)(?: object)?\?", question):
        word = m.group(1)
        return only(lambda o: word in o.split())
    if m := re.fullmatch(r"Which (?:of these is an|choice is) (even|odd)(?: number)?\?", question):
        return only(lambda o: (int(o) % 2 == 0) == (m.group(1) == "even"))
    if m := re.fullmatch(r"Which choice is (\w+)\?", question):
        return only(lambda o: o.split()[0] == m.group(1))
    raise AssertionError(f"not a known option-picking question: {question!r}")


def test_each_text_task_is_generated_and_solved():
    import random

    rng = random.Random(5)
    for task in corpus.TEXT_TASKS:
        for _ in range(300):
            qa = corpus.text_question(rng, task)
            assert qa.task == task and qa.answer in qa.options
            if task == "pick":
                assert solve_pick(qa.question, qa.options) == qa.answer, qa
            else:
                assert solve_text(qa.question) == qa.answer, qa
            assert "how many" not in qa.question.lower()


def test_option_picking_questions_always_list_their_choices_in_the_corpus(synth_dir):
    mixture = Mixture(description=0.0, markup=0.0, text_qa=1.0, image_qa=0.0, choices=0.0, pick=0.5)
    examples = pretrain_examples(synth_dir, seed=4, max_items=40, mixture=mixture)
    picks = [e["target"] for e in examples if e["task"] == "pick"]
    assert picks and all(corpus.CHOICES_LINE in t for t in picks)
    others = [e["target"] for e in examples if e["task"] != "pick"]
    assert others and not any(corpus.CHOICES_LINE in t for t in others)  # choices 0 for the other tasks


def test_a_letter_share_answers_listed_choices_with_the_gold_options_letter(synth_dir):
    def corpus_of(letter: float) -> list[dict]:
        mixture = Mixture(description=0.0, markup=0.0, text_qa=0.5, image_qa=0.5, choices=1.0, letter=letter)
        return pretrain_examples(synth_dir, seed=2, max_items=60, mixture=mixture)

    plain, lettered = [e["target"] for e in corpus_of(0.0)], corpus_of(0.5)
    assert not any(corpus.LETTER_ANSWER.search(t) for t in plain)
    assert 0.3 < corpus.mixture_report(lettered)["choices_answer"]["letter"]["share"] < 0.7
    lettered = [e["target"] for e in lettered]
    # Each letter names the option whose text the same document answers with when letter is 0, and
    # nothing else changes (the share draws from its own generator).
    rebuilt = []
    for target in lettered:
        match = corpus.LETTER_ANSWER.search(target)
        if match:
            options = {k: v.strip() for k, v in re.findall(r"\(([A-Z])\) ([^\n]*)", target)}
            target = target[:match.start(1)] + options[match.group(2)] + target[match.end(1):]
        rebuilt.append(target)
    assert rebuilt == plain


def test_letter_answers_name_the_gold_option():
    qa = corpus.QA("pick", "Which of these is a fruit?", "pear", "A pear is a fruit.", ("stone", "pear"))
    rng = __import__("random").Random(0)
    text = corpus.render_qa(qa, "tagged", True, False, rng, "(L)")
    assert text.endswith("<answer>(B)</answer>") and "(A) stone\n(B) pear" in text
    assert corpus.render_qa(qa, "plain", True, False, rng, "L").endswith(": B")
    with pytest.raises(ValueError, match="choices listed"):
        corpus.render_qa(qa, "plain", False, False, rng, "L")


def test_identity_questions_need_a_unique_visible_referent():
    scene = {"meta": {"scene": {"objects": [
        {"shape": "cube", "color": "red", "size": "small"}, {"shape": "cube", "color": "blue", "size": "large"},
        {"shape": "cone", "color": "blue", "size": "small"}, {"shape": "sphere", "color": "green", "size": "large"},
    ]}, "objects": [{"visible": 1}, {"visible": 1}, {"visible": 1}, {"visible": 0.2}]}}
    found = corpus.identity_referents(scene)
    assert [n for n, _ in found["color"]] == ["cone"]  # the cube is not unique, the sphere is hidden
    assert [n for n, _ in found["shape"]] == ["red object"]
    assert sorted(n for n, _ in found["size"]) == ["blue cube", "cone", "red object"]
    same = {"meta": {"scene": {"objects": [{"shape": "cube", "color": "red", "size": "small"}] * 2}}}
    assert corpus.image_question(same, __import__("random").Random(0)) is None


def test_description_and_markup_documents_use_any_tag_names(examples):
    assert len(GENERIC_TAGS) >= 70 and len(set(GENERIC_TAGS)) == len(GENERIC_TAGS)
    assert {"think", "answer"} <= set(GENERIC_TAGS)
    used = []
    for example in examples:
        text = example["target"]
        if example["kind"] == "markup" or example["style"] == "markup":
            opened = re.findall(r"<([a-z]+)>", text)
            assert set(opened) <= set(GENERIC_TAGS) and len(opened) >= 2
            closed = re.findall(r"</([a-z]+)>", text)
            assert sorted(closed) == sorted(opened) and text.endswith(f"</{closed[-1]}>")
            used += opened
        elif example["kind"] == "description":
            assert "<" not in text and "?" not in text
    counts = {name: used.count(name) for name in GENERIC_TAGS}
    mean = len(used) / len(GENERIC_TAGS)
    assert 0.5 * mean < counts["think"] < 1.6 * mean and 0.5 * mean < counts["answer"] < 1.6 * mean


def test_a_shuffled_share_states_the_same_facts_in_a_random_order(synth_dir):
    def corpus_of(shuffled: float) -> list[dict]:
        mixture = Mixture(description=1.0, markup=0.0, text_qa=0.0, image_qa=0.0, shuffled=shuffled)
        return pretrain_examples(synth_dir, seed=3, max_items=60, mixture=mixture)

    plain, shuffled = corpus_of(0.0), corpus_of(0.7)
    assert [e["image"] for e in plain] == [e["image"] for e in shuffled]  # nothing else changes
    moved = [(p, s) for p, s in zip(plain, shuffled, strict=True) if s["style"] == "shuffled"]
    prose = sum(e["style"] == "prose" for e in plain)
    assert 0.4 < len(moved) / prose < 0.95 and all(p["style"] == "prose" for p, _ in moved)
    for p, s in zip(plain, shuffled, strict=True):
        if s["style"] != "shuffled":
            assert s == p
    # The same sentences, and in some documents a relation comes before the left-to-right list.
    facts = {json.loads(line)["images"][0]: [f["text"] for f in json.loads(line)["meta"]["description"]["facts"]]
             for line in (synth_dir / "train.jsonl").read_text().splitlines()}
    early = 0
    for _, s in moved:
        sentences = facts[s["image"].split(f"{synth_dir}/")[-1]]
        assert len(s["target"]) == len(" ".join(sentences)) and all(t in s["target"] for t in sentences)
        listed = next(t for t in sentences if "from left to right" in t)
        early += any(s["target"].index(t) < s["target"].index(listed) for t in sentences
                     if re.search(r"\b(left|right|above|below)\b", t) and t != listed)
    assert early > 0


def test_a_recite_share_works_through_the_options_and_changes_nothing_else(synth_dir):
    def corpus_of(recite: float) -> list[dict]:
        mixture = Mixture(description=0.0, markup=0.0, text_qa=0.5, image_qa=0.5, choices=0.6, r1=0.4, tagged=0.4,
                          recite=recite)
        return pretrain_examples(synth_dir, seed=3, max_items=60, mixture=mixture)

    assert corpus_of(0.0) == pretrain_examples(synth_dir, seed=3, max_items=60, mixture=Mixture(
        description=0.0, markup=0.0, text_qa=0.5, image_qa=0.5, choices=0.6, r1=0.4, tagged=0.4))
    recited = corpus_of(1.0)
    worked = [e for e in recited if e["style"] in ("tagged", "r1") and CHOICES_LINE in e["target"]]
    assert len(worked) > 10
    for example in worked:
        text = example["target"]
        options = [o.strip() for o in re.findall(r"^\([A-Z]\) ([^\n]*)$", text, re.MULTILINE)]
        think = re.search(r"<think>(.*?)</think>", text, re.DOTALL).group(1)
        answer = re.search(r"<answer>(.*?)</answer>", text).group(1)
        # The reasoning names every option, in the listed order, and ends on the answer it gives.
        positions = [think.find(o) for o in options]
        assert -1 not in positions and positions == sorted(positions), text
        assert think.strip().endswith(f"{answer}."), text
        assert not evaluated_family_questions(text)
    # Documents without listed choices or without reasoning are as they were.
    others = [e["target"] for e in recited if e not in worked]
    assert not any(re.search(r"The (choices|options)", t) for t in others)
    with pytest.raises(ValueError, match="choices listed"):
        corpus.render_qa(corpus.QA("pick", "Which is a fruit?", "pear", "A pear is a fruit.", ("stone", "pear")),
                         "tagged", False, False, __import__("random").Random(0), recite=True)


MATCH = re.compile(r"Which object (?:has the same|is the same|shares its|is a different|does not have the same) "
                   r"(color|shape) (?:as|with|from) the ([a-z]+(?: [a-z]+)?)(?:, the ([a-z]+ [a-z]+) or the ([a-z]+ [a-z]+))?\?")


def test_reference_matching_questions_are_answered_with_a_whole_option_never_the_reference(synth_dir, records):
    """The `match` share: "Which object has the same color as the red cone, the A or the B?", as
    text and about the picture. Each answer is recomputed here from the question and the scene."""
    mixture = Mixture(description=0.0, markup=0.0, text_qa=0.5, image_qa=0.5, choices=0.0, r1=0.4, tagged=0.4,
                      match=1.0)
    found = Counter()
    for example in pretrain_examples(synth_dir, seed=4, max_items=300, mixture=mixture):
        if example["task"] not in corpus.MATCH_TASKS:
            continue
        found[example["task"]] += 1
        text = example["target"]
        assert not evaluated_family_questions(text), text
        question, options, answer, _ = read_qa(example)
        assert options and answer in options, text  # always listed, even with choices 0
        m = MATCH.search(question)
        assert m, question
        attribute, reference, *named = m.groups()
        if named[0]:
            assert sorted(named) == sorted(options), text
        index = 0 if attribute == "color" else 1
        if example["task"] == "match":
            ref = reference.split()
        else:  # the reference is named by its unique other attribute; its asked one is seen
            objects = records[example["image"]]["meta"]["scene"]["objects"]
            key = "shape" if attribute == "color" else "color"
            ref_obj = [o for o in objects if o[key] == reference.replace(" object", "")]
            assert len(ref_obj) == 1, text
            ref = [ref_obj[0]["color"], ref_obj[0]["shape"]]
            assert answer in {f"{o['color']} {o['shape']}" for o in objects if o is not ref_obj[0]}, text
        assert answer != " ".join(ref)
        differ = "different" in question or "does not" in question
        right = [o for o in options if (o.split()[index] == ref[index]) != differ]
        assert right == [answer], text
    assert found["match"] > 30 and found["picture_match"] > 30, found


def test_the_match_share_is_the_share_of_qa_documents_that_match(synth_dir):
    mixture = Mixture(description=0.2, markup=0.1, text_qa=0.35, image_qa=0.35, choices=0.6, match=0.5)
    examples = pretrain_examples(synth_dir, seed=5, max_items=400, mixture=mixture)
    for kind, task, low in (("text_qa", "match", 0.4), ("image_qa", "picture_match", 0.15)):
        qa = [e for e in examples if e["kind"] == kind]
        share = sum(e["task"] == task for e in qa) / len(qa)
        # text: 0.5 of them; image: 0.5 where the scene has a reference and a match, else identity
        assert low < share < 0.6, (kind, share)
    assert not any(e["task"] in corpus.MATCH_TASKS for e in pretrain_examples(synth_dir, seed=5, max_items=400))
