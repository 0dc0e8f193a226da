"""ADM's centre crop (Dhariwal & Nichol 2021, ``guided_diffusion/image_datasets.py``) and [-1, 1] scaling.

The crop first halves the image with a box filter while its short side is at least twice the
target (cheap, alias-free downsampling of large photos), then resizes bicubically so the short
side equals the target, and finally cuts the centre square. DiT and MaskDiT prepare ImageNet
this way, so latents and FID references made here match theirs.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def adm_center_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre ``size`` x ``size`` square of ``image`` after ADM's box-then-bicubic resize."""
    if size < 1:
        raise ValueError(f"crop size must be >= 1, got {size}")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.Resampling.BICUBIC)
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape) -> float32 in [-1, 1] (pixel / 127.5 - 1)."""
    return pixels.float().div_(127.5).sub_(1.0)  # in place on the new float copy: one buffer


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> float32 [3, H, W] in [-1, 1] (pixel / 127.5 - 1)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    return from_uint8(torch.from_numpy(pixels.copy()).permute(2, 0, 1))  # [H, W, 3] -> [3, H, W]
