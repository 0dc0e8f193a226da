"""Training noise-level distributions: ``dist(batch_size, *, generator=None, device=None) -> sigma [B]``.

All randomness comes from the caller's generator (on the device the sigmas are drawn on).
"""

from __future__ import annotations

import math

import torch

from maskdit.processes.vp import BetaSchedule, ddpm_sigmas


class LogNormalNoise:
    """ln(sigma) ~ N(p_mean, p_std^2) (Karras et al. 2022, sec. 5; defaults -1.2, 1.2)."""

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        if not (math.isfinite(p_mean) and math.isfinite(p_std) and p_std > 0):
            raise ValueError(f"need finite p_mean and p_std > 0, got {p_mean!r}, {p_std!r}")
        self.p_mean, self.p_std = float(p_mean), float(p_std)

    def __call__(self, batch_size: int, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        normal = torch.randn(draw_shape(batch_size), generator=generator, device=draw_device(device, generator), dtype=dtype)
        return (normal * self.p_std + self.p_mean).exp()

    def __repr__(self) -> str:
        return f"LogNormalNoise(p_mean={self.p_mean:g}, p_std={self.p_std:g})"


class LogUniformNoise:
    """ln(sigma) ~ U[ln sigma_min, ln sigma_max]."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        if not (math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
            raise ValueError(f"need finite 0 < sigma_min < sigma_max, got {sigma_min!r}, {sigma_max!r}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def __call__(self, batch_size: int, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        u = torch.rand(draw_shape(batch_size), generator=generator, device=draw_device(device, generator), dtype=torch.float64)
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return (lo + (hi - lo) * u).exp().to(dtype)

    def __repr__(self) -> str:
        return f"LogUniformNoise(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"


class DDPMNoise:
    """t ~ U{0, ..., T-1} mapped to sigma_t = sqrt((1 - abar_t) / abar_t) (Ho et al. 2020,
    Algorithm 1, in EDM's scaling), for networks trained the DDPM way."""

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 beta_schedule: BetaSchedule = "linear") -> None:
        self.table = ddpm_sigmas(num_timesteps, beta_start, beta_end, beta_schedule)  # [T] float64
        self.num_timesteps = num_timesteps

    def __call__(self, batch_size: int, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        device = draw_device(device, generator)
        steps = torch.randint(0, self.num_timesteps, draw_shape(batch_size), generator=generator, device=device)
        return self.table.to(device)[steps].to(dtype)

    def __repr__(self) -> str:
        return f"DDPMNoise(num_timesteps={self.num_timesteps})"


def draw_shape(batch_size: int) -> tuple[int]:
    """The [B] shape of one draw; a clear error for a batch size that is not a positive int."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return (batch_size,)


def draw_device(device, generator):
    """Where to draw: the device asked for, else the generator's (a generator draws only there)."""
    if device is not None:
        return device
    return generator.device if generator is not None else "cpu"
