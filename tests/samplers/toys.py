"""Toy denoisers with known answers, shared by the sampler tests."""

from __future__ import annotations

import torch

from maskdit.testing.toys import GaussianDenoiser  # noqa: F401  (one copy, shipped with the contract checks)


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
