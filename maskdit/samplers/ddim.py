"""DDIM (Song et al. 2021, eq. 12) with its stochasticity knob eta, in EDM's scaling."""

from __future__ import annotations

import math

import torch

from maskdit.samplers.common import (
    Callback,
    DenoiserFn,
    NoiseSampler,
    denoise,
    draw_noise,
    report,
    start,
    steps,
)


@torch.no_grad()
def sample_ddim(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM's update x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - s^2) eps + s z with
    s^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s) (eq. 12 and 16).

    Divided by sqrt(abar_s) (EDM scaling, abar = 1 / (1 + sigma^2)) it reads

        x_s = x0 + sqrt(sigma_s^2 - u^2) (x_t - x0) / sigma_t + u z,
        u = eta sigma_s sqrt(sigma_t^2 - sigma_s^2) / sigma_t,

    so eta = 0 is the Euler step of the probability-flow ODE and eta = 1 is the DDPM posterior
    step (same result as ``sample_ddpm``). Noise is drawn only when u > 0.
    """
    state, sigmas, model_dtype, noise_sampler = start(x, sigmas, labels, dtype, noise_sampler, generator)
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    for i, sigma, sigma_next in steps(sigmas):
        denoised = denoise(denoiser, state, sigma, labels, model_dtype)
        eps = (state - denoised) / sigma
        up = eta * sigma_next * (sigma**2 - sigma_next**2).sqrt() / sigma
        down = (sigma_next**2 - up**2).clamp(min=0.0).sqrt()
        state = denoised + down * eps
        if up > 0:
            state = state + up * draw_noise(noise_sampler, sigma, sigma_next, state)
        report(callback, i, state, sigma, sigma, sigma_next, denoised)
    return state.to(model_dtype)
