"""benchmarks/evaluation/: the report of the committed record, and of a record that states its repeats."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.scripts import BENCHMARKS, golden, load_study


@pytest.fixture(scope="module")
def study():
    return load_study("evaluation", "evaluation", "report")


def test_report_reproduces_the_committed_table(study, capsys):
    assert study["report"].main([]) == 0
    assert capsys.readouterr().out == golden("evaluation")


def test_a_record_with_its_repeats_says_so(study):
    record = json.loads((BENCHMARKS / "evaluation" / "evaluation.json").read_text())
    assert "(median of 5)" in study["evaluation"].format_report({**record, "repeats": 5})
