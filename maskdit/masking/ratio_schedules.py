"""Mask-ratio schedules: small objects a strategy asks for "the ratio of this batch".

Call signature: ``schedule(*, step=None, sigma=None, generator=None) -> float | torch.Tensor``.
A float is the ratio of the whole batch (every sample keeps the same number of tokens); a [B]
tensor gives each sample its own ratio, and the strategy splits the batch into groups of equal
kept count (see :mod:`maskdit.masking.strategies`). ``min_ratio`` / ``max_ratio`` bound every
value a schedule returns.
"""

from __future__ import annotations

import math

import torch


class ConstantRatio:
    def __init__(self, ratio: float) -> None:
        _check_ratio(ratio, "ratio")
        self.ratio = float(ratio)

    @property
    def min_ratio(self) -> float:
        return self.ratio

    @property
    def max_ratio(self) -> float:
        return self.ratio

    def __call__(self, *, step=None, sigma=None, generator=None) -> float:
        return self.ratio

    def __repr__(self) -> str:
        return f"ConstantRatio({self.ratio:g})"



class UniformRatio:
    """r ~ U[low, high], drawn once per batch from the caller's generator (as in MDT)."""

    def __init__(self, low: float, high: float) -> None:
        _check_ratio(low, "low")
        _check_ratio(high, "high")
        if low > high:
            raise ValueError(f"low ({low}) must not exceed high ({high})")
        self.low, self.high = float(low), float(high)

    @property
    def min_ratio(self) -> float:
        return self.low

    @property
    def max_ratio(self) -> float:
        return self.high

    def __call__(self, *, step=None, sigma=None, generator=None) -> float:
        device = generator.device if generator is not None else "cpu"
        u = torch.rand((), generator=generator, device=device).item()
        return self.low + (self.high - self.low) * u

    def __repr__(self) -> str:
        return f"UniformRatio(low={self.low:g}, high={self.high:g})"



class CosineRatio:
    """Half-cosine ramp from ``start`` (step 0) to ``end`` (step >= total_steps)."""

    def __init__(self, start: float, end: float, total_steps: int) -> None:
        _check_ratio(start, "start")
        _check_ratio(end, "end")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.start, self.end, self.total_steps = float(start), float(end), int(total_steps)

    @property
    def min_ratio(self) -> float:
        return min(self.start, self.end)

    @property
    def max_ratio(self) -> float:
        return max(self.start, self.end)

    def __call__(self, *, step=None, sigma=None, generator=None) -> float:
        if step is None:
            raise ValueError("the cosine mask-ratio schedule needs the training step (step=...)")
        progress = min(max(step, 0) / self.total_steps, 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return f"CosineRatio(start={self.start:g}, end={self.end:g}, total_steps={self.total_steps})"



class SigmaRatio:
    """Noise-adaptive ratio: each sample's ratio follows its own sigma, linear in log-sigma between
    (sigma_min, r_min) and (sigma_max, r_max) and clamped outside (so r_max > r_min drops more
    tokens at high noise, where fine detail is gone anyway).

    Returns a [B] float64 tensor of per-sample ratios, quantised to at most ``groups`` values so
    the encoder runs a few dense groups rather than one per sample: the samples are sorted by
    sigma (stable, ties in batch order), cut into ``groups`` contiguous runs of near-equal size
    (the first ``B mod groups`` runs one longer), and each run gets the mean of its members'
    ratios (so the group's token budget is theirs, up to the kept count's rounding). The ratio
    is therefore non-decreasing in sigma when r_max >= r_min (non-increasing otherwise);
    ``groups >= B`` gives every sample its exact ratio. No randomness is drawn.
    """

    def __init__(self, r_min: float, r_max: float, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 *, groups: int = 4) -> None:
        _check_ratio(r_min, "r_min")
        _check_ratio(r_max, "r_max")
        if not 0 < sigma_min < sigma_max < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be an int >= 1, got {groups!r}")
        self.r_min, self.r_max, self.groups = float(r_min), float(r_max), groups
        self.log_lo, self.log_hi = math.log(sigma_min), math.log(sigma_max)

    @property
    def min_ratio(self) -> float:
        return min(self.r_min, self.r_max)

    @property
    def max_ratio(self) -> float:
        return max(self.r_min, self.r_max)

    def per_sample(self, sigma: torch.Tensor) -> torch.Tensor:
        """[B] sigma -> [B] float64: each sample's exact ratio on the log-sigma ramp (no grouping)."""
        log_sigma = self._log_sigma(sigma)
        t = ((log_sigma - self.log_lo) / (self.log_hi - self.log_lo)).clamp(0.0, 1.0)
        return self.r_min + (self.r_max - self.r_min) * t

    def __call__(self, *, step=None, sigma=None, generator=None) -> torch.Tensor:
        exact = self.per_sample(sigma)  # [B]
        order = torch.argsort(self._log_sigma(sigma), stable=True)  # batch rows by increasing sigma
        grouped = torch.empty_like(exact)
        for run in torch.tensor_split(order, min(self.groups, order.numel())):  # contiguous runs of sorted rows
            grouped[run] = exact[run].mean()
        return grouped

    @staticmethod
    def _log_sigma(sigma) -> torch.Tensor:
        if sigma is None:
            raise ValueError("the sigma mask-ratio schedule needs the batch's noise levels (sigma=...)")
        sigma = torch.as_tensor(sigma).detach().to("cpu", torch.float64)
        if sigma.ndim != 1 or sigma.numel() == 0 or not bool(torch.isfinite(sigma).all()) or bool((sigma <= 0).any()):
            raise ValueError("sigma must be a non-empty [B] tensor of finite, positive noise levels, got "
                             f"shape {tuple(sigma.shape)}")
        return sigma.log()

    def __repr__(self) -> str:
        return (f"SigmaRatio(r_min={self.r_min:g}, r_max={self.r_max:g}, sigma_min={math.exp(self.log_lo):g}, "
                f"sigma_max={math.exp(self.log_hi):g}, groups={self.groups})")



def _check_ratio(value: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise ValueError(f"{what} must be a mask ratio in [0, 1), got {value!r}")
