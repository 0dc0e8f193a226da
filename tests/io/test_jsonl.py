"""metrics.jsonl: strict JSON (non-finite -> null), appends never glued onto a cut line, no links."""

import json
import math
import os

import pytest

from maskdit.io import jsonl
from maskdit.io.files import UnsafePathError


def strict(text):
    """Parse as strict JSON: NaN / Infinity literals raise."""
    def refuse(name):
        raise ValueError(f"non-JSON literal {name}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def test_non_finite_values_are_null_at_any_depth(tmp_path):
    path = tmp_path / "metrics.jsonl"
    jsonl.append_jsonl(path, {"step": 1, "loss": math.nan, "parts": {"dsm": math.inf}, "per_sigma": [1.0, -math.inf]})
    jsonl.append_metrics(path, {"step": 2, "fid": math.nan, "per_sigma": [math.nan]})
    assert strict(path.read_text()) == [{"step": 1, "loss": None, "parts": {"dsm": None}, "per_sigma": [1.0, None]},
                                        {"step": 2, "fid": None, "per_sigma": [None]}]


def test_an_append_after_a_cut_line_drops_only_the_cut_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    jsonl.append_metrics(path, {"step": 9, "kind": "eval"})
    assert jsonl.read_metrics(path) == [{"step": 1}, {"step": 2}, {"step": 9, "kind": "eval"}]
    path.write_text('{"ste')  # no newline in the file at all
    jsonl.append_jsonl(path, {"step": 1})
    assert path.read_text() == '{"step": 1}\n'


def test_an_append_after_a_whole_record_without_its_newline_keeps_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "note": "' + "x" * 70000 + '"}')  # the search crosses a chunk
    jsonl.append_jsonl(path, {"step": 3})
    assert [r["step"] for r in jsonl.read_metrics(path)] == [1, 2, 3]


def test_a_linked_metrics_file_is_refused(tmp_path):
    target = tmp_path / "outside"
    target.write_text("precious\n")
    (tmp_path / "metrics.jsonl").symlink_to(target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        jsonl.append_jsonl(tmp_path / "metrics.jsonl", {"step": 1})
    with pytest.raises(UnsafePathError, match="symbolic link"):
        jsonl.truncate_jsonl(tmp_path / "metrics.jsonl", 0)
    (tmp_path / "metrics.jsonl").unlink()
    os.link(target, tmp_path / "metrics.jsonl")
    with pytest.raises(UnsafePathError, match="hard links"):
        jsonl.append_metrics(tmp_path / "metrics.jsonl", {"step": 1})
    assert target.read_text() == "precious\n"


def test_truncate_reads_skip_records_old_and_new(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for record in ({"step": 2}, {"step": 3, "event": "skipped_nonfinite", "loss": None},  # step 3 skipped (now)
                   {"step": 3, "event": "skipped_nonfinite"},  # an older file's skip of step 4 (0-based)
                   {"step": 4, "event": "skipped_nonfinite", "loss": None}):
        jsonl.append_jsonl(path, record)
    assert jsonl.truncate_jsonl(path, 3) == 2
    assert jsonl.read_jsonl(path) == [{"step": 2}, {"step": 3, "event": "skipped_nonfinite", "loss": None}]
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]  # no temp file left


def test_a_deeply_nested_cut_line_is_dropped_not_a_crash(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n' + "[" * 100_000)
    jsonl.append_jsonl(path, {"step": 2})
    assert jsonl.read_metrics(path) == [{"step": 1}, {"step": 2}]
