"""benchmarks/posthoc_ema.py: the weight profiles against the EMA they rebuild, and the script on tiny snapshots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict
from maskdit.core import build_denoiser
from maskdit.io.checkpoint import save_checkpoint
from maskdit.train.ema import EMA
from tests.benchmarks.scripts import TINY_MODEL, load_script

TINY = TINY_MODEL + ["sampler.steps=3", "train.ema.decay=0.9", "train.ema.warmup=true"]


@pytest.fixture(scope="module")
def bench():
    return load_script("posthoc_ema")


def test_gamma_inverts_sigma_rel(bench):
    for target in (0.01, 0.05, 0.083, 0.15, 0.2886):
        assert bench.sigma_rel(bench.gamma_for(target)) == pytest.approx(target, rel=1e-9)
    assert bench.gamma_for(0.083) == pytest.approx(9.0, abs=0.01)  # EMA warm-up's (1+n)/(10+n) ~ t^9
    with pytest.raises(ValueError, match="outside"):
        bench.gamma_for(0.3)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_update_weights_match_the_ema_class(bench, warmup):
    updates = 40
    thetas = torch.randn(updates + 1, 3, dtype=torch.float64)  # theta_0 (initial) .. theta_40
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(thetas[0])
    ema = EMA(model, 0.95, warmup=warmup)
    for n in range(1, updates + 1):
        with torch.no_grad():
            model.weight.copy_(thetas[n])
        ema.update(model)
    weights, initial = bench.ema_update_weights(updates, 0.95, warmup)
    rebuilt = initial * thetas[0] + (torch.from_numpy(weights)[:, None] * thetas[1:]).sum(0)
    assert torch.allclose(rebuilt, ema.shadow["weight"].double().flatten(), atol=1e-6)
    assert weights.sum() + initial == pytest.approx(1.0)


def test_snapshot_weights_are_exact_for_weights_on_a_line(bench):
    updates, steps = 60, [10, 20, 35, 50, 60]
    per_update = bench.power_update_weights(updates, 2.0)
    theta = lambda n: 3.0 + 0.5 * np.asarray(n, dtype=np.float64)  # noqa: E731  (weights moving linearly)
    exact = float((per_update * theta(np.arange(1, updates + 1))).sum())
    weights, lost = bench.snapshot_weights(per_update, steps)
    assert weights.sum() == pytest.approx(1.0)
    assert lost == pytest.approx(per_update[:9].sum())  # updates 1..9 come before the first snapshot
    # updates 1..10 sit on the first snapshot (the line starts there); the rest are exact
    head = float((per_update[:10] * (theta(10) - theta(np.arange(1, 11)))).sum())
    assert float((weights * theta(steps)).sum()) == pytest.approx(exact + head, rel=1e-12)
    every, none_lost = bench.snapshot_weights(per_update, list(range(1, updates + 1)))
    assert np.allclose(every, per_update) and none_lost == 0.0


@pytest.fixture()
def run(tmp_path):
    """Four snapshots (steps 2, 4, 6, 8) of a tiny model whose weights drift, and its real EMA."""
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    generator = torch.Generator().manual_seed(0)
    model = build_denoiser(spec.model)
    ema = EMA(model, 0.9, warmup=True)
    for step in range(1, 9):
        with torch.no_grad():
            for value in model.parameters():
                value.add_(0.01 * torch.randn(value.shape, generator=generator))
        ema.update(model)
        if step % 2 == 0:
            save_checkpoint(tmp_path / "run" / "checkpoints", step,
                            {"model": model.state_dict(), "ema": ema.state_dict()},
                            {"step": step, "spec": spec.model_dump(mode="json")}, keep=10)
    return tmp_path / "run"


def test_rows_resume_and_the_rebuilt_ema(bench, run, tmp_path, capsys):
    out = tmp_path / "posthoc.json"
    args = [str(run), "--sigma-rel", "0.1", "--ema-decay", "0.5", "--window", "4", "--cfg", "2",
            "--interval", "none", "0.1,8", "--num-samples", "12", "--out", str(out), "--threads", "1"]
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    profiles = ["ema", "ema-rebuilt", "raw", "power-0.1", "ema-0.5", "window-4"]
    assert [r["profile"] for r in rows] == [p for p in profiles for _ in range(2)]
    assert [r["interval"] for r in rows[:2]] == [None, [0.1, 8.0]]
    assert all(r["step"] == 8 and r["snapshots"] == 4 and math.isfinite(r["fid"]) for r in rows)
    assert rows[0]["fid"] != rows[4]["fid"]  # the EMA and the raw weights are different models
    assert "| profile | cfg |" in capsys.readouterr().out
    assert bench.main(args) == 0  # all rows are there: nothing is sampled again
    assert json.loads(out.read_text())["rows"] == rows
    assert "FID" not in capsys.readouterr().out.split("| profile")[0]


def test_only_scores_the_named_profiles(bench, run, tmp_path, capsys):
    out = tmp_path / "posthoc.json"
    base = [str(run), "--ema-decay", "0.5", "--interval", "none", "--num-samples", "12", "--out", str(out),
            "--threads", "1"]
    assert bench.main(base + ["--only", "ema-0.5", "raw", "--cfg", "2", "3"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["profile"], r["cfg"]) for r in rows) == [("ema-0.5", 2.0), ("ema-0.5", 3.0), ("raw", 2.0), ("raw", 3.0)]
    assert bench.main(base + ["--only", "ema-0.7"]) == 2
    assert "no such profile" in capsys.readouterr().err


def test_average_of_dense_snapshots_is_the_real_ema(bench, tmp_path):
    spec = ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), TINY))
    generator = torch.Generator().manual_seed(1)
    model = build_denoiser(spec.model)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    ema = EMA(model, 0.9, warmup=True)
    paths = []
    for step in range(1, 7):
        with torch.no_grad():
            for value in model.parameters():
                value.add_(0.05 * torch.randn(value.shape, generator=generator))
        ema.update(model)
        paths.append(save_checkpoint(tmp_path / "c", step, {"model": model.state_dict()}, {"step": step}, keep=10))
    per_update, initial_share = bench.ema_update_weights(6, 0.9, True)
    weights, lost = bench.snapshot_weights(per_update, list(range(1, 7)))
    assert lost == 0.0 and np.allclose(weights, per_update)
    averaged = bench.average(paths, weights)
    for name, value in ema.state_dict().items():  # the EMA = its initial share of theta_0 + the snapshots' average
        rebuilt = averaged[name].double() + initial_share * initial[name].double()
        assert torch.allclose(rebuilt, value.double(), atol=1e-6), name


def test_window_weights(bench):
    assert np.allclose(bench.window_update_weights(5, 2), [0, 0, 0, 0.5, 0.5])
    assert np.allclose(bench.window_update_weights(3, 10), [1 / 3] * 3)


def test_bad_input_exits_2(bench, tmp_path, capsys):
    assert bench.main([str(tmp_path / "missing")]) == 2
    assert "0 checkpoint(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path), "--sigma-rel", "0.5"])
    assert "--sigma-rel" in capsys.readouterr().err
    for step in (1, 2):  # checkpoints without a spec (not a training run's)
        save_checkpoint(tmp_path / "bare" / "checkpoints", step, {"model": {"w": torch.zeros(1)}}, {"step": step}, keep=5)
    assert bench.main([str(tmp_path / "bare")]) == 2
    assert "no valid experiment spec" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path), "--window", "0"])
    assert "--window" in capsys.readouterr().err
