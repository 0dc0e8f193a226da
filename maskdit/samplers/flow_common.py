"""What the flow-space samplers share: their grid check (pure noise allowed), times, reports.

A flow-space sampler has the library's signature, ``sample(denoiser, x, sigmas, *, labels,
noise_sampler, generator, callback, dtype, ...) -> x``, but its state is the linear interpolant's
x_t = x_sigma / (1 + sigma) = (1 - s) x0 + s eps, which at pure noise (sigma = inf, s = 1) is the
unit noise itself: a ready Sampler starts it at s_0 * noise. The state is kept in float64 and the
network called in ``dtype``, as in every sampler (:mod:`maskdit.samplers.common`). The result is
the state at the grid's end: the sample when the grid ends at 0 (SiT's output otherwise).
"""

from __future__ import annotations

from typing import Any

import torch

from maskdit.processes.flow import sigma_to_t
from maskdit.samplers.common import (
    Callback,
    NoiseSampler,
    Start,
    check_dtype,
    check_labels,
    resolve_noise_sampler,
    step_info,
)


def check_flow_inputs(x: torch.Tensor, sigmas: torch.Tensor) -> None:
    """x: a finite floating [B, ...] tensor; sigmas: 1-D, >= 2 entries, strictly decreasing, >= 0,
    where only the first may be inf (pure noise) and only the last 0 (the data)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"x must be a floating tensor [B, ...], got {_describe(x)}")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D tensor of n + 1 >= 2 noise levels, got {_describe(sigmas)}")
    if bool(torch.isnan(sigmas).any()) or not bool(torch.isfinite(sigmas[1:]).all()):
        raise ValueError(f"sigmas must be finite after the first (which may be inf, pure noise), got {sigmas.tolist()}")
    if bool((sigmas < 0).any()) or bool((sigmas[:-1] <= 0).any()):
        raise ValueError("sigmas must be positive, except possibly the final one (0 = clean)")
    if bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError(f"sigmas must be strictly decreasing, got {sigmas.tolist()}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")


def start_flow(x: torch.Tensor, sigmas: torch.Tensor, labels: torch.Tensor | None, dtype: torch.dtype | None,
               noise_sampler: NoiseSampler | None = None, generator: torch.Generator | None = None) -> Start:
    """The checks and set-up every flow sampler starts with: (float64 state, float64 sigmas on
    x's device, the dtype the network runs in, the noise source)."""
    check_flow_inputs(x, sigmas)
    check_labels(labels, x.shape[0])
    model_dtype = check_dtype(dtype, x)
    sigmas = sigmas.to(device=x.device, dtype=torch.float64)
    return Start(x.to(torch.float64), sigmas, model_dtype, resolve_noise_sampler(noise_sampler, generator, x))


def noise_end_times(sigmas: torch.Tensor) -> torch.Tensor:
    """s = sigma / (1 + sigma) for each level: 1 at inf (pure noise), 0 at 0 (the data)."""
    return sigma_to_t(sigmas, "repa")


def report_flow(callback: Callback | None, i: int, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                denoised: torch.Tensor | None, **extra: Any) -> None:
    """Tell ``callback`` about step i; its ``x`` is the flow state x_t, ``denoised`` x_t - s v."""
    if callback is not None:
        callback({**step_info(i, x, sigma, sigma, sigma_next, denoised), **extra})


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
