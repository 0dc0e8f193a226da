"""What every sampler shares: input checks, the float64 state / model-dtype call, noise, churn.

Conventions (EDM, Karras et al. 2022, Algorithm 2 and its reference code): the sampler state
is kept in float64; the denoiser is called in ``dtype`` (default: the dtype the caller's ``x``
came in, e.g. float32 for a float32 network) with one noise level per sample, and its output
is promoted back to float64. The result is returned in that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

import torch

#: noise_sampler(sigma, sigma_next) -> unit Gaussian noise shaped like the sampler state.
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: callback({"i", "x", "sigma", "sigma_hat", "sigma_next", "denoised"}) after every step.
Callback = Callable[[dict[str, Any]], None]


class DenoiserFn(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *, labels: torch.Tensor | None = None,
                 mask: Any = None) -> torch.Tensor: ...


def check_inputs(x: torch.Tensor, sigmas: torch.Tensor) -> None:
    """x: a floating [B, ...] tensor; sigmas: 1-D, >= 2 entries, finite, strictly decreasing, >= 0,
    and only the last may be 0."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"x must be a floating tensor [B, ...], got {_describe(x)}")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D tensor of n + 1 >= 2 noise levels, got {_describe(sigmas)}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"sigmas must be finite, got {sigmas.tolist()}")
    if bool((sigmas < 0).any()) or bool((sigmas[:-1] <= 0).any()):
        raise ValueError("sigmas must be positive, except possibly the final one (0 = clean)")
    if bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError(f"sigmas must be strictly decreasing, got {sigmas.tolist()}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")


def check_dtype(dtype: torch.dtype | None, x: torch.Tensor) -> torch.dtype:
    """The dtype the denoiser is called in and the result returned in: ``dtype`` or x's own."""
    if dtype is None:
        return x.dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    return dtype


class Start(NamedTuple):
    """What every sampler's loop starts from (see :func:`start`)."""

    state: torch.Tensor  # x in float64
    sigmas: torch.Tensor  # float64, on x's device
    model_dtype: torch.dtype  # the denoiser is called in it and the result returned in it
    noise_sampler: NoiseSampler


def start(x: torch.Tensor, sigmas: torch.Tensor, labels: torch.Tensor | None, dtype: torch.dtype | None,
          noise_sampler: NoiseSampler | None = None, generator: torch.Generator | None = None) -> Start:
    """The prelude every sampler shares: :func:`prepare`, then the noise source (see
    :func:`resolve_noise_sampler`)."""
    state, sigmas, model_dtype = prepare(x, sigmas, labels, dtype)
    return Start(state, sigmas, model_dtype, resolve_noise_sampler(noise_sampler, generator, x))


def prepare(x: torch.Tensor, sigmas: torch.Tensor, labels: torch.Tensor | None,
            dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """The checks and set-up of :func:`start` without the noise: (float64 state, float64 sigmas
    on x's device, the dtype the denoiser is called in and the result returned in)."""
    check_inputs(x, sigmas)
    check_labels(labels, x.shape[0])
    model_dtype = check_dtype(dtype, x)
    return x.to(torch.float64), sigmas.to(device=x.device, dtype=torch.float64), model_dtype


def steps(sigmas: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(i, sigma_i, sigma_{i+1})`` for each of the ``len(sigmas) - 1`` steps."""
    for i in range(sigmas.numel() - 1):
        yield i, sigmas[i], sigmas[i + 1]


def report(callback: Callback | None, i: int, x: torch.Tensor, sigma: torch.Tensor, sigma_hat: torch.Tensor,
           sigma_next: torch.Tensor, denoised: torch.Tensor) -> None:
    """Tell ``callback`` (if any) about step i: see :data:`Callback`."""
    if callback is not None:
        callback(step_info(i, x, sigma, sigma_hat, sigma_next, denoised))


def step_info(i: int, x: torch.Tensor, sigma: torch.Tensor, sigma_hat: torch.Tensor, sigma_next: torch.Tensor,
              denoised: torch.Tensor) -> dict[str, Any]:
    """What a :data:`Callback` is told after step i."""
    return {"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "sigma_next": sigma_next, "denoised": denoised}


def check_labels(labels: torch.Tensor | None, batch_size: int) -> None:
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor) or labels.shape != (batch_size,) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor [B={batch_size}], got {_describe(labels)}")


def denoise(
    denoiser: DenoiserFn, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None, model_dtype: torch.dtype
) -> torch.Tensor:
    """D(x; sigma) with the state x (float64) and the scalar sigma cast to ``model_dtype``;
    sigma is broadcast to [B]. Returns float64, shaped like x."""
    sigma_batch = sigma.to(model_dtype).expand(x.shape[0]).contiguous()  # [] -> [B]
    out = denoiser(x.to(model_dtype), sigma_batch, labels=labels)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"the denoiser must return a tensor shaped like x {tuple(x.shape)}, got {_describe(out)}")
    return out.to(torch.float64)


def resolve_noise_sampler(
    noise_sampler: NoiseSampler | None, generator: torch.Generator | None, like: torch.Tensor
) -> NoiseSampler:
    """The caller's noise sampler, else unit noise from ``generator``; with neither, a function
    that raises on first use (library code never draws from the global RNG)."""
    if noise_sampler is not None:
        return noise_sampler
    if generator is not None:
        return generator_noise_sampler(like, generator)

    def missing(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        raise ValueError("this sampler draws noise: pass noise_sampler=... or generator=...")

    return missing


def generator_noise_sampler(like: torch.Tensor, generator: torch.Generator) -> NoiseSampler:
    """Unit Gaussian noise shaped and typed like ``like``, drawn from ``generator``."""

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)

    return sample


def draw_noise(
    noise_sampler: NoiseSampler, sigma: torch.Tensor, sigma_next: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """noise_sampler(sigma, sigma_next), checked and promoted to the state's float64."""
    noise = noise_sampler(sigma, sigma_next)
    if not isinstance(noise, torch.Tensor) or noise.shape != x.shape:
        raise ValueError(f"noise_sampler must return noise shaped like x {tuple(x.shape)}, got {_describe(noise)}")
    return noise.to(torch.float64)


def churn(
    x: torch.Tensor,
    sigma: torch.Tensor,
    num_steps: int,
    noise_sampler: NoiseSampler,
    *,
    s_churn: float,
    s_tmin: float,
    s_tmax: float | None,
    s_noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM Algorithm 2, lines 4-6: raise the noise level from t_i to t_hat = (1 + gamma) t_i
    with gamma = min(S_churn / N, sqrt(2) - 1) inside [S_tmin, S_tmax], adding
    sqrt(t_hat^2 - t_i^2) S_noise eps. With gamma = 0 nothing is drawn and x is returned as is."""
    value = float(sigma)
    inside = s_tmin <= value and (s_tmax is None or value <= s_tmax)
    gamma = min(s_churn / num_steps, math.sqrt(2.0) - 1.0) if inside and s_churn > 0 else 0.0
    if gamma == 0.0:
        return x, sigma
    sigma_hat = sigma + gamma * sigma
    eps = draw_noise(noise_sampler, sigma, sigma_hat, x)
    return x + (sigma_hat**2 - sigma**2).sqrt() * s_noise * eps, sigma_hat


def check_churn(s_churn: float, s_tmin: float, s_tmax: float | None, s_noise: float) -> None:
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if s_tmax is not None and not (s_tmax >= s_tmin):
        raise ValueError(f"s_tmax ({s_tmax}) must be >= s_tmin ({s_tmin}) or None (no upper limit)")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def per_sample_noise_sampler(generators: list[torch.Generator], like: torch.Tensor) -> NoiseSampler:
    """Noise for sample b drawn from ``generators[b]`` alone, so a sample's noise does not depend
    on the batch it is drawn in (the same seed gives the same image at any batch size)."""
    if len(generators) != like.shape[0]:
        raise ValueError(f"need one generator per sample: {len(generators)} for a batch of {like.shape[0]}")

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        rows = [torch.randn(like.shape[1:], generator=g, dtype=like.dtype, device=like.device) for g in generators]
        return torch.stack(rows)  # B x [C, H, W] -> [B, C, H, W]

    return sample
