"""benchmarks/guidance/ on a tiny (untrained) checkpoint: one row per scale x interval, resume, bad input;
its report of the committed records."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict
from maskdit.core import build_denoiser
from maskdit.io.checkpoint import save_checkpoint
from tests.benchmarks.scripts import TINY_MODEL, golden, load_study

TINY = TINY_MODEL + ["sampler.steps=3"]


@pytest.fixture(scope="module")
def study():
    return load_study("guidance", "guidance", "report")


@pytest.fixture()
def run(tmp_path):
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    state = build_denoiser(spec.model).state_dict()
    save_checkpoint(tmp_path / "run" / "checkpoints", 5, {"model": state, "ema": {k: v.clone() for k, v in state.items()}},
                    {"step": 5, "spec": spec.model_dump(mode="json")}, keep=1)
    return tmp_path / "run"


def test_rows_resume_and_table(study, run, tmp_path, capsys):
    out = tmp_path / "guidance.json"
    args = [str(run), "--cfg", "1", "2", "--interval", "none", "0.1,8", "--num-samples", "12", "--out", str(out)]
    assert study["guidance"].main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    # cfg 1 does not guide, so it gets one row; cfg 2 one per interval
    assert sorted((r["cfg"], tuple(r["interval"] or ())) for r in rows) == [(1.0, ()), (2.0, ()), (2.0, (0.1, 8.0))]
    assert all(r["step"] == 5 and r["steps"] == 3 and math.isfinite(r["fid"]) for r in rows)
    assert "| weights | steps | noise seed | cfg | interval |" in capsys.readouterr().out
    assert study["guidance"].main(args) == 0  # everything is there: nothing is sampled again
    assert json.loads(out.read_text())["rows"] == rows
    assert "cfg    2" not in capsys.readouterr().out


def test_churn_is_an_axis_of_the_grid(study, run, tmp_path):
    out = tmp_path / "guidance.json"
    args = [str(run), "--cfg", "2", "--interval", "none", "--churn", "0", "4", "--num-samples", "12", "--out", str(out)]
    assert study["guidance"].main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["s_churn"] for r in rows] == [0.0, 4.0]
    assert rows[0]["fid"] != rows[1]["fid"]  # the stochastic sampler really ran: other samples
    legacy = [{k: v for k, v in rows[0].items() if k != "s_churn"}]  # a sweep from before --churn
    out.write_text(json.dumps({"rows": legacy}))
    assert study["guidance"].main(args[:-2] + ["--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["rows"]) == 2  # the old row counts as S_churn 0: only 4 is added


def test_noise_seed_is_an_axis_of_the_grid(study, run, tmp_path):
    out = tmp_path / "guidance.json"
    common = [str(run), "--cfg", "2", "--interval", "none", "--num-samples", "12", "--out", str(out)]
    assert study["guidance"].main(common) == 0  # the run's own seed (0, the preset's)
    assert study["guidance"].main(common + ["--noise-seed", "0", "1"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["noise_seed"] for r in rows] == [None, 0, 1]
    assert rows[1]["fid"] == rows[0]["fid"]  # seed 0 is the run's seed: the same noise, the same samples
    assert rows[2]["fid"] != rows[0]["fid"]  # another seed really draws other noise


def test_bad_input_exits_2(study, run, tmp_path, capsys):
    assert study["guidance"].main([str(tmp_path / "missing"), "--out", str(tmp_path / "g.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert study["guidance"].main([str(run), "--out", str(broken)]) == 2
    assert "broken.json" in capsys.readouterr().err
    for text in ("5,1", "x", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError, match="interval"):
            study["guidance"].parse_interval(text)
    assert study["guidance"].parse_interval("none") is None and study["guidance"].parse_interval("0.5,20") == (0.5, 20.0)


@pytest.mark.parametrize("record", ["guidance", "guidance_noise_seeds"])
def test_report_reproduces_the_committed_tables(study, record, capsys):
    assert study["report"].main([f"{record}.json"]) == 0
    assert capsys.readouterr().out == golden(record)


def test_a_row_is_the_runs_spec_with_a_json_patch(study, run):
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    at = study["guidance"].at_sampler(spec, cfg=3.5, interval=(0.2, 9.0), s_churn=2.0, steps=4, num_samples=7,
                                      noise_seed=5)
    assert (at.sampler.cfg_scale, tuple(at.sampler.cfg_interval), at.sampler.s_churn, at.sampler.steps) == \
        (3.5, (0.2, 9.0), 2.0, 4)
    assert (at.eval.num_samples, at.eval.grid_per_class, at.seed) == (7, 0, 5)
    assert at.model == spec.model and at.train == spec.train
