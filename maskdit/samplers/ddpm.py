"""Ancestral DDPM sampling (Ho et al. 2020, eq. 6-7) with the fixed small posterior variance."""

from __future__ import annotations

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
def sample_ddpm(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw x_s ~ q(x_s | x_t, x0 = D(x_t)) for each consecutive pair t -> s of ``sigmas``.

    In DDPM's variance-preserving form the posterior has mean
    sqrt(abar_s) beta / (1 - abar_t) x0 + sqrt(abar_t / abar_s) (1 - abar_s) / (1 - abar_t) x_t
    and variance beta~ = (1 - abar_s) / (1 - abar_t) beta, beta = 1 - abar_t / abar_s (eq. 7;
    "fixed small"; respaced steps use the ratio of cumulative alphas as in Nichol & Dhariwal
    2021). With abar = 1 / (1 + sigma^2) and x = x_vp / sqrt(abar), the same step in EDM's
    scaling is

        x_s = x0 + (sigma_s^2 / sigma_t^2) (x_t - x0) + (sigma_s / sigma_t) sqrt(sigma_t^2 - sigma_s^2) z,

    which is what is computed (no noise is drawn on the step to sigma = 0). Use it with
    ``get_sigmas_ddpm`` to reproduce a discrete DDPM chain; ``x`` enters in EDM scaling,
    i.e. x = sqrt(1 + sigma_0^2) * noise for the exact VP start (sigma_0 * noise differs by a
    factor sqrt(1 + 1 / sigma_0^2), 1 + 2e-5 for DDPM's sigma_0 = 157).
    """
    state, sigmas, model_dtype, noise_sampler = start(x, sigmas, labels, dtype, noise_sampler, generator)
    for i, sigma, sigma_next in steps(sigmas):
        denoised = denoise(denoiser, state, sigma, labels, model_dtype)
        ratio = (sigma_next / sigma) ** 2
        state = denoised + ratio * (state - denoised)
        if sigma_next > 0:
            spread = (sigma_next / sigma) * (sigma**2 - sigma_next**2).sqrt()
            state = state + spread * draw_noise(noise_sampler, sigma, sigma_next, state)
        report(callback, i, state, sigma, sigma, sigma_next, denoised)
    return state.to(model_dtype)
