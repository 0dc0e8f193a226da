"""Patch geometry for the losses: the patch size from a mask, patchify, pooling to tokens.

Tokens are in grid (row-major) order, the order of ``Mask.dropped`` and of a conv patch
embedding's flattened output: token index = row * (W / p) + column.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange


def infer_patch_size(image_hw: tuple[int, int], num_tokens: int, patch_size: int | None = None) -> int:
    """The square patch side p with (H / p) * (W / p) = num_tokens.

    p^2 = H W / L determines p uniquely; ``patch_size``, when given, must agree with it.
    Raises ValueError when no integer p tiles the image into ``num_tokens`` patches.
    """
    height, width = image_hw
    area = height * width
    if num_tokens < 1 or area % num_tokens:
        raise ValueError(f"a {height}x{width} image cannot be cut into {num_tokens} square patches")
    side = math.isqrt(area // num_tokens)
    if side * side * num_tokens != area or height % side or width % side:
        raise ValueError(f"a {height}x{width} image cannot be cut into {num_tokens} square patches")
    if patch_size is not None and patch_size != side:
        raise ValueError(
            f"patch_size={patch_size} disagrees with the mask: {num_tokens} tokens of a {height}x{width} "
            f"image means patch size {side}"
        )
    return side


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, p*p*C] (values of each patch last, in (p, q, c) order)."""
    return rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def pool_to_tokens(values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Per-pixel values [B, C, H, W] -> per-token means [B, L]: mean over channels, then the
    average over each p x p patch (kernel = stride = p), as the reference loss reduces."""
    per_pixel = values.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    pooled = F.avg_pool2d(per_pixel, kernel_size=patch_size, stride=patch_size)  # [B, 1, H/p, W/p]
    return pooled.flatten(1)  # [B, L]
