"""The shared rules against the paper's definitions, written out by hand (docs/method.md, "Prompts" and "Rewards")."""

from __future__ import annotations

import pytest

from trainer.prompts import render_prompt
from trainer.rewards import accuracy_reward, format_reward, has_reflection, parse_completion
from trainer.scoring import lettered_accuracy_reward

R1_TEXT = (
    "A conversation between User and Assistant. The user asks a question about the image, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then provides the user "
    "with the answer.\nUser: Q? \nAssistant: Let me solve this step by step.\n<think>"
)


def test_r1_prompt_is_the_papers_text_after_the_image_and_a_literal_image_tag():
    assert render_prompt("r1", "Q?", has_image=True) == "<|vision_start|><|image_pad|><|vision_end|><image>" + R1_TEXT
    assert render_prompt("r1", "Q?", has_image=False) == R1_TEXT


def test_direct_prompt_drops_the_thinking_sentence_and_ends_at_the_assistant_turn():
    text = render_prompt("direct", "Q?", has_image=False)
    assert text.endswith("\nUser: Q? \nAssistant: ") and "thinks about" not in text


def test_instruct_prompt_appends_the_papers_suffix_inside_the_chat_template():
    seen = []
    render_prompt("instruct", "Q?", has_image=True, chat_template=lambda m: seen.append(m) or "")
    content = seen[0][0]["content"]
    assert content[0] == {"type": "image"}
    assert content[1]["text"] == "Q? Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."


def test_unknown_template_is_rejected():
    with pytest.raises(ValueError, match="unknown template"):
        render_prompt("chatml", "Q?", has_image=False)


@pytest.mark.parametrize("completion, expected", [
    (" reasoning </think><answer>B</answer>", 1.0),
    (" reasoning\nover lines </think>\n\n<answer>\nB\n</answer>", 1.0),
    (" reasoning </think><answer>B</answer> ", 0.0),     # anything after </answer>
    (" reasoning <answer>B</answer>", 0.0),               # think never closed
    ("<answer>B</answer>", 0.0),
])
def test_format_reward_is_a_full_match_after_prepending_think(completion, expected):
    assert format_reward(completion) == expected


@pytest.mark.parametrize("completion, gold, expected", [
    (" x </think><answer> left </answer>", "left", 1.0),
    (" x </think><answer>Left</answer>", "left", 0.0),       # case-sensitive
    (" x </think><answer>\nleft</answer>", "left", 0.0),    # the span does not cross lines...
    ("left", "left", 1.0),                                  # ...and without a span the whole text counts
    (" x </think><answer>left</answer><answer>right</answer>", "right", 0.0),  # first span only
])
def test_accuracy_reward_compares_the_first_answer_span_exactly(completion, gold, expected):
    assert accuracy_reward(completion, gold) == expected


@pytest.mark.parametrize("completion, expected", [
    (" x </think><answer>B</answer>", 1.0),
    (" x </think><answer>(B)</answer>", 1.0),
    (" x </think><answer>The answer is B</answer>", 1.0),  # a standalone letter, as evaluation matches
    (" x </think><answer>right</answer>", 1.0),            # the option text still counts
    (" x </think><answer>A</answer>", 0.0),
    (" x </think><answer>A or B</answer>", 0.0),           # two letters name no option
    (" x </think><answer>b</answer>", 1.0),                # evaluation's exact forms include the lowercase letter
])
def test_accuracy_reward_takes_the_gold_letter_when_the_question_lists_lettered_choices(completion, expected):
    assert lettered_accuracy_reward(completion, "right", "B", ["left", "right"]) == expected
    if completion.endswith("<answer>B</answer>"):
        assert accuracy_reward(completion, "right") == 0.0  # without the letters shown, a letter is no answer


def test_parse_completion_reads_an_r1_completion_as_opened_by_the_prompt():
    parsed = parse_completion(" I count two. Wait, three. </think>\n<answer>3</answer>", prompt_opens_think=True)
    assert (parsed.think, parsed.answer, parsed.format_ok) == ("I count two. Wait, three.", "3", True)
    assert parse_completion("plain text", prompt_opens_think=False) == parse_completion("plain text", False)
    assert parse_completion("plain text", prompt_opens_think=False).think is None


@pytest.mark.parametrize("text, expected", [
    ("Wait, the cube is behind.", True), ("Let me re-check.", True), ("I verified it", True),
    ("Aha!", True), ("possibly", True), ("not yet", True), ("re-evaluate", True),
    ("The waiter is impossible.", False), ("nothing here", False),
])
def test_reflection_words(text, expected):
    assert has_reflection(text) is expected
