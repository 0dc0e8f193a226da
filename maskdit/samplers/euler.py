"""First-order Euler on the probability-flow ODE (EDM Algorithm 2 without the correction)."""

from __future__ import annotations

import torch

from maskdit.samplers.common import (
    Callback,
    DenoiserFn,
    NoiseSampler,
    check_churn,
    churn,
    denoise,
    report,
    start,
    steps,
)


@torch.no_grad()
def sample_euler(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float | None = None,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """x_{i+1} = x_hat + (t_{i+1} - t_hat) (x_hat - D(x_hat; t_hat)) / t_hat (EDM eq. 4 with
    sigma(t) = t, Algorithm 2 lines 4-8); churn as in ``sample_heun``. N denoiser calls.
    In sigma space this is also DDIM with eta = 0 (Song et al. 2021; Karras et al. 2022, sec. 3)."""
    state, sigmas, model_dtype, noise_sampler = start(x, sigmas, labels, dtype, noise_sampler, generator)
    check_churn(s_churn, s_tmin, s_tmax, s_noise)
    num_steps = sigmas.numel() - 1
    for i, sigma, sigma_next in steps(sigmas):
        state_hat, sigma_hat = churn(state, sigma, num_steps, noise_sampler,
                                     s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
        denoised = denoise(denoiser, state_hat, sigma_hat, labels, model_dtype)
        state = state_hat + (sigma_next - sigma_hat) * (state_hat - denoised) / sigma_hat
        report(callback, i, state, sigma, sigma_hat, sigma_next, denoised)
    return state.to(model_dtype)
