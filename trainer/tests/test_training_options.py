"""test/vectors/training_options.json is trainer/config.py's option list, and its bounds are the ones a job is held to."""

from __future__ import annotations

import json

import pytest

from trainer.config import JobConfig, option_table
from trainer.vectors import DEFAULT_OUT, training_options_vectors

REQUIRED = {"base_model": "m", "dataset": "d", "output_dir": "o"}
BOUNDED = [row for row in option_table() if {"minimum", "exclusive_minimum", "maximum"} & row.keys()]


def test_committed_training_options_are_current():
    # The same check as test_vectors.py's, without loading a model: run `python -m trainer.vectors` when it fails.
    committed = json.loads((DEFAULT_OUT / "training_options.json").read_text())
    assert committed == json.loads(json.dumps(training_options_vectors()))


def test_every_option_of_a_job_is_listed_once_with_its_default():
    names = [row["name"] for row in option_table()]
    assert names == list(JobConfig.keys())
    defaults = JobConfig()
    for row in option_table():
        assert row["default"] == getattr(defaults, row["name"]), row["name"]
    # A job.json that spells out every listed default is a valid job (required paths aside).
    job = {row["name"]: row["default"] for row in option_table()} | REQUIRED
    assert JobConfig.from_dict(job).validate() == JobConfig.from_dict(REQUIRED).validate()


@pytest.mark.parametrize("row", BOUNDED, ids=lambda row: row["name"])
def test_listed_bounds_are_the_ones_validate_holds_a_job_to(row):
    name, integer = row["name"], row["type"] == "integer"
    step = 1 if integer else 1e-9

    def check(value) -> str | None:
        try:
            JobConfig.from_dict({**REQUIRED, name: value}).validate()
        except ValueError as error:
            return str(error)
        return None

    if "minimum" in row:
        assert check(row["minimum"]) is None
        assert f"{name}=" in (check(row["minimum"] - step) or "")
    if "exclusive_minimum" in row:
        low = row["exclusive_minimum"]
        assert f"{name}=" in (check(low) or "")
        assert check(low + step) is None
    if "maximum" in row:
        assert check(row["maximum"]) is None
        assert f"{name}=" in (check(row["maximum"] + step) or "")


def test_options_without_listed_bounds_take_any_value_of_their_type():
    free = [row for row in option_table() if row["type"] in ("integer", "number") and row not in BOUNDED]
    assert {row["name"] for row in free} == {"max_pixels", "weight_decay"}
    for row in free:
        JobConfig.from_dict({**REQUIRED, row["name"]: 10**9}).validate()


def test_choices_are_the_accepted_values():
    for row in option_table():
        if "choices" not in row:
            continue
        for choice in row["choices"]:
            JobConfig.from_dict({**REQUIRED, row["name"]: choice}).validate()
        with pytest.raises(ValueError, match=f"{row['name']}='nope' is not one of"):
            JobConfig.from_dict({**REQUIRED, row["name"]: "nope"}).validate()
