"""Flow-matching training time distributions, returned as EDM sigmas like the other noise plugins:
``dist(batch_size, *, generator=None, device=None, dtype=float32) -> sigma [B]``.

Times are the noise-end time s (REPA's t, t = 1 at noise); sigma = s / (1 - s). All randomness
comes from the caller's generator.
"""

from __future__ import annotations

import math

import torch

from maskdit.processes.flow import t_to_sigma
from maskdit.processes.noise import draw_device, draw_shape


class UniformTimeNoise:
    """t ~ U[t_eps, 1 - t_eps], SiT's and REPA's default (Ma et al. 2024; Yu et al. 2025).

    Uniform t is the same in both conventions. Its ends are sigma = 0 (the v-loss weight
    ((1 + sigma) / sigma)^2 is infinite there) and sigma = inf, so the range is cut by ``t_eps``
    at each end, as SiT's ``train_eps``: sigma lies in [t_eps / (1 - t_eps), (1 - t_eps) / t_eps].
    Drawn in float64, cast to ``dtype`` at the end."""

    def __init__(self, t_eps: float = 1e-5) -> None:
        if isinstance(t_eps, bool) or not isinstance(t_eps, (int, float)) or not (0 < t_eps < 0.5):
            raise ValueError(f"UniformTimeNoise: t_eps must be a number in (0, 0.5), got {t_eps!r}")
        self.t_eps = float(t_eps)

    def __call__(self, batch_size: int, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        u = torch.rand(draw_shape(batch_size), generator=generator, device=draw_device(device, generator), dtype=torch.float64)
        t = self.t_eps + (1 - 2 * self.t_eps) * u  # u in [0, 1): t in [t_eps, 1 - t_eps)
        return t_to_sigma(t).to(dtype)

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """The sigma at quantile ``q`` (a float64 tensor in [0, 1])."""
        return t_to_sigma(self.t_eps + (1 - 2 * self.t_eps) * q)

    def __repr__(self) -> str:
        return f"UniformTimeNoise(t_eps={self.t_eps:g})"


class LogitNormalTimeNoise:
    """logit(t) ~ N(m, s^2) on the noise-end time t, then SD3's shift t' = a t / (1 + (a - 1) t)
    (Esser et al. 2024; LightningDiT, SPRINT, RAE).

    Since logit(t) = ln(sigma) and the shift multiplies sigma by a, sigma = a exp(m + s n) with
    n ~ N(0, 1): with a = 1 this is EDM's lognormal with P_mean = m, P_std = s, drawn the same way
    (same generator, same sigmas). Computed in sigma space, so t never rounds to 1 (sigma = inf).
    Under SiT's convention (t = 1 at data) the same law is logit-normal(-m, s)."""

    def __init__(self, m: float = 0.0, s: float = 1.0, shift: float = 1.0) -> None:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (m, s, shift)):
            raise ValueError(f"LogitNormalTimeNoise: m, s and shift must be numbers, got {m!r}, {s!r}, {shift!r}")
        if not (math.isfinite(m) and math.isfinite(s) and s > 0):
            raise ValueError(f"LogitNormalTimeNoise: need a finite m and a finite s > 0, got {m!r}, {s!r}")
        if not (math.isfinite(shift) and shift > 0):
            raise ValueError(f"LogitNormalTimeNoise: shift must be finite and > 0, got {shift!r}")
        self.m, self.s, self.shift = float(m), float(s), float(shift)

    def __call__(self, batch_size: int, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        normal = torch.randn(draw_shape(batch_size), generator=generator, device=draw_device(device, generator), dtype=dtype)
        sigma = (normal * self.s + self.m).exp()  # the lognormal's own arithmetic, so a = 1 matches it bit for bit
        return sigma if self.shift == 1 else sigma * self.shift

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """The sigma at quantile ``q`` (a float64 tensor in (0, 1))."""
        normal = torch.distributions.Normal(0.0, 1.0)
        return self.shift * torch.exp(self.m + self.s * normal.icdf(q))

    def __repr__(self) -> str:
        return f"LogitNormalTimeNoise(m={self.m:g}, s={self.s:g}, shift={self.shift:g})"
