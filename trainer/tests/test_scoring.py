"""Evaluation scoring against docs/evaluation.md, written out by hand (independent of test/vectors/scoring.json)."""

from __future__ import annotations

import pytest

from trainer.scoring import (
    extract_answer,
    extract_r1,
    extract_strict,
    is_correct,
    letter_tokens,
    normalize_gold_letter,
    passes_format,
    score_predictions,
)

LR = ["left", "right"]
ABCD = ["1", "2", "3", "4"]


# --- r1 extraction ----------------------------------------------------------------------------

@pytest.mark.parametrize("response, expected", [
    (" t </think><answer>(A)</answer>", "(A)"),
    (" t </think><answer>  B  </answer>", "B"),
    ("<answer>\nright\n</answer>", "right"),                      # \s* crosses newlines, the content does not
    ("<answer>\nA\nor B</answer> then <answer>B</answer>", "B"),  # the first span that matches is the second
    ("<answer>B</answer><answer>A</answer>", "B"),                # the first of several
    ("<answer>A</answer> and more text", "A"),                    # trailing text does not matter
    ("The answer is B", "The answer is B"),                       # no tags: the whole response
    ("  left \n", "left"),
    (" says B. <answer></answer>", "says B. <answer></answer>"),  # empty span: the whole response
    ("<answer> \n </answer>", "<answer> \n </answer>"),
    (" \n\t", ""),
    ("", ""),
    ("<answer>\u3000B\u0085</answer>", "B"),                      # Python's whitespace, not JS's
    ("<answer>\ufeffB</answer>", "\ufeffB"),                      # U+FEFF is not whitespace
])
def test_r1_takes_the_first_single_line_answer_span_or_the_whole_response(response, expected):
    assert extract_r1(response) == expected
    assert extract_answer(response, "r1", prompt_opens_think=True) == expected
    assert extract_answer(response, "r1", prompt_opens_think=False) == expected


# --- strict extraction ------------------------------------------------------------------------

@pytest.mark.parametrize("response, opens_think, format_ok, expected", [
    (" reasoning </think>\n<answer>(B)</answer>", True, True, "(B)"),
    (" reasoning </think>\n<answer>\nSo\nB\n</answer>", True, True, "So\nB"),   # multi-line block is fine
    (" maybe <answer>A</answer> </think><answer>B</answer>", True, True, "B"),  # the block after </think>
    ("<think> x </think><answer>B</answer>", True, True, "B"),                  # format_reward accepts it
    (" t </think><answer>A</answer> done", True, False, None),                  # text after </answer>
    (" t </think><answer>A</answer>\n", True, False, None),
    (" t <answer>A</answer>", True, False, None),                               # think never closed
    (" t </think><answer></answer>", True, True, None),                         # empty block
    (" t </think><answer> \n </answer>", True, True, None),
    (" t </think><answer>A</answer><answer>B</answer>", True, True, None),      # several answer blocks
    ("The answer is A", True, False, None),
    ("", True, False, None),
    ("<think> r </think><answer>B</answer>", False, True, "B"),                 # the response opens think
    ("r </think><answer>B</answer>", False, False, None),
    (" <think> r </think><answer>B</answer>", False, False, None),
])
def test_strict_needs_the_training_format_and_one_answer_block(response, opens_think, format_ok, expected):
    assert passes_format(response, opens_think) is format_ok
    assert extract_strict(response, opens_think) == expected
    assert extract_answer(response, "strict", opens_think) == expected


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown extraction strategy"):
        extract_answer("A", "lmms-eval", True)


# --- matching ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extracted", ["B", "b", "(B)", "(b)", " (B) ", "\u3000b\n"])
def test_gold_letter_forms(extracted):
    assert is_correct(extracted, "B", LR)


@pytest.mark.parametrize("extracted, expected", [
    ("(B) right", True),
    ("B. right", True),
    ("B) right", True),
    ("The answer is B", True),
    ("The answer is B.", True),
    ("(b) right", True),              # a lowercase letter counts in parentheses
    ("B, i.e. (B)", True),            # the same letter twice
    ("I think it is B", True),        # "I" is not an option letter of two choices
    ("B, not E", True),               # nor is "E"
    ("\ufeffB", True),                # non-ASCII neighbours do not make a word
    ("\u00c9B\U0001f642", True),
    ("A or B", False),                # two distinct option letters
    ("(A) or (b)", False),
    ("A cube, so B", False),          # a capital article is a letter too (documented limitation)
    ("b is right", False),            # a bare lowercase letter is not a token
    ("AB", False),
    ("B1", False),
    ("option_B", False),
    ("A", False),
    ("", False),
])
def test_standalone_letter_tokens(extracted, expected):
    assert is_correct(extracted, "B", LR) is expected


def test_letter_tokens_are_restricted_to_option_letters():
    assert letter_tokens("A B C D E F G", "ABCD") == {"A", "B", "C", "D"}
    assert letter_tokens("(a) (e) a e", "ABCD") == {"A"}
    assert letter_tokens("(A)(B)", "ABCD") == {"A", "B"}
    # no choices: A-F
    assert is_correct("F", "F", []) and is_correct("(f)", "F", []) and not is_correct("left", "A", [])


@pytest.mark.parametrize("extracted, insensitive, expected", [
    ("right", False, True),
    (" right\n", False, True),
    ("Right", False, False),
    ("Right", True, True),
    ("RIGHT", True, True),
    ("left", False, False),           # the option text of another letter
    ("LEFT", True, False),
    ("(A) right", True, False),       # another letter and the gold text
    ("the right one", True, False),   # no substring matching
])
def test_option_text(extracted, insensitive, expected):
    assert is_correct(extracted, "B", LR, case_insensitive_text=insensitive) is expected


def test_option_text_case_folding_is_str_lower():
    assert is_correct("ÄRGER", "A", ["ärger", "Öl"], case_insensitive_text=True)
    assert is_correct("ΣΟΦΟΣ", "A", ["σοφος", "x"], case_insensitive_text=True)
    assert not is_correct("STRASSE", "A", ["straße", "x"], case_insensitive_text=True)
    assert is_correct(" left ", "A", [" left", "x"])  # the choice is stripped too


def test_none_is_never_correct():
    assert not is_correct(None, "A", LR)
    assert not is_correct(None, "A", LR, case_insensitive_text=True)


def test_gold_letter_forms_and_errors():
    assert normalize_gold_letter("(C)") == normalize_gold_letter(" c ") == "C"
    assert is_correct("C", "(C)", ABCD)
    for bad in ("", "AB", "(A", "1", "(AB)"):
        with pytest.raises(ValueError, match="not an option letter"):
            normalize_gold_letter(bad)
    with pytest.raises(ValueError, match="not one of the options"):
        is_correct("C", "C", LR)


# --- aggregation ------------------------------------------------------------------------------

def p(task, source, correct, format_ok=True):
    return {"task": task, "source": source, "correct": correct, "format_ok": format_ok}


def test_cv_bench_official_score_weights_sources_not_items():
    preds = [
        p("Count", "ADE20K", True),
        p("Count", "COCO", True, False),
        p("Relation", "COCO", False),
        p("Relation", "COCO", False, False),
        p("Depth", "Omni3D", True),
        p("Distance", "Omni3D", False),
    ]
    score = score_predictions(preds, "cv-bench")
    assert score["n"] == 6
    assert score["accuracy"] == 0.5
    assert score["format_rate"] == 4 / 6
    assert score["by_task"] == {
        "Count": {"n": 2, "accuracy": 1.0},
        "Relation": {"n": 2, "accuracy": 0.0},
        "Depth": {"n": 1, "accuracy": 1.0},
        "Distance": {"n": 1, "accuracy": 0.0},
    }
    assert list(score["by_task"]) == ["Count", "Depth", "Distance", "Relation"]
    # ((1 + 1/3)/2 + 1/2)/2 = 7/12
    assert score["official"]["score"] == pytest.approx(7 / 12)
    assert "ADE20K" in score["official"]["name"] and "detail" not in score["official"]


def test_cv_bench_official_score_needs_every_source_group():
    score = score_predictions([p("Count", "ADE20K", True), p("Count", "COCO", False)], "cv-bench")
    assert score["accuracy"] == 0.5
    assert score["official"]["score"] is None
    assert score["official"]["detail"] == "no predictions from source(s): Omni3D"
    unknown = score_predictions([p("Count", "ADE20K", True), p("Count", "COCO", True), p("Depth", "Omni3D", True),
                                 p("Depth", "nyu", True)], "cv-bench")
    assert unknown["official"]["score"] is None and "nyu" in unknown["official"]["detail"]


def test_blink_official_score_is_the_unweighted_subtask_mean():
    preds = [p("Relative_Depth", "blink", True)] * 3 + [p("Spatial_Relation", "blink", False)]
    score = score_predictions(preds, "blink")
    assert score["accuracy"] == 0.75
    assert score["official"] == {"name": "mean of subtask accuracies", "score": 0.5}


@pytest.mark.parametrize("benchmark", ["vsr", "sat", "spatial-synth"])
def test_plain_accuracy_benchmarks(benchmark):
    preds = [p("a", benchmark, True), p("b", benchmark, False, False), p("a", benchmark, True)]
    score = score_predictions(preds, benchmark)
    assert score["official"] == {"name": "accuracy", "score": 2 / 3}
    assert score["format_rate"] == 2 / 3
    assert score["by_task"] == {"a": {"n": 2, "accuracy": 1.0}, "b": {"n": 1, "accuracy": 0.0}}


def test_aggregation_errors():
    with pytest.raises(ValueError, match="no predictions"):
        score_predictions([], "vsr")
    with pytest.raises(ValueError, match="unknown benchmark"):
        score_predictions([p("a", "x", True)], "mmlu")
