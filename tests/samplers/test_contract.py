"""Generic checks every registered sampler gets for free (parametrised over the registry),
build_sampler, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from maskdit.samplers import (
    SAMPLERS,
    SIGMA_SCHEDULES,
    build_sampler,
    get_sigmas_ddpm,
    get_sigmas_karras,
    get_sigmas_loglinear,
    per_sample_noise_sampler,
    sample_function,
    specs,
)
from tests.samplers.toys import GaussianDenoiser

NAMES = SAMPLERS.names()


def _spec_for(name: str, **fields):
    return SAMPLERS.get(name)(**fields)


@pytest.mark.parametrize("name", SIGMA_SCHEDULES.names())
def test_every_sigma_schedule_decreases_to_zero(name):
    sigmas = SIGMA_SCHEDULES.get(name)().build(steps=5)
    assert sigmas.shape == (6,) and sigmas.dtype == torch.float64 and sigmas[-1] == 0
    assert bool((sigmas[:-1] > 0).all()) and bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("name", NAMES)
def test_same_inputs_same_result_and_dtype_kept(name):
    sampler = sample_function(name)
    x = 80.0 * torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    sigmas = get_sigmas_karras(6)
    first = sampler(GaussianDenoiser(), x, sigmas, generator=torch.Generator().manual_seed(1))
    second = sampler(GaussianDenoiser(), x, sigmas, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second) and first.dtype == torch.float32 and first.shape == x.shape
    assert torch.isfinite(first).all()


@pytest.mark.parametrize("name", NAMES)
def test_callback_once_per_step_and_model_called_in_model_dtype(name):
    seen_dtypes, infos = set(), []

    def model(x, sigma, *, labels=None, mask=None):
        seen_dtypes.add((x.dtype, sigma.dtype, sigma.shape))
        return 0.5 * x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    x = 80.0 * torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sample_function(name)(model, x, get_sigmas_karras(5), callback=infos.append,
                           generator=torch.Generator().manual_seed(1))
    assert [info["i"] for info in infos] == list(range(5))
    assert seen_dtypes == {(torch.float32, torch.float32, (2,))}
    assert all(info["x"].dtype == torch.float64 for info in infos)


@pytest.mark.parametrize("name", NAMES)
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
def test_bad_inputs_raise_value_error(name, x, sigmas, match):
    with pytest.raises(ValueError, match=match):
        sample_function(name)(GaussianDenoiser(), x, sigmas, generator=torch.Generator())


@pytest.mark.parametrize("name", NAMES)
def test_bad_labels_and_bad_denoiser_output_raise(name):
    x = torch.randn(2, 1, 2, 2)
    with pytest.raises(ValueError, match="labels"):
        sample_function(name)(GaussianDenoiser(), x, get_sigmas_karras(2), labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="shaped like x"):
        sample_function(name)(lambda x, s, labels=None, mask=None: x[:1], x, get_sigmas_karras(2))


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


@pytest.mark.parametrize("name", NAMES)
def test_build_sampler_from_spec(name):
    spec = _spec_for(name, steps=4, cfg_scale=1.0)
    sampler = build_sampler(spec)
    assert sampler.name == name and sampler.steps == 4 and sampler.sigmas[-1] == 0
    model = GaussianDenoiser()
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sampler(model, noise, generator=torch.Generator().manual_seed(1))
    assert out.shape == noise.shape and out.dtype == noise.dtype
    assert model.calls == sampler.num_evaluations  # the count the summary reports
    assert spec.sigma_max == float(sampler.sigmas[0]) and spec.sigma_min == float(sampler.sigmas[-2])


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
        {"name": "plms"},
    ],
)
def test_bad_specs_are_rejected(data):
    from pydantic import TypeAdapter

    with pytest.raises(ValidationError):
        TypeAdapter(specs.SamplerSpec).validate_python(data)


def test_spec_json_round_trip():
    from pydantic import TypeAdapter

    adapter = TypeAdapter(specs.SamplerSpec)
    for name in NAMES:
        spec = _spec_for(name, cfg_scale=1.5, cfg_interval=(0.2, 3.0))
        assert adapter.validate_json(adapter.dump_json(spec)) == spec
