"""The linear interpolant (rectified flow; Liu et al. 2022) and its exact maps to EDM's sigma space.

Two time conventions are in use, both for x_t = a straight line between data x and noise eps:

- ``'sit'`` (Ma et al. 2024, SiT): x_t = t x + (1 - t) eps, t = 1 is data, target v = x - eps;
- ``'repa'`` (Yu et al. 2025, REPA; also SD3, Esser et al. 2024): x_t = (1 - t) x + t eps, t = 1 is
  noise, target v = eps - x.

Write s for the noise-end time (s = t under 'repa', s = 1 - t under 'sit'). Then
sigma = s / (1 - s), x_sigma = x + sigma eps = x_t / (1 - s), so x_t = scale * x_sigma with
scale = 1 - s = 1 / (1 + sigma), and x0_hat = x_t - s v_repa. Each convention has its own formulas
(not 1 - t fed to the other), so SiT's t near 1 keeps its precision.

Pure noise (s = 1, sigma = inf) is handled exactly wherever the value exists: ``t_to_sigma`` gives
inf, ``sigma_to_t`` maps inf to the noise end, ``scale`` gives 0, and v <-> x0 are finite there.
No function returns NaN for valid input. Times are checked to lie in [0, 1], sigmas in [0, inf];
a bad value raises ValueError (a device tensor's check synchronises with the device).
Tensors of times or sigmas are [B] (one per sample) or scalars; they broadcast over x's other dims.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

Convention = Literal["sit", "repa"]
CONVENTIONS: tuple[str, ...] = get_args(Convention)


def check_convention(convention: object) -> Convention:
    """Return ``convention`` if it names a time convention, else raise ValueError."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")
    return convention  # type: ignore[return-value]


def t_to_sigma(t: torch.Tensor | float, convention: Convention = "repa") -> torch.Tensor:
    """EDM's sigma for flow time ``t``: s / (1 - s) with s the noise-end time.

    The noise end ('repa' t = 1, 'sit' t = 0) gives sigma = inf; the data end gives 0."""
    convention = check_convention(convention)
    t = _time(t, "t")
    if convention == "repa":
        return t / (1 - t)
    return (1 - t) / t


def sigma_to_t(sigma: torch.Tensor | float, convention: Convention = "repa") -> torch.Tensor:
    """Flow time for EDM's ``sigma``: 'repa' sigma / (1 + sigma), 'sit' 1 / (1 + sigma).

    sigma = inf gives the noise end exactly ('repa' 1, 'sit' 0); sigma = 0 gives the data end."""
    convention = check_convention(convention)
    sigma = _sigma(sigma, "sigma")
    if convention == "sit":
        return 1 / (1 + sigma)
    return torch.where(torch.isinf(sigma), torch.ones_like(sigma), sigma / (1 + sigma))  # inf / inf is NaN


def scale(t: torch.Tensor | float, convention: Convention = "repa") -> torch.Tensor:
    """The factor in x_t = scale * x_sigma (x_sigma = x + sigma eps): 1 - s = 1 / (1 + sigma).

    At the noise end it is 0 (x_sigma is infinite there and x_t = eps: use :func:`interpolate`)."""
    convention = check_convention(convention)
    t = _time(t, "t")
    return 1 - t if convention == "repa" else t


def interpolate(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float,
                convention: Convention = "repa") -> torch.Tensor:
    """x_t on the straight line from data ``x`` to noise ``eps``; exact at both ends."""
    convention = check_convention(convention)
    if x.shape != eps.shape:
        raise ValueError(f"x and eps must have one shape, got {tuple(x.shape)} and {tuple(eps.shape)}")
    t = _per_sample(_time(t, "t"), x, "t")
    data_weight = 1 - t if convention == "repa" else t
    return data_weight * x + (1 - data_weight) * eps


def velocity(x: torch.Tensor, eps: torch.Tensor, convention: Convention = "repa") -> torch.Tensor:
    """The regression target dx_t/dt: 'repa' eps - x, 'sit' x - eps."""
    convention = check_convention(convention)
    if x.shape != eps.shape:
        raise ValueError(f"x and eps must have one shape, got {tuple(x.shape)} and {tuple(eps.shape)}")
    return eps - x if convention == "repa" else x - eps


def v_to_x0(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float,
            convention: Convention = "repa") -> torch.Tensor:
    """The data estimate for a velocity: 'repa' x_t - t v, 'sit' x_t + (1 - t) v. Exact everywhere,
    pure noise included (there 'repa' gives x_t - v)."""
    convention = check_convention(convention)
    _same_shape(x_t, v, "v")
    t = _per_sample(_time(t, "t"), x_t, "t")
    return x_t - t * v if convention == "repa" else x_t + (1 - t) * v


def x0_to_v(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | float,
            convention: Convention = "repa") -> torch.Tensor:
    """The velocity for a data estimate: 'repa' (x_t - x0) / t, 'sit' (x0 - x_t) / (1 - t).

    Finite at pure noise ('repa' x_t - x0). At the data end (noise-end time 0) x0 does not
    determine v: a time there raises ValueError."""
    convention = check_convention(convention)
    _same_shape(x_t, x0, "x0")
    t = _time(t, "t")
    noise_time = t if convention == "repa" else 1 - t
    if bool((noise_time == 0).any()):
        raise ValueError(f"x0_to_v: t at the data end ({'0' if convention == 'repa' else '1'} under "
                         f"{convention!r}) leaves the velocity undetermined by x0")
    noise_time = _per_sample(noise_time, x_t, "t")
    return (x_t - x0) / noise_time if convention == "repa" else (x0 - x_t) / noise_time


def v_loss_weight(sigma: torch.Tensor | float) -> torch.Tensor:
    """lambda(sigma) = ((1 + sigma) / sigma)^2: |v_hat - v|^2 = lambda(sigma) |x0_hat - x|^2 in
    either convention. inf at sigma = 0, 1 at sigma = inf."""
    sigma = _sigma(sigma, "sigma")
    return (1 + 1 / sigma) ** 2


def time_shift(t: torch.Tensor | float, shift: float, convention: Convention = "repa") -> torch.Tensor:
    """SD3's / RAE's time shift (Esser et al. 2024), defined on the noise-end time s ('repa' t):
    s' = a s / (1 + (a - 1) s), i.e. sigma' = a sigma. Under 'sit' it is applied to 1 - t:
    t' = t / (t + a (1 - t)). a > 1 moves times towards noise; both ends stay fixed exactly."""
    convention = check_convention(convention)
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (0 < shift < float("inf")):
        raise ValueError(f"time_shift: shift must be a finite number > 0, got {shift!r}")
    t = _time(t, "t")
    if shift == 1:
        return t.clone()
    # written so each end is exact: a s + (1 - s) is a at s = 1 (1 + (a - 1) s need not round to a)
    if convention == "repa":
        return shift * t / (shift * t + (1 - t))
    return t / (t + shift * (1 - t))


def _time(t: torch.Tensor | float, what: str) -> torch.Tensor:
    t = _as_tensor(t, what)
    inside = (t >= 0) & (t <= 1)  # NaN is outside
    if not bool(inside.all()):
        raise ValueError(f"{what} must lie in [0, 1], got {_show(t[~inside])}")
    return t


def _sigma(sigma: torch.Tensor | float, what: str) -> torch.Tensor:
    sigma = _as_tensor(sigma, what)
    valid = sigma >= 0  # NaN fails too; +inf (pure noise) passes
    if not bool(valid.all()):
        raise ValueError(f"{what} must be >= 0 (inf allowed), got {_show(sigma[~valid])}")
    return sigma


def _as_tensor(value: torch.Tensor | float, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise ValueError(f"{what} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number or a float tensor, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=torch.float64)


def _per_sample(values: torch.Tensor, x: torch.Tensor, what: str) -> torch.Tensor:
    """A scalar as is, a [B] tensor shaped [B, 1, ...] to broadcast over x [B, ...]."""
    if values.ndim == 0:
        return values.to(x.dtype) if x.is_floating_point() else values
    if values.ndim != 1 or x.ndim == 0 or values.shape[0] != x.shape[0]:
        raise ValueError(f"{what} must be a scalar or one value per sample [{x.shape[0] if x.ndim else '?'}], "
                         f"got shape {tuple(values.shape)}")
    return values.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _same_shape(x_t: torch.Tensor, other: torch.Tensor, what: str) -> None:
    if x_t.shape != other.shape:
        raise ValueError(f"x_t and {what} must have one shape, got {tuple(x_t.shape)} and {tuple(other.shape)}")


def _show(values: torch.Tensor) -> str:
    flat = values.detach().flatten()
    return repr(flat[:4].tolist()) + (" ..." if flat.numel() > 4 else "")


def has_velocity(prediction: str, sigma: float) -> bool:
    """Whether a network on the linear interpolant predicting ``prediction`` gives a velocity at noise level ``sigma``:
    a velocity network everywhere, an x0 network not at the data end (sigma = 0), an eps network
    not at pure noise (sigma = inf)."""
    if prediction == "x0":
        return sigma > 0.0
    if prediction == "eps":
        return sigma < math.inf
    return True
