"""The shipped sampler contracts (maskdit.testing.test_samplers, collected here) over every
registered sampler and sigma schedule; build_sampler, and what the built-in ones refuse."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from maskdit.samplers import (
    build_sampler,
    get_sigmas_ddpm,
    get_sigmas_karras,
    get_sigmas_loglinear,
    per_sample_noise_sampler,
    sample_function,
    specs,
)
from maskdit.samplers.common import check_inputs
from maskdit.testing.test_samplers import (  # noqa: F401
    test_ready_sampler,
    test_sampler_input_checks,
    test_sampler_is_a_pure_function,
    test_sampler_steps,
    test_sigma_schedule,
)
from tests.samplers.toys import GaussianDenoiser


@pytest.mark.parametrize(
    "x, sigmas, match",
    [
        (torch.zeros(4), get_sigmas_karras(3), "x must be"),
        (torch.zeros(2, 3, dtype=torch.long), get_sigmas_karras(3), "x must be"),
        (torch.zeros(2, 3), torch.tensor([1.0]), "sigmas must be a 1-D"),
        (torch.zeros(2, 3), torch.ones(2, 2), "sigmas must be a 1-D"),
        (torch.zeros(2, 3), torch.tensor([float("nan"), 0.0]), "finite"),
        (torch.zeros(2, 3), torch.tensor([1.0, 2.0, 0.0]), "decreasing"),
        (torch.zeros(2, 3), torch.tensor([1.0, 0.0, 0.0]), "positive"),
        (torch.zeros(2, 3), torch.tensor([-1.0, -2.0]), "positive"),
        (torch.full((2, 3), float("nan")), get_sigmas_karras(3), "NaN"),
    ],
)
def test_input_check_messages_say_what_is_wrong(x, sigmas, match):
    """Every built-in sampler starts with check_inputs (the contract checks that each refuses these)."""
    with pytest.raises(ValueError, match=match):
        check_inputs(x, sigmas)


@pytest.mark.parametrize("name", ["ddpm", "heun"])
def test_stochastic_step_without_randomness_source_raises(name):
    options = {"s_churn": 10.0} if name == "heun" else {}
    with pytest.raises(ValueError, match="noise_sampler=... or generator="):
        sample_function(name)(GaussianDenoiser(), torch.randn(2, 3), get_sigmas_karras(4), **options)


def test_schedules_shape_and_errors():
    for sigmas in (get_sigmas_karras(7), get_sigmas_loglinear(7), get_sigmas_ddpm(7)):
        assert sigmas.shape == (8,) and sigmas.dtype == torch.float64 and sigmas[-1] == 0
        assert bool((sigmas[1:] < sigmas[:-1]).all())
    assert get_sigmas_karras(1).tolist() == [80.0, 0.0]
    assert torch.allclose(get_sigmas_loglinear(3, 0.1, 10.0)[:-1], torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))
    for bad in (lambda: get_sigmas_karras(0), lambda: get_sigmas_karras(5, 1.0, 0.5), lambda: get_sigmas_karras(5, rho=0.0),
                lambda: get_sigmas_loglinear(3, 0.0, 1.0), lambda: get_sigmas_ddpm(1001),
                lambda: get_sigmas_ddpm(5, spacing="middle"), lambda: get_sigmas_ddpm(5, beta_schedule="cosine"),
                lambda: get_sigmas_ddpm(5, steps_offset=999)):
        with pytest.raises(ValueError):
            bad()


def test_built_sampler_reproduces_the_bare_function_and_wraps_guidance():
    from maskdit.samplers import sample_heun

    spec = specs.HeunSamplerSpec(steps=6, cfg_scale=2.5, cfg_interval=(0.1, 5.0))
    sampler = build_sampler(spec, null_label=3)
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model = GaussianDenoiser()
    assert torch.equal(build_sampler(specs.HeunSamplerSpec(steps=6))(model, noise),
                       sample_heun(model, noise.double() * 80.0, get_sigmas_karras(6), dtype=torch.float32))
    guided = sampler.guided(model)
    assert guided.scale == 2.5 and guided.sigma_interval == (0.1, 5.0) and guided.null_label == 3


def test_per_sample_noise_is_batch_independent():
    """The CLI's seeding: sample b's noise comes from generator b alone."""
    spec = specs.HeunSamplerSpec(steps=5, s_churn=20.0)
    sampler = build_sampler(spec)
    seeds = [11, 12, 13]

    def run(batch_seeds):
        gens = [torch.Generator().manual_seed(s) for s in batch_seeds]
        noise = torch.stack([torch.randn(1, 4, 4, generator=g) for g in gens])  # [B, 1, 4, 4]
        return sampler(GaussianDenoiser(), noise, noise_sampler=per_sample_noise_sampler(gens, noise))

    together = run(seeds)
    alone = torch.cat([run([s]) for s in seeds])
    assert torch.allclose(together, alone, atol=1e-6)


@pytest.mark.parametrize(
    "data",
    [
        {"name": "heun", "steps": 0},
        {"name": "heun", "schedule": {"name": "karras", "sigma_min": 5.0, "sigma_max": 1.0}},
        {"name": "heun", "cfg_interval": [2.0, 1.0]},
        {"name": "heun", "s_tmin": 2.0, "s_tmax": 1.0},
        {"name": "ddim", "eta": 1.5},
        {"name": "ddpm", "steps": 2000},
        {"name": "ddpm", "schedule": {"name": "ddpm", "beta_start": 0.1, "beta_end": 0.01}},
        {"name": "heun", "sigma_max": 80.0},
        {"name": "heun", "schedule": {"name": "karras", "rho": 0.004}},  # 80^(1/rho) overflows float64
        {"name": "ddim", "schedule": {"name": "ddpm", "num_timesteps": 7050, "beta_end": 0.5}},  # alpha_bar -> 0
        {"name": "plms"},
    ],
)
def test_bad_specs_are_rejected(data):
    from pydantic import TypeAdapter

    with pytest.raises(ValidationError):
        TypeAdapter(specs.SamplerSpec).validate_python(data)
