"""The noising processes: the discrete VP (DDPM) schedule and the linear interpolant (flow
matching) seen through EDM's sigma, and the training noise-level distributions drawn from them. Imports neither samplers nor losses."""

from __future__ import annotations

from maskdit.processes.flow import (
    CONVENTIONS,
    Convention,
    check_convention,
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
from maskdit.processes.flow_noise import LogitNormalTimeNoise, UniformTimeNoise
from maskdit.processes.noise import DDPMNoise, LogNormalNoise, LogUniformNoise
from maskdit.processes.vp import (
    BetaSchedule,
    Spacing,
    ddpm_alphas_cumprod,
    ddpm_betas,
    ddpm_sigmas,
    ddpm_timesteps,
    sigma_to_alpha_bar,
)

__all__ = [
    "BetaSchedule",
    "Spacing",
    "ddpm_betas",
    "ddpm_alphas_cumprod",
    "ddpm_sigmas",
    "ddpm_timesteps",
    "sigma_to_alpha_bar",
    "LogNormalNoise",
    "LogUniformNoise",
    "DDPMNoise",
    "Convention",
    "CONVENTIONS",
    "check_convention",
    "t_to_sigma",
    "sigma_to_t",
    "scale",
    "interpolate",
    "velocity",
    "v_to_x0",
    "x0_to_v",
    "v_loss_weight",
    "time_shift",
    "UniformTimeNoise",
    "LogitNormalTimeNoise",
]
