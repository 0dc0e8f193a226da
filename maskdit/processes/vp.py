"""The discrete variance-preserving (DDPM) noise schedule, seen through EDM's sigma.

DDPM (Ho et al. 2020, eq. 4) noises as x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with
abar_t = prod_{s<=t} (1 - beta_s). Dividing by sqrt(abar_t) gives EDM's variance-exploding
form x = x0 + sigma eps with sigma_t = sqrt((1 - abar_t) / abar_t) (Karras et al. 2022,
Table 1), so every sampler here works on sigma alone and abar = 1 / (1 + sigma^2).
"""

from __future__ import annotations

from typing import Literal

import torch

BetaSchedule = Literal["linear", "scaled_linear"]
Spacing = Literal["leading", "trailing", "linspace"]


def ddpm_betas(
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: BetaSchedule = "linear",
) -> torch.Tensor:
    """beta_0..beta_{T-1} [T] in float64: 'linear' (DDPM) or 'scaled_linear' (linear in sqrt(beta), LDM / SD)."""
    if not isinstance(num_timesteps, int) or num_timesteps < 2:
        raise ValueError(f"num_timesteps must be an int >= 2, got {num_timesteps!r}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    raise ValueError(f"unknown beta_schedule {beta_schedule!r}; valid: linear, scaled_linear")


def ddpm_alphas_cumprod(
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: BetaSchedule = "linear",
) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s) [T], float64."""
    return torch.cumprod(1.0 - ddpm_betas(num_timesteps, beta_start, beta_end, beta_schedule), dim=0)


def ddpm_sigmas(
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: BetaSchedule = "linear",
) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1 [T], float64, increasing."""
    alphas_cumprod = ddpm_alphas_cumprod(num_timesteps, beta_start, beta_end, beta_schedule)
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


def ddpm_timesteps(n: int, num_timesteps: int = 1000, spacing: Spacing = "leading", steps_offset: int = 0) -> torch.Tensor:
    """The n integer timesteps (descending) a respaced DDPM/DDIM sampler visits [n], int64.

    Spacings as in Lin et al. 2024 ("Common diffusion noise schedules ...", Table 2):
    'leading' = (0, T//n, 2T//n, ...) + steps_offset, 'trailing' = round(T - k T/n) - 1,
    'linspace' = round(linspace(0, T-1, n)).
    """
    if not isinstance(n, int) or not 1 <= n <= num_timesteps:
        raise ValueError(f"number of steps must be an int in [1, {num_timesteps}], got {n!r}")
    if spacing == "leading":
        steps = torch.arange(n, dtype=torch.int64) * (num_timesteps // n) + steps_offset
    elif spacing == "trailing":
        grid = torch.arange(n, dtype=torch.float64) * (num_timesteps / n)  # k T / n, k = 0..n-1
        steps = torch.round(num_timesteps - grid).to(torch.int64).flip(0) - 1
    elif spacing == "linspace":
        steps = torch.round(torch.linspace(0, num_timesteps - 1, n, dtype=torch.float64)).to(torch.int64)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; valid: leading, trailing, linspace")
    if int(steps.min()) < 0 or int(steps.max()) >= num_timesteps:
        raise ValueError(f"steps_offset {steps_offset} pushes timesteps outside [0, {num_timesteps})")
    return steps.flip(0)


def sigma_to_alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """abar = 1 / (1 + sigma^2)."""
    return 1.0 / (1.0 + sigma**2)
