"""Denoisers with known answers for checking samplers."""

from __future__ import annotations

import math

import torch


class GaussianDenoiser:
    """The ideal denoiser of data ~ N(mu, s^2) per dimension: D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).

    The probability-flow ODE then has the exact solution
    x(sigma) - mu = sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2)) (x(sigma_0) - mu). ``calls``
    counts the evaluations. It is also the exact flow model of that data (``velocity`` in REPA's
    convention, defined at both ends), so the flow-space samplers can start it at pure noise.
    """

    convention = "repa"

    def __init__(self, mu: float = 0.3, s: float = 0.5) -> None:
        self.mu, self.s = mu, s
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *, labels: torch.Tensor | None = None,
                 mask: object = None) -> torch.Tensor:
        self.calls += 1
        shrink = self.s**2 / (self.s**2 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2)  # [B] -> [B, 1, ...]
        return self.mu + shrink * (x - self.mu)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor | float, *, labels: torch.Tensor | None = None,
                 mask: object = None) -> torch.Tensor:
        """E[eps - x0 | x_t] at noise-end time t (x_t = (1 - t) x0 + t eps): with V = (1 - t)^2 s^2 + t^2,
        (t - (1 - t) s^2) / V (x_t - (1 - t) mu) - mu."""
        self.calls += 1
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        t = t.view(-1, *([1] * (x_t.ndim - 1))) if t.ndim == 1 else t  # [B] -> [B, 1, ...]
        var = (1 - t) ** 2 * self.s**2 + t**2
        return (t - (1 - t) * self.s**2) / var * (x_t - (1 - t) * self.mu) - self.mu

    def exact_flow(self, x_start: torch.Tensor, sigma_start: float, sigma_end: float = 0.0) -> torch.Tensor:
        factor = math.sqrt((self.s**2 + sigma_end**2) / (self.s**2 + sigma_start**2))
        return self.mu + factor * (x_start - self.mu)
