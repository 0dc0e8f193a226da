"""Denoisers with known answers for checking samplers."""

from __future__ import annotations

import math

import torch


class GaussianDenoiser:
    """The ideal denoiser of data ~ N(mu, s^2) per dimension: D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).

    The probability-flow ODE then has the exact solution
    x(sigma) - mu = sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2)) (x(sigma_0) - mu). ``calls``
    counts the evaluations.
    """

    def __init__(self, mu: float = 0.3, s: float = 0.5) -> None:
        self.mu, self.s = mu, s
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *, labels: torch.Tensor | None = None,
                 mask: object = None) -> torch.Tensor:
        self.calls += 1
        shrink = self.s**2 / (self.s**2 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2)  # [B] -> [B, 1, ...]
        return self.mu + shrink * (x - self.mu)

    def exact_flow(self, x_start: torch.Tensor, sigma_start: float, sigma_end: float = 0.0) -> torch.Tensor:
        factor = math.sqrt((self.s**2 + sigma_end**2) / (self.s**2 + sigma_start**2))
        return self.mu + factor * (x_start - self.mu)
