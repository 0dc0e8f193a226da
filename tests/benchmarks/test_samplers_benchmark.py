"""benchmarks/samplers/ on a tiny (untrained) checkpoint: rows per sampler and NFE, the JSON, the table;
its report of the committed record."""

from __future__ import annotations

import json
import math

import pytest

from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict
from maskdit.core import build_denoiser
from maskdit.io.checkpoint import save_checkpoint
from tests.benchmarks.scripts import TINY_MODEL, golden, load_study, run_script

TINY = TINY_MODEL


@pytest.fixture(scope="module")
def bench():
    return load_study("samplers", "samplers")["samplers"]


@pytest.fixture()
def checkpoint(tmp_path):
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    state = build_denoiser(spec.model).state_dict()
    ema = {name: value.clone() * 0.5 for name, value in state.items()}
    return save_checkpoint(tmp_path / "run" / "checkpoints", 7, {"model": state, "ema": ema},
                           {"step": 7, "spec": spec.model_dump(mode="json")}, keep=1)


def test_benchmark_rows_json_and_table(bench, checkpoint, tmp_path, capsys):
    out = tmp_path / "samplers.json"
    code = bench.main(["--checkpoint", str(checkpoint), "--samplers", "heun", "ddim", "--nfe", "3", "5",
                       "--num-samples", "20", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    preset_cfg = ExperimentSpec.model_validate(load_spec_dict("default")).sampler.cfg_scale  # the checkpoint's
    assert result["complete"] and result["num_samples"] == 20 and result["cfg_scale"] == preset_cfg and result["step"] == 7
    assert sorted((r["sampler"], r["nfe"]) for r in rows) == [("ddim", 3), ("ddim", 5), ("heun", 3), ("heun", 5)]
    for row in rows:  # the NFE recorded is the one the sampler reports for its step count
        _, sampler = bench.build_section(row["sampler_spec"], 10)
        assert sampler.num_evaluations == row["nfe"] and sampler.steps == row["steps"]
        assert math.isfinite(row["fid"]) and 0 <= row["class_accuracy"] <= 1 and row["seconds"] > 0
    assert {r["steps"] for r in rows if r["sampler"] == "heun"} == {2, 3}  # heun: NFE = 2 steps - 1
    assert {r["schedule"] for r in rows} == {"karras", "ddpm"}  # native schedules
    printed = capsys.readouterr().out
    assert "sampler" in printed and "class acc" in printed and printed.count("heun ") >= 4
    assert out.with_suffix(".png").stat().st_size > 0


def test_missing_checkpoint_exits_2(bench, tmp_path, capsys):
    assert bench.main(["--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_steps_for_nfe_picks_the_nearest(bench):
    assert bench.steps_for_nfe("heun", 9, 3.0, "native") == 5
    assert bench.steps_for_nfe("heun", 6, 3.0, "native") == 3  # 5 and 7 are equally near: the cheaper
    assert bench.steps_for_nfe("ddpm", 19, 3.0, "native") == 19


def test_report_reproduces_the_committed_table():
    """As the docstring runs it: a script in its study folder, the library from the public API."""
    done = run_script("samplers", "report")
    assert done.returncode == 0, done.stderr
    assert done.stdout == golden("samplers")


def test_each_run_is_the_checkpoints_spec_with_a_json_patch(bench):
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    section = bench.sampler_section("ddim", 7, 2.0, "native")
    run = bench.run_spec(spec, section, 20, 3)
    assert run.sampler.name == "ddim" and run.sampler.steps == 7 and run.sampler.eta == 0.0 and run.seed == 3
    assert (run.eval.num_samples, run.eval.grid_per_class, tuple(run.eval.metrics)) == (20, 0, bench.METRICS)
    assert run.model == spec.model and run.train == spec.train  # nothing else moves
