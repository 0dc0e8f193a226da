"""Closed form for the flow samplers: with data ~ N(mu, s^2) the ideal velocity is known at every
noise-end time s (pure noise included), and the probability-flow ODE carries x_t(1) = z to
mu + s z exactly. Each flow sampler must get there at its order (or tolerance), the stochastic one
in distribution; Euler in t must be DDIM and EDM's Euler in sigma on the same grid."""

from __future__ import annotations

import math

import pytest
import torch

from maskdit.samplers import (
    build_sampler,
    get_sigmas_karras,
    get_sigmas_uniform_t,
    sample_ddim,
    sample_dopri5,
    sample_euler,
    sample_euler_maruyama,
    sample_flow_euler,
    sample_flow_heun,
)
from tests.samplers.toys import GaussianDenoiser, eps_denoiser

MU, S = 0.3, 0.5
Z = torch.tensor([-2.0, -0.5, 1.0, 2.5], dtype=torch.float64).view(4, 1, 1, 1)  # [B, C, H, W]


class SigmaOnly:
    """The ideal Gaussian denoiser without its velocity: the flow samplers must take EDM's route."""

    def __init__(self) -> None:
        self.model = GaussianDenoiser(MU, S)

    def __call__(self, x, sigma, *, labels=None, mask=None):
        return self.model(x, sigma)


def _marginal(s: float, z: torch.Tensor) -> torch.Tensor:
    """x_t at noise-end time s whose standardised value is z: (1 - s) mu + sqrt((1 - s)^2 s_d^2 + s^2) z."""
    return (1 - s) * MU + math.sqrt((1 - s) ** 2 * S**2 + s**2) * z


def _error(sampler, sigmas, model=None, **options) -> float:
    s0 = float(sigmas[0] / (1 + sigmas[0])) if math.isfinite(float(sigmas[0])) else 1.0
    out = sampler(model or GaussianDenoiser(MU, S), _marginal(s0, Z), sigmas, **options)
    return float((out - (MU + S * Z)).abs().max())


@pytest.mark.parametrize("sampler, order", [(sample_flow_euler, 1), (sample_flow_heun, 2)], ids=["euler", "heun"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_ode_from_pure_noise_converges_at_its_order(sampler, order, shift):
    coarse = _error(sampler, get_sigmas_uniform_t(80, shift=shift))
    fine = _error(sampler, get_sigmas_uniform_t(160, shift=shift))
    ratio = coarse / fine  # doubling the steps divides the error by ~2^order
    assert 2**order * 0.8 < ratio < 2**order * 1.25, (coarse, fine, ratio)
    assert fine < (0.03 if order == 1 else 1e-4)


def test_dopri5_meets_its_tolerance():
    sigmas = get_sigmas_uniform_t(10)
    assert _error(sample_dopri5, sigmas) < 5e-3  # SiT's tolerances, atol 1e-6 and rtol 1e-3
    assert _error(sample_dopri5, sigmas, atol=1e-10, rtol=1e-10) < 1e-8


@pytest.mark.parametrize("sampler", [sample_flow_euler, sample_flow_heun, sample_dopri5],
                         ids=["euler", "heun", "dopri5"])
def test_a_sigma_space_model_runs_the_flow_ode_below_pure_noise(sampler):
    """EDM's route (v = (x_t - D) / s): the grid starts below 1; heun and dopri5 finish with an
    Euler step at the data end, where such a model has no velocity."""
    sigmas = get_sigmas_uniform_t(60, t_max=0.995)
    assert _error(sampler, sigmas, SigmaOnly()) < (0.05 if sampler is sample_flow_euler else 5e-3)


SDE_CASES = [  # (diffusion form, last step, schedule)
    ("sigma", "mean", {"name": "uniform_t"}),  # SiT's defaults
    ("sigma", None, {"name": "uniform_t"}),
    ("linear", "tweedie", {"name": "uniform_t"}),
    ("constant", "euler", {"name": "uniform_t"}),
    ("decreasing", "mean", {"name": "uniform_t"}),
    ("increasing_decreasing", "mean", {"name": "uniform_t"}),
    ("sbdm", "mean", {"name": "uniform_t", "t_max": 0.999}),
]


@pytest.mark.parametrize("form, last, schedule", SDE_CASES)
def test_euler_maruyama_carries_noise_to_the_data_distribution(form, last, schedule):
    n = 20_000
    noise = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = build_sampler({"name": "euler_maruyama", "steps": 200, "diffusion_form": form, "last_step": last,
                             "schedule": schedule})
    out = sampler(GaussianDenoiser(MU, S), noise, generator=torch.Generator().manual_seed(1))
    # the SDE forgets its start: unlike the ODE it is no function of the noise (correlation well below 1)
    assert float(torch.corrcoef(torch.stack([out.flatten(), noise.flatten()]))[0, 1]) < 0.9
    assert abs(float(out.mean()) - MU) < 0.02 and abs(float(out.std()) - S) < 0.02, (out.mean(), out.std())


def test_euler_maruyama_with_an_edm_model_matches_moments():
    n = 20_000
    noise = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigmas = get_sigmas_uniform_t(150, t_max=0.995)
    x = _marginal(0.995, noise)
    out = sample_euler_maruyama(SigmaOnly(), x, sigmas, generator=torch.Generator().manual_seed(3))
    assert abs(float(out.mean()) - MU) < 0.02 and abs(float(out.std()) - S) < 0.02, (out.mean(), out.std())


def _trajectories(model, sigmas: torch.Tensor, x_sigma: torch.Tensor):
    """Each sampler's states after every step, all in sigma space (x_sigma = x_t (1 + sigma))."""
    flow, edm, ddim = [], [], []
    sample_flow_euler(model, x_sigma / (1 + sigmas[0]), sigmas,
                      callback=lambda info: flow.append(info["x"] * (1 + info["sigma_next"])))
    sample_euler(model, x_sigma, sigmas, callback=lambda info: edm.append(info["x"]))
    sample_ddim(model, x_sigma, sigmas, callback=lambda info: ddim.append(info["x"]))
    return torch.stack(flow), torch.stack(edm), torch.stack(ddim)


@pytest.mark.parametrize("grid", ["uniform_t", "karras"])
@pytest.mark.parametrize("model", ["nonlinear EDM", "Gaussian flow model"])
def test_euler_in_t_is_ddim_is_euler_in_sigma(grid, model):
    sigmas = get_sigmas_uniform_t(25, t_max=0.98, shift=2.0) if grid == "uniform_t" else get_sigmas_karras(25)
    denoiser = eps_denoiser if model == "nonlinear EDM" else GaussianDenoiser(MU, S)  # the latter: via its velocity
    x_sigma = float(sigmas[0]) * torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0),
                                             dtype=torch.float64)
    flow, edm, ddim = _trajectories(denoiser, sigmas, x_sigma)
    scale = float(edm.abs().max())
    assert float((flow - edm).abs().max()) <= 1e-12 * max(scale, float(sigmas[0]))
    assert float((ddim - edm).abs().max()) <= 1e-12 * max(scale, float(sigmas[0]))
    assert float(flow[-1].abs().max()) > 0.1  # a real result, not a collapse to 0
