"""The noising processes: the discrete VP (DDPM) schedule seen through EDM's sigma, and the
training noise-level distributions drawn from them. Imports neither samplers nor losses."""

from __future__ import annotations

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
]
