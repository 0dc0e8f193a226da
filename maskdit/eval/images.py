"""Checks and preparation of images handed to the metrics: [N, C, H, W] floats in [-1, 1]."""

from __future__ import annotations

import warnings

import torch

SLACK = 0.5  # samplers overshoot [-1, 1] a little; beyond this the range is surely wrong


class ImageRangeWarning(UserWarning):
    """The images are valid but look like they use another convention than [-1, 1]."""


def prepare_images(images: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """Validate ``images`` [N, C, H, W] in [-1, 1] and return float32 copies clamped to [-1, 1].

    With ``quantize`` the values are rounded to the 256 levels of an 8-bit image, as if the
    samples had been saved as PNGs (the reference data went through the same rounding).
    Raises on NaN/inf or a range that is clearly not [-1, 1] (e.g. [0, 255]); warns when every
    value is >= 0 (images in [0, 1] would pass the range check but be misread).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [N, C, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [-1, 1], got {images.dtype} (convert uint8 with x / 127.5 - 1)")
    if images.shape[0] == 0:
        raise ValueError("no images given")
    x = images.detach().float()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(dim=1).sum())  # [N, C, H, W] -> [N, C*H*W] -> [N]
        raise ValueError(f"{bad} of {x.shape[0]} images contain NaN or infinite values")
    low, high = x.min().item(), x.max().item()
    if low < -1 - SLACK or high > 1 + SLACK:
        hint = " (they look like 0..255 pixels: use x / 127.5 - 1)" if high > 2 and low >= -SLACK else ""
        raise ValueError(f"images must be in [-1, 1], got values in [{low:.3g}, {high:.3g}]{hint}")
    if low >= 0 and x.numel() > 1:
        warnings.warn(
            f"every image value is >= 0 (range [{low:.3g}, {high:.3g}]): are these in [0, 1]? "
            f"Metrics expect [-1, 1] (use 2 * x - 1)",
            ImageRangeWarning,
            stacklevel=2,
        )
    x = x.clamp(-1.0, 1.0)
    if quantize:
        x = ((x + 1) * 127.5).round().div(127.5).sub(1.0)
    return x
