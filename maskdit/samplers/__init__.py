"""Sampling: sigma schedules, samplers as pure functions, classifier-free guidance, ready samplers.

Samplers: ``sample_<name>(denoiser, x, sigmas, *, labels=None, noise_sampler=None,
generator=None, callback=None, dtype=None, ...) -> x0`` with x = sigmas[0] * noise.
``build_sampler(spec)`` turns the spec's sampler section into a ``Sampler`` (sigmas, function,
options and guidance in one callable).
"""

from __future__ import annotations

import torch

from maskdit.registry import Registry
from maskdit.samplers import specs
from maskdit.samplers.build import Sampler, sampler_from_spec
from maskdit.samplers.common import NoiseSampler, generator_noise_sampler, per_sample_noise_sampler
from maskdit.samplers.ddim import sample_ddim
from maskdit.samplers.ddpm import sample_ddpm
from maskdit.samplers.dpmpp import sample_dpmpp_2m
from maskdit.samplers.euler import sample_euler
from maskdit.samplers.guidance import ClassifierFreeGuidance, cfg
from maskdit.samplers.heun import sample_heun
from maskdit.samplers.sigmas import get_sigmas_ddpm, get_sigmas_karras, get_sigmas_loglinear
from maskdit.samplers.vp import ddpm_alphas_cumprod, ddpm_sigmas, ddpm_timesteps

#: sigma schedule name -> factory(spec, steps, device=None) -> sigmas [steps + 1]
SIGMA_SCHEDULES: Registry[torch.Tensor] = Registry("sigma schedule")
SIGMA_SCHEDULES.register(
    "karras",
    lambda spec, steps, device=None: get_sigmas_karras(steps, spec.sigma_min, spec.sigma_max, spec.rho, device=device),
)
SIGMA_SCHEDULES.register(
    "loglinear",
    lambda spec, steps, device=None: get_sigmas_loglinear(steps, spec.sigma_min, spec.sigma_max, device=device),
)
SIGMA_SCHEDULES.register(
    "ddpm",
    lambda spec, steps, device=None: get_sigmas_ddpm(
        steps, num_timesteps=spec.num_timesteps, beta_start=spec.beta_start, beta_end=spec.beta_end,
        beta_schedule=spec.beta_schedule, spacing=spec.spacing, steps_offset=spec.steps_offset, device=device,
    ),
)


def build_sigmas(schedule: specs.SigmaScheduleSpec, steps: int, *, device=None) -> torch.Tensor:
    """The [steps + 1] float64 sigmas of a schedule spec."""
    return SIGMA_SCHEDULES.build(schedule, steps=steps, device=device)


def _churn_options(spec) -> dict:
    return {"s_churn": spec.s_churn, "s_tmin": spec.s_tmin, "s_tmax": spec.s_tmax, "s_noise": spec.s_noise}


#: sampler name -> factory(spec, null_label=None) -> Sampler
SAMPLERS: Registry[Sampler] = Registry("sampler")
SAMPLERS.register("heun", lambda spec, null_label=None: sampler_from_spec(
    spec, sample_heun, build_sigmas(spec.schedule, spec.steps), options=_churn_options(spec),
    evals_per_step=(2, 1), null_label=null_label))
SAMPLERS.register("euler", lambda spec, null_label=None: sampler_from_spec(
    spec, sample_euler, build_sigmas(spec.schedule, spec.steps), options=_churn_options(spec), null_label=null_label))
SAMPLERS.register("ddpm", lambda spec, null_label=None: sampler_from_spec(
    spec, sample_ddpm, build_sigmas(spec.schedule, spec.steps), null_label=null_label))
SAMPLERS.register("ddim", lambda spec, null_label=None: sampler_from_spec(
    spec, sample_ddim, build_sigmas(spec.schedule, spec.steps), options={"eta": spec.eta}, null_label=null_label))
SAMPLERS.register("dpmpp_2m", lambda spec, null_label=None: sampler_from_spec(
    spec, sample_dpmpp_2m, build_sigmas(spec.schedule, spec.steps), null_label=null_label))

#: the bare sampler functions by name (the same names as SAMPLERS)
SAMPLE_FUNCTIONS = {"heun": sample_heun, "euler": sample_euler, "ddpm": sample_ddpm, "ddim": sample_ddim,
                    "dpmpp_2m": sample_dpmpp_2m}


def build_sampler(spec: specs.SamplerSpec, *, null_label: int | None = None) -> Sampler:
    """A ready ``Sampler`` from the spec's sampler section (guidance included when cfg_scale != 1;
    ``null_label`` = the model's num_classes, else taken from the denoiser at call time)."""
    return SAMPLERS.build(spec, null_label=null_label)


__all__ = [
    "ClassifierFreeGuidance",
    "NoiseSampler",
    "SAMPLERS",
    "SAMPLE_FUNCTIONS",
    "SIGMA_SCHEDULES",
    "Sampler",
    "build_sampler",
    "build_sigmas",
    "cfg",
    "ddpm_alphas_cumprod",
    "ddpm_sigmas",
    "ddpm_timesteps",
    "generator_noise_sampler",
    "get_sigmas_ddpm",
    "get_sigmas_karras",
    "get_sigmas_loglinear",
    "per_sample_noise_sampler",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_heun",
    "specs",
]
