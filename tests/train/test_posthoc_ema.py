"""maskdit.train.posthoc_ema: profiles, snapshot weights, and averages rebuilt from a run's snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskdit.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskdit.train import (
    SIGMA_REL_MAX,
    EMAProfile,
    PowerProfile,
    WindowProfile,
    average_snapshots,
    gamma_for,
    plan_average,
    posthoc_ema,
    read_snapshots,
    sigma_rel_of,
    snapshot_weights,
)
from maskdit.train.ema import EMA
from tests.train.posthoc_run import STEPS, train_tiny_run


@pytest.mark.parametrize("sigma_rel", [0.005, 0.02, 0.05, 0.083, 0.15, 0.25, SIGMA_REL_MAX])
def test_gamma_inverts_sigma_rel(sigma_rel):
    assert sigma_rel_of(gamma_for(sigma_rel)) == pytest.approx(sigma_rel, rel=1e-9)


def test_known_exponents():
    assert gamma_for(SIGMA_REL_MAX) == 0.0  # the uniform average of the whole run
    assert gamma_for(0.083) == pytest.approx(9.0, abs=0.01)  # EMA warm-up's (1 + n) / (10 + n) ~ t^9
    # EDM2 Sec. 3.1: sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94
    assert gamma_for(0.05) == pytest.approx(16.97, abs=0.005) and gamma_for(0.10) == pytest.approx(6.94, abs=0.005)


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.3, math.nan])
def test_sigma_rel_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="outside"):
        gamma_for(bad)
    with pytest.raises(ValueError, match="outside"):
        PowerProfile(bad)


@pytest.mark.parametrize("updates", [1, 7, 1000])
@pytest.mark.parametrize("profile", [PowerProfile(0.01), PowerProfile(0.2), EMAProfile(0.9, warmup=True),
                                     EMAProfile(0.5), WindowProfile(3), WindowProfile(5000)])
def test_profile_weights_sum_to_one(profile, updates):
    weights = profile.position_weights(updates)
    assert weights.shape == (updates + 1,) and weights.min() >= 0
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_power_profile_grows_as_t_to_the_gamma_with_the_width_of_eq_3():
    for sigma_rel in (0.03, 0.1, 0.25):
        weights = PowerProfile(sigma_rel).position_weights(2000)[1:]
        assert np.all(np.diff(weights) > 0)
        t = (np.arange(1, 2001) - 0.5) / 2000  # each update at the middle of its interval, the run's end at 1
        mean = float((weights * t).sum())
        assert mean == pytest.approx((gamma_for(sigma_rel) + 1) / (gamma_for(sigma_rel) + 2), rel=1e-4)
        assert math.sqrt(float((weights * (t - mean) ** 2).sum())) == pytest.approx(sigma_rel, rel=1e-3)


def test_window_weights():
    assert np.allclose(WindowProfile(2).position_weights(5), [0, 0, 0, 0, 0.5, 0.5])
    assert np.allclose(WindowProfile(10).position_weights(3), [0, 1 / 3, 1 / 3, 1 / 3])  # never the initial weights


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_profile_matches_the_ema_class(warmup):
    updates = 40
    thetas = torch.randn(updates + 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(thetas[0])
    ema = EMA(model, 0.95, warmup=warmup)
    for n in range(1, updates + 1):
        with torch.no_grad():
            model.weight.copy_(thetas[n])
        ema.update(model)
    weights = torch.from_numpy(EMAProfile(0.95, warmup=warmup).position_weights(updates))
    assert torch.allclose((weights[:, None] * thetas).sum(0), ema.shadow["weight"].double().flatten(), atol=1e-6)


def test_snapshot_weights_are_exact_for_weights_on_a_line():
    updates, positions = 60, [10, 20, 35, 50, 60]
    per_position = PowerProfile(0.15).position_weights(updates)
    theta = 3.0 + 0.5 * np.arange(updates + 1)  # weights moving linearly
    weights, lost = snapshot_weights(per_position, positions)
    assert weights.sum() == pytest.approx(1.0) and lost == pytest.approx(per_position[:10].sum())
    # positions 0..10 all sit on the first snapshot (the line cannot reach before it); the rest are exact
    head = float((per_position[:11] * (theta[10] - theta[:11])).sum())
    assert float((weights * theta[positions]).sum()) == pytest.approx(float((per_position * theta).sum()) + head)
    every, none_lost = snapshot_weights(per_position, list(range(updates + 1)))
    assert np.allclose(every, per_position) and none_lost == 0.0


def test_snapshot_positions_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        snapshot_weights(np.ones(5) / 5, [2, 2, 4])
    with pytest.raises(ValueError, match="at least two"):
        snapshot_weights(np.ones(5) / 5, [4])


def save_snapshots(root, steps, tensors_at, *, updates=None):
    """Raw-weight checkpoints at ``steps`` holding ``tensors_at(step)`` (no spec)."""
    for index, step in enumerate(steps):
        state = {"step": step} if updates is None else {"step": step, "ema_updates": updates[index]}
        save_checkpoint(root / "checkpoints", step, {"model": tensors_at(step)}, state, keep=100)
    return root


def test_constant_weights_average_to_themselves(tmp_path):
    fixed = {"net.w": torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), "net.count": torch.arange(3)}
    run = save_snapshots(tmp_path / "run", [1, 5, 9, 20], lambda step: fixed)
    for profile in (PowerProfile(0.1), EMAProfile(0.7), WindowProfile(4)):
        averaged_tensors = average_snapshots(plan_average(read_snapshots(run), profile, max_lost=1.0))
        assert torch.allclose(averaged_tensors["net.w"], fixed["net.w"], rtol=1e-6, atol=0)
        assert torch.equal(averaged_tensors["net.count"], fixed["net.count"])
        assert averaged_tensors["net.w"].dtype == torch.float32


def test_average_is_linear_in_the_snapshots(tmp_path):
    run = save_snapshots(tmp_path / "run", [2, 4, 8], lambda step: {"w": torch.full((2,), float(step))})
    result = posthoc_ema(run, sigma_rel=0.2)
    plan = result.plan
    assert plan.steps == (2, 4, 8) and sum(plan.weights) == pytest.approx(1.0)
    expected = sum(w * s for w, s in zip(plan.weights, plan.steps))
    assert torch.allclose(result.tensors["w"], torch.full((2,), expected, dtype=torch.float32))


def test_update_counts_place_the_snapshots(tmp_path):
    # step 3 was skipped (non-finite): the EMA saw 2 updates at step 3, so snapshot 3 repeats snapshot 2
    run = save_snapshots(tmp_path / "run", [1, 2, 3, 4], lambda step: {"w": torch.zeros(1)}, updates=[1, 2, 2, 3])
    snapshots = read_snapshots(run)
    assert snapshots.steps == (1, 2, 4) and snapshots.updates == (1, 2, 3)
    assert snapshots.spec is None and snapshots.ema is None and snapshots.model is None
    with pytest.raises(ValueError, match="warmup="):
        posthoc_ema(run, decay=0.1)
    rebuilt = posthoc_ema(run, decay=0.1, warmup=False)
    assert rebuilt.plan.profile == "ema-0.1"
    with pytest.raises(ValueError, match="no saved spec"):
        rebuilt.denoiser()


def test_bad_runs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="0 checkpoint"):
        posthoc_ema(tmp_path / "missing", sigma_rel=0.1)
    one = save_snapshots(tmp_path / "one", [5], lambda step: {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="1 checkpoint"):
        posthoc_ema(one, sigma_rel=0.1)
    late = save_snapshots(tmp_path / "late", [90, 100], lambda step: {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="before the first snapshot"):
        posthoc_ema(late, sigma_rel=0.2)  # t^1.83 over 100 updates: 72% of its weight on updates 1..89
    lost = posthoc_ema(late, sigma_rel=0.2, max_lost=0.9).plan.weight_before_first
    assert lost == pytest.approx(0.89 ** (gamma_for(0.2) + 1), rel=1e-9)
    with pytest.raises(ValueError, match="max_lost"):
        posthoc_ema(late, sigma_rel=0.2, max_lost=-0.1)
    for both in ({}, {"sigma_rel": 0.1, "decay": 0.9}):
        with pytest.raises(ValueError, match="exactly one"):
            posthoc_ema(late, **both)


def test_a_corrupt_snapshot_is_named(tmp_path):
    run = save_snapshots(tmp_path / "run", [1, 2, 3], lambda step: {"w": torch.full((64,), float(step))})
    broken = run / "checkpoints" / "step-00000002" / "tensors.safetensors"
    broken.write_bytes(broken.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(CheckpointError, match="step-00000002"):
        posthoc_ema(run, sigma_rel=0.1)


def test_mismatched_snapshots_are_refused(tmp_path):
    run = save_snapshots(tmp_path / "run", [1, 2], lambda step: {"w": torch.zeros(step)})
    with pytest.raises(CheckpointError, match="step-00000002"):
        posthoc_ema(run, sigma_rel=0.1)


@pytest.fixture(scope="module")
def every_step_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("posthoc"))


def test_snapshots_at_every_step_rebuild_the_runs_exact_ema(every_step_run):
    """A real training run (decay 0.9 with warm-up) with a checkpoint at every step: its own EMA
    schedule applied to the snapshots is the EMA the trainer kept, to float32 rounding."""
    snapshots = read_snapshots(every_step_run)
    assert snapshots.steps == tuple(range(1, STEPS + 1)) and snapshots.ema.warmup
    rebuilt = posthoc_ema(every_step_run, decay=snapshots.ema.decay)  # the run's warm-up read from its spec
    # all that is lost is the initial weights' share prod_n (1 + n) / (10 + n) ~ 3e-6, put on step 1
    assert 0 < rebuilt.plan.weight_before_first < 1e-5
    exact = load_checkpoint(snapshots.paths[-1]).tensors["ema"]
    assert set(rebuilt.tensors) >= set(exact)
    for name, value in exact.items():
        assert torch.allclose(rebuilt.tensors[name], value, rtol=1e-5, atol=1e-6), name
    raw = load_checkpoint(snapshots.paths[-1]).tensors["model"]
    assert any(not torch.allclose(raw[name], value, atol=1e-4) for name, value in exact.items())  # the test can fail
