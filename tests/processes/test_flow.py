"""The linear interpolant's maps to EDM's sigma space, in both time conventions, and the flow
time distributions."""

from __future__ import annotations

import math

import pytest
import torch

from maskdit.losses.specs import LogitNormalTimeNoiseSpec, LossesSpec, UniformTimeNoiseSpec
from maskdit.processes.flow import has_velocity
from maskdit.processes import (
    LogitNormalTimeNoise,
    LogNormalNoise,
    UniformTimeNoise,
    interpolate,
    scale,
    sigma_to_t,
    t_to_sigma,
    time_shift,
    v_loss_weight,
    v_to_x0,
    velocity,
    x0_to_v,
)

F64 = torch.float64
INF = math.inf


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _times(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Times strictly inside (0, 1), with both ends' neighbourhoods included."""
    inner = torch.rand(n, generator=_gen(seed), dtype=F64)
    return torch.cat([inner, torch.tensor([1e-12, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-12], dtype=F64)])


def _as_repa(t: torch.Tensor, convention: str) -> torch.Tensor:
    return t if convention == "repa" else 1 - t


# --- the maps ------------------------------------------------------------------------------------------

def test_maps_agree_across_conventions():
    t = torch.arange(1, 1024, dtype=F64) / 1024  # dyadic: 1 - t is exact, so both sides see one time
    assert torch.allclose(t_to_sigma(t, "sit"), t_to_sigma(1 - t, "repa"), rtol=1e-15, atol=0)
    sigma = t_to_sigma(t, "repa")
    assert torch.allclose(sigma_to_t(sigma, "sit"), 1 - sigma_to_t(sigma, "repa"), rtol=0, atol=1e-15)
    assert torch.allclose(scale(t, "sit"), scale(1 - t, "repa"), rtol=0, atol=1e-15)
    assert torch.allclose(t_to_sigma(torch.tensor([0.25, 0.5, 0.75], dtype=F64)),
                          torch.tensor([1 / 3, 1.0, 3.0], dtype=F64), rtol=1e-15)
    # SiT's own map keeps the precision 1 - t would lose next to its noise end
    assert t_to_sigma(torch.tensor([1e-12], dtype=F64), "sit").item() == pytest.approx(1e12 - 1, rel=1e-15)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_round_trip_t_sigma_t_in_float64(convention):
    t = _times()
    back = sigma_to_t(t_to_sigma(t, convention), convention)
    assert back.dtype == F64
    assert torch.allclose(back, t, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_ends_are_exact_and_never_nan(convention):
    noise, data = (1.0, 0.0) if convention == "repa" else (0.0, 1.0)
    ends = torch.tensor([noise, data], dtype=F64)
    assert t_to_sigma(ends, convention).tolist() == [INF, 0.0]
    assert sigma_to_t(torch.tensor([INF, 0.0], dtype=F64), convention).tolist() == [noise, data]
    assert scale(ends, convention).tolist() == [0.0, 1.0]
    assert v_loss_weight(torch.tensor([INF, 0.0])).tolist() == [1.0, INF]
    # float input works and gives float64
    assert t_to_sigma(noise, convention).item() == INF
    assert sigma_to_t(INF, convention).item() == noise


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_interpolant_is_scale_times_x_sigma(convention):
    x, eps = torch.randn(2, 6, 3, 4, 4, generator=_gen(1), dtype=F64)
    t = torch.rand(6, generator=_gen(2), dtype=F64)
    t[0] = 0.0 if convention == "sit" else 1.0  # pure noise: x_t = eps exactly
    t[1] = 1.0 if convention == "sit" else 0.0  # data
    x_t = interpolate(x, eps, t, convention)
    sigma = t_to_sigma(t, convention).view(-1, 1, 1, 1)
    c = scale(t, convention).view(-1, 1, 1, 1)
    assert torch.equal(x_t[0], eps[0]) and torch.equal(x_t[1], x[1])
    assert torch.allclose(x_t[1:], (c * (x + sigma * eps))[1:], rtol=1e-12, atol=1e-12)
    # the velocity target is dx_t/dt
    dt = 1e-6
    inner = torch.full((6,), 0.3, dtype=F64)
    slope = (interpolate(x, eps, inner + dt, convention) - interpolate(x, eps, inner, convention)) / dt
    assert torch.allclose(slope, velocity(x, eps, convention), atol=1e-8)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_v_and_x0_convert_exactly_including_pure_noise(convention):
    x, eps = torch.randn(2, 5, 2, 3, 3, generator=_gen(3), dtype=F64)
    t = torch.rand(5, generator=_gen(4), dtype=F64)
    t[0] = 1.0 if convention == "repa" else 0.0
    x_t = interpolate(x, eps, t, convention)
    v = velocity(x, eps, convention)
    assert torch.allclose(v_to_x0(x_t, v, t, convention), x, atol=1e-12)
    assert torch.allclose(x0_to_v(x_t, x, t, convention), v, atol=1e-10)
    x0_hat = torch.randn(5, 2, 3, 3, generator=_gen(5), dtype=F64)
    assert torch.allclose(v_to_x0(x_t, x0_to_v(x_t, x0_hat, t, convention), t, convention), x0_hat, atol=1e-10)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_v_mse_is_x0_loss_weighted_by_lambda(convention):
    x, eps, x0_hat = torch.randn(3, 8, 2, 4, 4, generator=_gen(6), dtype=F64)
    t = torch.rand(8, generator=_gen(7), dtype=F64) * 0.98 + 0.01
    x_t = interpolate(x, eps, t, convention)
    v_hat = x0_to_v(x_t, x0_hat, t, convention)
    v_mse = ((v_hat - velocity(x, eps, convention)) ** 2).mean(dim=(1, 2, 3))
    x0_mse = ((x0_hat - x) ** 2).mean(dim=(1, 2, 3))
    sigma = t_to_sigma(t, convention)
    assert torch.allclose(v_mse, v_loss_weight(sigma) * x0_mse, rtol=1e-10)
    assert torch.allclose(v_loss_weight(sigma), ((1 + sigma) / sigma) ** 2, rtol=1e-14)


def _x0_predictor(x_sigma: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Some nonlinear denoiser in sigma space, finite at sigma = inf through x_t."""
    c = 1 / (1 + sigma).view(-1, 1, 1, 1)
    return torch.tanh(c * x_sigma) * 0.7 + 0.1 * c


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_euler_in_t_equals_euler_in_sigma(convention):
    x_sigma = torch.randn(4, 2, 3, 3, generator=_gen(8), dtype=F64) * 3
    s_now = torch.tensor([0.9, 0.6, 0.3, 0.05], dtype=F64)  # noise-end times
    s_next = torch.tensor([0.7, 0.2, 0.29, 0.0], dtype=F64)
    t_now, t_next = _as_repa(s_now, convention), _as_repa(s_next, convention)
    sigma, sigma_next = t_to_sigma(t_now, convention), t_to_sigma(t_next, convention)
    x0 = _x0_predictor(x_sigma, sigma)

    x_t = scale(t_now, convention).view(-1, 1, 1, 1) * x_sigma
    v = x0_to_v(x_t, x0, t_now, convention)
    x_t_next = x_t + (t_next - t_now).view(-1, 1, 1, 1) * v
    by_flow = x_t_next / scale(t_next, convention).view(-1, 1, 1, 1)

    ds = (sigma_next - sigma).view(-1, 1, 1, 1)
    by_sigma = x_sigma + ds * (x_sigma - x0) / sigma.view(-1, 1, 1, 1)
    assert torch.allclose(by_flow, by_sigma, rtol=1e-12, atol=1e-12)
    assert torch.allclose(by_flow[3], x0[3], atol=1e-12)  # a step to the data end lands on x0


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_euler_from_pure_noise_is_ddim(convention):
    eps, x0 = torch.randn(2, 3, 2, 4, 4, generator=_gen(9), dtype=F64)
    t_noise = torch.full((3,), 1.0 if convention == "repa" else 0.0, dtype=F64)
    t_next = _as_repa(torch.tensor([0.8, 0.5, 0.1], dtype=F64), convention)
    v = x0_to_v(eps, x0, t_noise, convention)  # x_t = eps at pure noise
    x_t_next = eps + (t_next - t_noise).view(-1, 1, 1, 1) * v
    sigma_next = t_to_sigma(t_next, convention).view(-1, 1, 1, 1)
    x_sigma_next = x_t_next / scale(t_next, convention).view(-1, 1, 1, 1)
    assert torch.isfinite(v).all()
    assert torch.allclose(x_sigma_next, x0 + sigma_next * eps, rtol=1e-12, atol=1e-12)


# --- the time shift ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0.1, 0.25, 1.0, 3.0, math.sqrt(768 * 256 / 4096)])  # 0.1: 1 + (a - 1) is not a
def test_shift_keeps_ends_is_monotone_and_scales_sigma(shift):
    t = torch.linspace(0, 1, 1001, dtype=F64)
    shifted = time_shift(t, shift)
    assert shifted[0].item() == 0.0 and shifted[-1].item() == 1.0
    assert bool((shifted.diff() > 0).all())
    inner = t[1:-1]
    assert torch.allclose(t_to_sigma(time_shift(inner, shift)), shift * t_to_sigma(inner), rtol=1e-12)
    assert torch.allclose(time_shift(inner, shift), shift * inner / (1 + (shift - 1) * inner), rtol=1e-14)
    sit = time_shift(t, shift, "sit")
    assert sit[0].item() == 0.0 and sit[-1].item() == 1.0
    assert torch.allclose(sit, 1 - time_shift(1 - t, shift), atol=1e-15)
    if shift > 1:
        assert bool((shifted[1:-1] > inner).all())  # towards noise


# --- the time distributions --------------------------------------------------------------------------------

@pytest.mark.parametrize(("m", "s"), [(0.0, 1.0), (-1.2, 1.2), (0.5, 0.3)])
def test_logit_normal_is_edm_lognormal(m, s):
    flow = LogitNormalTimeNoise(m, s)(4096, generator=_gen(10))
    edm = LogNormalNoise(m, s)(4096, generator=_gen(10))
    assert flow.dtype == torch.float32
    assert torch.allclose(flow, edm, rtol=1e-6, atol=0)
    # and it is logit-normal on t: logit(t) = m + s n for the generator's own n
    normal = torch.randn(4096, generator=_gen(10), dtype=torch.float32).double()
    t = sigma_to_t(flow.double())
    assert torch.allclose(torch.logit(t), m + s * normal, atol=1e-5)


def test_logit_normal_shift_is_the_shifted_time():
    shift = 3.0
    sigma = LogitNormalTimeNoise(0.0, 1.0, shift)(2048, generator=_gen(11), dtype=F64)
    t = torch.sigmoid(torch.randn(2048, generator=_gen(11), dtype=F64))
    assert torch.allclose(sigma, t_to_sigma(time_shift(t, shift)), rtol=1e-10)


def test_uniform_t_avoids_the_ends_and_is_uniform():
    t_eps = 1e-3
    sigma = UniformTimeNoise(t_eps)(20000, generator=_gen(12), dtype=F64)
    assert bool(torch.isfinite(sigma).all()) and bool((sigma > 0).all())
    t = sigma_to_t(sigma)
    assert t.min().item() >= t_eps and t.max().item() <= 1 - t_eps
    assert abs(t.mean().item() - 0.5) < 0.01 and abs(t.var().item() - (1 - 2 * t_eps) ** 2 / 12) < 0.005
    # the default float32 sigmas stay finite and positive even at the ends of the range
    ends = UniformTimeNoise(1e-6)
    assert torch.isfinite(t_to_sigma(torch.tensor([1 - 1e-6], dtype=F64)).float()).all()
    assert (ends(10000, generator=_gen(13)) > 0).all()


def test_draws_come_from_the_generator():
    for dist in (UniformTimeNoise(), LogitNormalTimeNoise(0.3, 0.8, 2.0)):
        a, b = dist(16, generator=_gen(14)), dist(16, generator=_gen(14))
        assert torch.equal(a, b)
        assert not torch.equal(a, dist(16, generator=_gen(15)))
        assert a.shape == (16,)


def test_specs_build_the_distributions():
    noise = LossesSpec.model_validate({"noise": {"name": "uniform_t", "t_eps": 1e-4}}).noise
    assert isinstance(noise, UniformTimeNoiseSpec) and noise.build().t_eps == 1e-4
    noise = LossesSpec.model_validate({"noise": {"name": "logit_normal_t", "m": 0.5, "s": 0.7, "shift": 2}}).noise
    built = noise.build()
    assert isinstance(noise, LogitNormalTimeNoiseSpec) and (built.m, built.s, built.shift) == (0.5, 0.7, 2.0)


@pytest.mark.parametrize("bad", [
    {"name": "uniform_t", "t_eps": 0.0},
    {"name": "uniform_t", "t_eps": 0.5},
    {"name": "logit_normal_t", "s": 0.0},
    {"name": "logit_normal_t", "m": float("nan")},
    {"name": "logit_normal_t", "shift": 0.0},
    {"name": "logit_normal_t", "shift": float("inf")},
    {"name": "logit_normal_t", "mean": 0.0},
])
def test_specs_refuse_bad_fields(bad):
    with pytest.raises(ValueError):
        LossesSpec.model_validate({"noise": bad})


# --- bad inputs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda: t_to_sigma(torch.tensor([0.5, 1.5])), r"t must lie in \[0, 1\], got \[1.5\]"),
    (lambda: t_to_sigma(torch.tensor([float("nan")])), r"t must lie in \[0, 1\]"),
    (lambda: t_to_sigma(-0.1), r"t must lie in \[0, 1\]"),
    (lambda: t_to_sigma(torch.tensor([1])), "t must be a floating-point tensor"),
    (lambda: t_to_sigma("0.5"), "t must be a number or a float tensor"),
    (lambda: t_to_sigma(0.5, "edm"), r"convention must be one of \['sit', 'repa'\], got 'edm'"),
    (lambda: sigma_to_t(torch.tensor([-1.0])), r"sigma must be >= 0 \(inf allowed\), got \[-1.0\]"),
    (lambda: sigma_to_t(torch.tensor([float("nan")])), "sigma must be >= 0"),
    (lambda: v_loss_weight(-INF), "sigma must be >= 0"),
    (lambda: time_shift(0.5, 0.0), "shift must be a finite number > 0"),
    (lambda: time_shift(0.5, INF), "shift must be a finite number > 0"),
    (lambda: time_shift(0.5, True), "shift must be a finite number > 0"),
    (lambda: interpolate(torch.zeros(2, 3), torch.zeros(2, 4), 0.5), "x and eps must have one shape"),
    (lambda: interpolate(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3) / 2), r"one value per sample \[2\]"),
    (lambda: v_to_x0(torch.zeros(2, 3), torch.zeros(3, 3), 0.5), "x_t and v must have one shape"),
    (lambda: x0_to_v(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.5, 0.0])),
     "data end .*leaves the velocity undetermined"),
    (lambda: x0_to_v(torch.zeros(2, 3), torch.zeros(2, 3), 1.0, "sit"), "data end"),
    (lambda: UniformTimeNoise(0.0), r"t_eps must be a number in \(0, 0.5\)"),
    (lambda: LogitNormalTimeNoise(0.0, -1.0), "finite s > 0"),
    (lambda: LogitNormalTimeNoise(0.0, 1.0, -2.0), "shift must be finite and > 0"),
    (lambda: UniformTimeNoise()(0), "batch_size must be a positive int"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_which_predictions_have_a_velocity_at_the_ends():
    assert [has_velocity("v", s) for s in (0.0, 1.0, math.inf)] == [True, True, True]
    assert [has_velocity("x0", s) for s in (0.0, 1.0, math.inf)] == [False, True, True]
    assert [has_velocity("eps", s) for s in (0.0, 1.0, math.inf)] == [True, True, False]
