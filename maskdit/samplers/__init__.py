"""Sampling: sigma schedules, samplers as pure functions, classifier-free guidance, ready samplers.

Samplers: ``sample_<name>(denoiser, x, sigmas, *, labels=None, noise_sampler=None,
generator=None, callback=None, dtype=None, ...) -> x0`` with x = sigmas[0] * noise; the flow-space
samplers (``sample_flow_euler``, ``sample_flow_heun``, ``sample_dopri5``, ``sample_euler_maruyama``,
SiT's) take the flow state x_t = s_0 * noise instead (s = sigma / (1 + sigma), 1 at pure noise).
Guidance wraps the denoiser: ``cfg`` (classifier-free) or ``path_drop_guidance`` (SPRINT's,
the weak branch the model with its sparse path dropped).
``build_sampler(spec)`` turns the spec's sampler section into a ``Sampler`` (sigmas, function,
options and guidance in one callable).
"""

from __future__ import annotations

import torch

from maskdit.config.registry import Registry, registry
from maskdit.processes.vp import ddpm_alphas_cumprod, ddpm_sigmas, ddpm_timesteps
from maskdit.samplers import flow_specs, specs
from maskdit.samplers.common import (
    NoiseSampler,
    generator_noise_sampler,
    per_sample_noise_sampler,
)
from maskdit.samplers.ddim import sample_ddim
from maskdit.samplers.ddpm import sample_ddpm
from maskdit.samplers.dpmpp import sample_dpmpp_2m
from maskdit.samplers.euler import sample_euler
from maskdit.samplers.flow_ode import sample_dopri5, sample_flow_euler, sample_flow_heun
from maskdit.samplers.flow_sde import sample_euler_maruyama
from maskdit.samplers.flow_view import velocity_view
from maskdit.samplers.guidance import ClassifierFreeGuidance, cfg
from maskdit.samplers.heun import sample_heun
from maskdit.samplers.path_drop import PathDropGuidance, path_drop_guidance
from maskdit.samplers.ready import Sampler, sampler_from_spec, sampler_spec  # noqa: F401
from maskdit.samplers.sigmas import (
    get_sigmas_ddpm,
    get_sigmas_karras,
    get_sigmas_loglinear,
    get_sigmas_uniform_t,
)

#: the registered sigma schedules: spec.build(steps=n, device=None) -> sigmas [n + 1]
SIGMA_SCHEDULES: Registry = registry("sigma_schedule")

#: the registered samplers: spec.build(null_label=None) -> Sampler
SAMPLERS: Registry = registry("sampler")


def build_sigmas(schedule: specs.SigmaScheduleSpec, steps: int, *, device=None) -> torch.Tensor:
    """The [steps + 1] float64 sigmas of a schedule spec."""
    return SIGMA_SCHEDULES.build(schedule, steps=steps, device=device)


def sample_function(name: str):
    """The bare sampler function of a registered sampler (its spec's ``sample_function()``)."""
    return SAMPLERS.get(name)().sample_function()


def build_sampler(spec: specs.SamplerSpec | dict | str, *, null_label: int | None = None) -> Sampler:
    """A ready ``Sampler`` from the spec's sampler section (guidance included when cfg_scale != 1;
    ``null_label`` = the model's num_classes, else taken from the denoiser at call time). ``spec``
    may also be a dict of its fields (``{"name": "heun", "steps": 18}``, validated) or a name."""
    return SAMPLERS.build(sampler_spec(spec), null_label=null_label)


__all__ = [
    "ClassifierFreeGuidance",
    "NoiseSampler",
    "PathDropGuidance",
    "SAMPLERS",
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
    "get_sigmas_uniform_t",
    "flow_specs",
    "path_drop_guidance",
    "per_sample_noise_sampler",
    "sample_function",
    "sample_ddim",
    "sample_ddpm",
    "sample_dopri5",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_maruyama",
    "sample_flow_euler",
    "sample_flow_heun",
    "sample_heun",
    "specs",
    "velocity_view",
]
