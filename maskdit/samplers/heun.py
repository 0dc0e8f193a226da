"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun's 2nd-order method with churn."""

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
def sample_heun(
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
    """Solve the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (EDM eq. 4, with
    sigma(t) = t) from ``sigmas[0]`` down to ``sigmas[-1]``.

    Per step i (Algorithm 2): churn t_i -> t_hat (lines 4-6, only when S_churn > 0), an Euler
    step to t_{i+1} (lines 7-8), and the trapezoidal 2nd-order correction (lines 9-11) unless
    t_{i+1} = 0. ``x`` enters as sigmas[0] * noise; 2N - 1 denoiser calls for the usual
    schedule ending in 0. Deterministic when s_churn = 0 (no noise is drawn).
    """
    state, sigmas, model_dtype, noise_sampler = start(x, sigmas, labels, dtype, noise_sampler, generator)
    check_churn(s_churn, s_tmin, s_tmax, s_noise)
    num_steps = sigmas.numel() - 1
    for i, sigma, sigma_next in steps(sigmas):
        state_hat, sigma_hat = churn(state, sigma, num_steps, noise_sampler,
                                     s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
        denoised = denoise(denoiser, state_hat, sigma_hat, labels, model_dtype)
        slope = (state_hat - denoised) / sigma_hat
        state = state_hat + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:
            denoised_next = denoise(denoiser, state, sigma_next, labels, model_dtype)
            slope_next = (state - denoised_next) / sigma_next
            state = state_hat + (sigma_next - sigma_hat) * (0.5 * slope + 0.5 * slope_next)
        report(callback, i, state, sigma, sigma_hat, sigma_next, denoised)
    return state.to(model_dtype)
