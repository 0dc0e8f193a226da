"""Sigma schedules: the noise levels a sampler visits, ``get_sigmas_<name>(n, ...) -> [n + 1]``.

Every schedule returns n decreasing positive noise levels followed by a final 0, in float64
(the sampler then takes n steps). Samplers accept any such tensor, so schedules and samplers
mix freely. The flow-time grid (``get_sigmas_uniform_t``) may start at pure noise (sigma = inf,
only flow-space samplers start there) and may stop short of the data (t_min > 0).
"""

from __future__ import annotations

import math

import torch

from maskdit.processes.flow import t_to_sigma, time_shift
from maskdit.processes.vp import BetaSchedule, Spacing, ddpm_sigmas, ddpm_timesteps


def get_sigmas_karras(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """EDM time steps (Karras et al. 2022, eq. 5), then t_N = 0.

    t_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < n;
    with n = 1 the single level is sigma_max.
    """
    _check_range(n, sigma_min, sigma_max)
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive number, got {rho!r}")
    steps = torch.arange(n, dtype=torch.float64, device=device)
    fraction = steps / (n - 1) if n > 1 else steps
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + fraction * (lo - hi)) ** rho
    return _append_zero(sigmas)


def get_sigmas_loglinear(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """n levels evenly spaced in log(sigma) from sigma_max down to sigma_min, then 0."""
    _check_range(n, sigma_min, sigma_max)
    if n == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64, device=device)
    else:
        sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64, device=device).exp()
    return _append_zero(sigmas)


def get_sigmas_ddpm(
    n: int,
    *,
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: BetaSchedule = "linear",
    spacing: Spacing = "leading",
    steps_offset: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The discrete VP (DDPM) schedule respaced to n steps, as sigmas, then 0.

    sigma_t = sqrt((1 - abar_t) / abar_t) at the timesteps of ``ddpm_timesteps`` (n = T with
    'leading' spacing visits every timestep: the original DDPM chain). The final 0 is the
    clean sample, abar = 1 (diffusers' ``set_alpha_to_one``).
    """
    table = ddpm_sigmas(num_timesteps, beta_start, beta_end, beta_schedule)  # [T]
    steps = ddpm_timesteps(n, num_timesteps, spacing, steps_offset)  # [n], descending
    return _append_zero(table[steps].to(device))


def get_sigmas_uniform_t(
    n: int,
    t_max: float = 1.0,
    t_min: float = 0.0,
    shift: float = 1.0,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """n steps evenly spaced in the noise-end time s (REPA's t; SiT's is 1 - s), as sigmas.

    s_i = linspace(t_max, t_min, n + 1), optionally moved by SD3's time shift (sigma' = shift
    sigma), then sigma_i = s_i / (1 - s_i). t_max = 1 starts at pure noise (sigma = inf), as SiT's
    samplers do; t_min = 0 ends at the data (sigma = 0), t_min > 0 stops short of it (SiT's
    ``sample_eps``). SiT's ``num_sampling_steps`` N is this grid with n = N - 1 intervals.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of steps must be a positive int, got {n!r}")
    if not (0.0 <= t_min < t_max <= 1.0):
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min!r}, t_max={t_max!r}")
    times = torch.linspace(t_max, t_min, n + 1, dtype=torch.float64, device=device)
    sigmas = t_to_sigma(time_shift(times, shift), "repa")  # t_to_sigma(1) = 1 / 0 = inf
    if bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError(f"{n} steps between t = {t_max!r} and {t_min!r} (shift {shift!r}) give noise levels that "
                         "are not strictly decreasing in float64: use fewer steps or a wider range")
    return sigmas


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of steps must be a positive int, got {n!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"need finite 0 < sigma_min < sigma_max, got {sigma_min!r}, {sigma_max!r}")


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])  # [n] -> [n + 1]
