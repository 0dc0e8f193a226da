"""Closed form: with data ~ N(mu, s^2) the ideal denoiser is affine and the probability-flow
ODE is solvable, so each deterministic sampler's output is mu + c_n (x_T - mu) with a known
exact c; its error must vanish at the sampler's order, and the samples' mean and variance must
match the data. Stochastic samplers are checked on moments."""

from __future__ import annotations

import math

import pytest
import torch

from maskdit.samplers import (
    get_sigmas_ddpm,
    get_sigmas_karras,
    get_sigmas_loglinear,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)
from tests.samplers.toys import GaussianDenoiser

MU, S = 0.3, 0.5
N_SAMPLES = 20_000
DETERMINISTIC = {  # name: (sampler, order)
    "euler": (sample_euler, 1),
    "heun": (sample_heun, 2),
    "ddim": (sample_ddim, 1),
    "dpmpp_2m": (sample_dpmpp_2m, 2),
}


def _start(sigma_0: float, z: torch.Tensor) -> torch.Tensor:
    """x_T drawn from the exact marginal at sigma_0, N(mu, s^2 + sigma_0^2)."""
    return MU + math.sqrt(S**2 + sigma_0**2) * z


def _relative_error(sampler, sigmas) -> float:
    """|c_n / c - 1|: the sampler's contraction factor against the exact flow's."""
    model = GaussianDenoiser(MU, S)
    x_T = _start(float(sigmas[0]), torch.ones(1, 1, dtype=torch.float64))
    got = sampler(model, x_T, sigmas)
    exact = model.exact_flow(x_T, float(sigmas[0]))
    return abs(float((got - MU) / (exact - MU)) - 1.0)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
@pytest.mark.parametrize("schedule", [get_sigmas_karras, get_sigmas_loglinear], ids=["karras", "loglinear"])
def test_deterministic_error_shrinks_at_the_samplers_order(name, schedule):
    sampler, order = DETERMINISTIC[name]
    coarse, fine = _relative_error(sampler, schedule(50)), _relative_error(sampler, schedule(100))
    ratio = coarse / fine  # doubling the steps divides the error by ~2^order
    assert 2**order * 0.85 < ratio < 2**order * 1.25, (coarse, fine, ratio)
    assert fine < (0.03 if order == 1 else 2e-3)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_samples_match_data_moments(name):
    sampler, order = DETERMINISTIC[name]
    sigmas = get_sigmas_karras(400 if order == 1 else 100)
    z = torch.randn(N_SAMPLES, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sampler(GaussianDenoiser(MU, S), _start(float(sigmas[0]), z), sigmas)
    exact = MU + S * z  # the exact flow maps the marginal's draw to this
    # sampler error is the scalar c_n / c - 1: < 1% at these step counts (see the order test)
    assert (out - exact).abs().max() < 0.01 * (exact - MU).abs().max() + 1e-12
    # against the data distribution: 5 standard errors of the mean / std, plus the 1% above
    se_mean, se_std = S / math.sqrt(N_SAMPLES), S / math.sqrt(2 * N_SAMPLES)
    assert abs(out.mean().item() - MU) < 5 * se_mean + 0.01 * S
    assert abs(out.std().item() - S) < 5 * se_std + 0.01 * S


@pytest.mark.parametrize(
    "name, run",
    [
        ("ddpm-1000", lambda m, z, g: sample_ddpm(m, _start(float(get_sigmas_ddpm(1000)[0]), z), get_sigmas_ddpm(1000),
                                                 generator=g)),
        ("ddim-eta1-1000", lambda m, z, g: sample_ddim(m, _start(float(get_sigmas_ddpm(1000)[0]), z),
                                                      get_sigmas_ddpm(1000), generator=g, eta=1.0)),
        ("heun-churn-100", lambda m, z, g: sample_heun(m, _start(80.0, z), get_sigmas_karras(100), generator=g,
                                                      s_churn=40.0, s_tmin=0.05, s_tmax=50.0)),
    ],
)
def test_stochastic_samples_match_data_moments(name, run):
    z = torch.randn(N_SAMPLES, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = run(GaussianDenoiser(MU, S), z, torch.Generator().manual_seed(1))
    # 5 standard errors, plus 1.5% of s for the discretisation bias (ancestral steps with a point
    # estimate of x0 lose O(1 / steps) of the variance: ~0.6% at 1000 DDPM steps)
    se_mean, se_std = S / math.sqrt(N_SAMPLES), S / math.sqrt(2 * N_SAMPLES)
    assert abs(out.mean().item() - MU) < 5 * se_mean + 0.015 * S
    assert abs(out.std().item() - S) < 5 * se_std + 0.015 * S


def test_ddpm_equals_ddim_with_eta_one():
    """The DDPM posterior step and DDIM at eta = 1 are the same update (Song et al. 2021, sec. 4.1)."""
    sigmas = get_sigmas_ddpm(50)
    x_T = _start(float(sigmas[0]), torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    a = sample_ddpm(GaussianDenoiser(MU, S), x_T, sigmas, generator=torch.Generator().manual_seed(1))
    b = sample_ddim(GaussianDenoiser(MU, S), x_T, sigmas, generator=torch.Generator().manual_seed(1), eta=1.0)
    assert (a - b).abs().max() < 1e-12


def test_ddim_eta_zero_equals_euler():
    sigmas = get_sigmas_karras(12)
    x_T = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = sample_ddim(GaussianDenoiser(MU, S), x_T, sigmas)
    b = sample_euler(GaussianDenoiser(MU, S), x_T, sigmas)
    assert (a - b).abs().max() < 1e-12
