"""Euler-Maruyama against a direct transcription of SiT's SDE sampler semantics (its
``sample_sde`` with a velocity model on the linear path), step for step with pinned noise, for
every diffusion form and last step; and what it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from maskdit.samplers import build_sampler, get_sigmas_uniform_t, sample_euler_maruyama
from tests.samplers.test_flow_peers import ToyFlow, v_repa
from tests.samplers.toys import GaussianDenoiser, ListNoise

SHAPE = (3, 2, 4, 4)
NUM_STEPS = 20  # SiT's num_sampling_steps


def sit_w(form: str, t: torch.Tensor, norm: float) -> torch.Tensor:
    """SiT's ICPlan.compute_diffusion on the linear path, at its time t (t = 1 data)."""
    return {"constant": torch.full_like(t, norm), "sbdm": norm * (1 - t) / t, "sigma": norm * (1 - t),
            "linear": norm * (1 - t), "decreasing": 0.25 * (norm * torch.cos(math.pi * t) + 1) ** 2,
            "increasing_decreasing": norm * torch.sin(math.pi * t) ** 2}[form]


def sit_sde(z, noises, *, form, norm, last, last_size, t0=0.0):
    """SiT's sample_sde, transcribed: t = linspace(t0, t1, N) with t1 = 1 - last_step_size (1 without
    a last step), N - 1 Euler-Maruyama steps of the constant dt = t[1] - t[0], then the last step
    at t1. v_sit = -v_repa(x, 1 - t); score = (t v - x) / (1 - t)."""
    t1 = 1 - last_size if last is not None else 1.0
    grid = torch.linspace(t0, t1, NUM_STEPS, dtype=torch.float64)
    dt = grid[1] - grid[0]
    x = z
    for k, t in enumerate(grid[:-1]):
        v = -v_repa(x, 1 - t)
        w = sit_w(form, t, norm)
        drift = v + w * (t * v - x) / (1 - t)
        mean = x + drift * dt
        x = mean + torch.sqrt(2 * w) * (noises[k] * torch.sqrt(dt))
    t = grid.new_tensor(t1)
    v = -v_repa(x, 1 - t)
    if last == "mean":
        x = x + (v + sit_w(form, t, norm) * (t * v - x) / (1 - t)) * last_size
    elif last == "euler":
        x = x + v * last_size
    elif last == "tweedie":
        x = x / t + (1 - t) ** 2 / t * (t * v - x) / (1 - t)  # x / alpha + sigma^2 / alpha * score
    return x


def _noises(count: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(SHAPE, generator=gen, dtype=torch.float64) for _ in range(count)]


@pytest.mark.parametrize("form", ["sigma", "constant", "linear", "decreasing", "increasing_decreasing"])
@pytest.mark.parametrize("last", ["mean", "tweedie", "euler", None])
@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_euler_maruyama_is_sits_step_for_step(form, last, convention):
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noises = _noises(NUM_STEPS - 1)
    theirs = sit_sde(z, noises, form=form, norm=0.7, last=last, last_size=0.04)
    spec = {"name": "euler_maruyama", "steps": NUM_STEPS if last else NUM_STEPS - 1, "diffusion_form": form,
            "diffusion_norm": 0.7, "last_step": last}
    pinned = ListNoise(noises)
    model = ToyFlow(convention)
    sampler = build_sampler(spec)
    ours = sampler(model, z, noise_sampler=pinned)
    assert float((theirs - ours).abs().max()) <= 1e-9
    assert pinned.used == NUM_STEPS - 1  # one draw per Euler-Maruyama step, none for the last step
    assert model.calls == sampler.num_evaluations == NUM_STEPS - (last is None)
    assert float((ours - z).abs().max()) > 0.5


def test_sbdm_from_just_below_pure_noise_is_sits_with_sample_eps():
    """SBDM's w = (1 - t) / t is infinite at SiT's t = 0: start the grid at t_max = 1 - eps (SiT's t0 = eps)."""
    eps = 1e-2
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noises = _noises(NUM_STEPS - 1)
    theirs = sit_sde(z, noises, form="sbdm", norm=1.0, last="mean", last_size=0.04, t0=eps)
    spec = {"name": "euler_maruyama", "steps": NUM_STEPS, "diffusion_form": "sbdm",
            "schedule": {"name": "uniform_t", "t_max": 1 - eps}}
    sigmas = build_sampler(spec).sigmas  # the transcription starts from z itself, not s_0 * z
    ours = sample_euler_maruyama(ToyFlow(), z, sigmas, noise_sampler=ListNoise(noises), diffusion_form="sbdm",
                                 last_step="mean")
    assert float((theirs - ours).abs().max()) <= 1e-9


def test_the_noise_comes_from_the_generator_and_nowhere_else():
    sigmas = get_sigmas_uniform_t(10)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first = sample_euler_maruyama(GaussianDenoiser(), z, sigmas, generator=torch.Generator().manual_seed(5))
    again = sample_euler_maruyama(GaussianDenoiser(), z, sigmas, generator=torch.Generator().manual_seed(5))
    other = sample_euler_maruyama(GaussianDenoiser(), z, sigmas, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    with pytest.raises(ValueError, match="noise_sampler=... or generator="):
        sample_euler_maruyama(GaussianDenoiser(), z, sigmas)


@pytest.mark.parametrize(
    "options, sigmas, match",
    [
        ({"diffusion_form": "sbdm"}, get_sigmas_uniform_t(5), "sbdm.*pure noise"),
        ({"diffusion_form": "SBDM"}, get_sigmas_uniform_t(5), "diffusion_form must be one of"),
        ({"diffusion_norm": -1.0}, get_sigmas_uniform_t(5), "diffusion_norm"),
        ({"last_step": "Mean"}, get_sigmas_uniform_t(5), "last_step must be one of"),
        ({"last_step": "mean"}, get_sigmas_uniform_t(5, t_min=0.1), "must end in 0"),
        ({}, torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), "decreasing"),
        ({}, torch.tensor([5.0, math.inf, 0.0], dtype=torch.float64), "finite after the first"),
    ],
)
def test_bad_options_are_refused(options, sigmas, match):
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        sample_euler_maruyama(GaussianDenoiser(), z, sigmas, generator=torch.Generator().manual_seed(0), **options)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"diffusion_form": "sbdm"}, "infinite at pure noise"),
        ({"last_step": "mean", "schedule": {"name": "karras"}}, "last_step null"),
        ({"schedule": {"name": "uniform_t", "t_min": 0.1}}, "leave schedule.t_min at 0"),
        ({"last_step_size": 0.5, "schedule": {"name": "uniform_t", "t_max": 0.4}}, "below schedule.t_max"),
        ({"steps": 1}, "steps must be >= 2"),
        ({"last_step": "Mean"}, "last_step"),
    ],
)
def test_bad_specs_are_refused(data, match):
    with pytest.raises(ValidationError, match=match):
        build_sampler({"name": "euler_maruyama", **data})


def test_the_spec_grid_is_sits():
    """SiT's default run: linspace(1, 0.04, N) in s, then the last step to 0."""
    sampler = build_sampler({"name": "euler_maruyama", "steps": 250})
    s = sampler.sigmas / (1 + sampler.sigmas)
    s[0] = 1.0
    expected = torch.cat([torch.linspace(1, 0.04, 250, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    assert sampler.steps == 250 and float((s - expected).abs().max()) < 1e-15
    without = build_sampler({"name": "euler_maruyama", "steps": 249, "last_step": None})
    assert torch.equal(without.sigmas, get_sigmas_uniform_t(249))
