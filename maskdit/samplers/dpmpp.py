"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), multistep 2nd order."""

from __future__ import annotations

import torch

from maskdit.samplers.common import (
    Callback,
    DenoiserFn,
    NoiseSampler,
    denoise,
    report,
    start,
    steps,
)


@torch.no_grad()
def sample_dpmpp_2m(
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
    """Data-prediction multistep solver in lambda = -log(sigma) (EDM scaling, where alpha = 1).

    With h = lambda_{i+1} - lambda_i, the first-order step is
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + (1 - e^{-h}) D_i (Lu et al. eq. 9, = DDIM);
    from the second step on, D_i is replaced by (1 + 1 / (2 r)) D_i - 1 / (2 r) D_{i-1} with
    r = h_{i-1} / h (Algorithm 2). The step to sigma = 0 is first order (it returns D_i), as
    in the reference solver with ``lower_order_final``. Deterministic; ``noise_sampler`` and
    ``generator`` are accepted for a uniform signature and never used.
    """
    state, sigmas, model_dtype, noise_sampler = start(x, sigmas, labels, dtype, noise_sampler, generator)
    previous: torch.Tensor | None = None
    h_previous: torch.Tensor | None = None
    for i, sigma, sigma_next in steps(sigmas):
        denoised = denoise(denoiser, state, sigma, labels, model_dtype)
        if sigma_next == 0:
            state = denoised
        else:
            h = (sigma / sigma_next).log()  # lambda_{i+1} - lambda_i
            target = denoised
            if previous is not None and h_previous is not None:
                r = h_previous / h
                target = (1.0 + 0.5 / r) * denoised - (0.5 / r) * previous
            state = (sigma_next / sigma) * state - torch.expm1(-h) * target
            h_previous = h
        previous = denoised
        report(callback, i, state, sigma, sigma, sigma_next, denoised)
    return state.to(model_dtype)
