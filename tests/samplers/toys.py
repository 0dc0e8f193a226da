"""Toy denoisers with known answers, shared by the sampler tests."""

from __future__ import annotations

import math

import torch


class GaussianDenoiser:
    """The ideal denoiser of data ~ N(mu, s^2) per dimension: D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).

    The probability-flow ODE then has the exact solution
    x(sigma) - mu = sqrt((s^2 + sigma^2) / (s^2 + sigma_0^2)) (x(sigma_0) - mu).
    """

    def __init__(self, mu: float = 0.3, s: float = 0.5) -> None:
        self.mu, self.s = mu, s
        self.calls = 0

    def __call__(self, x, sigma, *, labels=None, mask=None):
        self.calls += 1
        shrink = self.s**2 / (self.s**2 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2)  # [B] -> [B, 1, ...]
        return self.mu + shrink * (x - self.mu)

    def exact_flow(self, x_start: torch.Tensor, sigma_start: float, sigma_end: float = 0.0) -> torch.Tensor:
        factor = math.sqrt((self.s**2 + sigma_end**2) / (self.s**2 + sigma_start**2))
        return self.mu + factor * (x_start - self.mu)


def eps_model(x_vp: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """An arbitrary smooth, nonlinear epsilon-prediction 'network' of (x_vp, abar) for peer cross-checks."""
    a = alpha_bar.to(x_vp.dtype)
    return (1.0 - a).sqrt() * x_vp + 0.2 * torch.sin(3.0 * x_vp) * a.sqrt() - 0.1 * a


def eps_denoiser(x, sigma, *, labels=None, mask=None):
    """eps_model seen as an EDM denoiser: D(x; sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), 1 / (1 + sigma^2))."""
    s = sigma.view(-1, *([1] * (x.ndim - 1)))  # [B] -> [B, 1, ...]
    alpha_bar = 1.0 / (1.0 + s**2)
    return x - s * eps_model(x * alpha_bar.sqrt(), alpha_bar)


class ListNoise:
    """A noise_sampler that hands out pre-drawn tensors in order (pins the noise in tests)."""

    def __init__(self, noises: list[torch.Tensor]) -> None:
        self.noises = list(noises)
        self.used = 0

    def __call__(self, sigma, sigma_next):
        noise = self.noises[self.used]
        self.used += 1
        return noise
