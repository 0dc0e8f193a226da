"""benchmarks/posthoc_ema/run.py: the committed record's report, a sweep on a tiny run, and only public imports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from tests.train.posthoc_run import train_tiny_run

STUDY = Path(__file__).resolve().parents[2] / "benchmarks" / "posthoc_ema"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("posthoc_ema_study", STUDY / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("posthoc_study"))


def test_report_reproduces_the_committed_tables(study, capsys):
    assert study.main(["report"]) == 0
    assert capsys.readouterr().out == (STUDY / "report.md").read_text(encoding="utf-8")


def test_the_study_imports_only_public_names():
    tree = ast.parse((STUDY / "run.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "maskdit":
            package = importlib.import_module(node.module)
            assert Path(package.__file__).name == "__init__.py", f"{node.module} is a module, not a package"
            public = set(getattr(package, "__all__", ()))
            assert {alias.name for alias in node.names} <= public, node.module
        elif isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] != "maskdit" for alias in node.names)
    assert "sys.path" not in (STUDY / "run.py").read_text(encoding="utf-8")


def test_sweep_scores_every_profile_and_resumes(study, run, tmp_path, capsys):
    out = tmp_path / "results.json"
    args = ["sweep", str(run), "--sigma-rel", "0.1", "--ema-decay", "0.5", "--window", "4", "--cfg", "2",
            "--interval", "none", "0.1,8", "--num-samples", "12", "--out", str(out), "--threads", "1"]
    assert study.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    profiles = ["ema", "ema-rebuilt", "raw", "power-0.1", "ema-0.5", "window-4"]
    assert [r["profile"] for r in rows] == [p for p in profiles for _ in range(2)]
    assert [r["interval"] for r in rows[:2]] == [None, [0.1, 8.0]]
    assert all(r["step"] == 12 and r["snapshots"] == 12 and math.isfinite(r["fid"]) for r in rows)
    assert rows[2]["fid"] == pytest.approx(rows[0]["fid"], rel=1e-3)  # every-step snapshots rebuild the EMA
    assert rows[0]["fid"] != pytest.approx(rows[4]["fid"], rel=1e-3)  # the EMA and the raw weights differ
    assert "| profile | cfg |" in capsys.readouterr().out
    assert study.main(args) == 0  # every row is there: nothing is sampled again
    assert json.loads(out.read_text())["rows"] == rows
    assert "FID" not in capsys.readouterr().out.split("| profile")[0]


def test_only_scores_the_named_profiles(study, run, tmp_path, capsys):
    out = tmp_path / "results.json"
    base = ["sweep", str(run), "--ema-decay", "0.5", "--interval", "none", "--num-samples", "12", "--out", str(out),
            "--threads", "1"]
    assert study.main(base + ["--only", "ema-0.5", "raw", "--cfg", "2", "3"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["profile"], r["cfg"]) for r in rows) == [("ema-0.5", 2.0), ("ema-0.5", 3.0), ("raw", 2.0),
                                                              ("raw", 3.0)]
    assert study.main(base + ["--only", "ema-0.7"]) == 2
    assert "no such profile" in capsys.readouterr().err


def test_bad_input_exits_2(study, tmp_path, capsys):
    assert study.main(["sweep", str(tmp_path / "missing")]) == 2
    assert "0 checkpoint(s)" in capsys.readouterr().err
    for bad in (["--sigma-rel", "0.5"], ["--window", "0"]):
        with pytest.raises(SystemExit):
            study.main(["sweep", str(tmp_path), *bad])
        assert bad[0] in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[]")
    assert study.main(["report", "--out", str(tmp_path / "junk.json")]) == 2
    assert "not a results file" in capsys.readouterr().err
