"""What an encoder does to the data's images before its network: channels, value range, size.

The data's images are in [-1, 1] (the digits, or a latent dataset's decoded images); encoders
pretrained on ImageNet expect RGB in [0, 1] normalised by ImageNet's channel statistics, at their
own resolution. REPA (Yu et al. 2025, the ``preprocess_raw_image`` of its code) normalises first
and then resizes bicubically (no antialiasing) to 224 for a 256-pixel image; the same order here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ImageNet's per-channel mean and standard deviation of RGB in [0, 1] (torchvision's constants)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_channels(images: torch.Tensor, channels: int, *, encoder: str) -> torch.Tensor:
    """[B, C, H, W] -> [B, channels, H, W]: grey images repeated when the encoder reads 3 channels;
    any other channel count is refused (an encoder reads images, not latents)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, channels, -1, -1)  # grey -> the same value in every channel
    accepted = "1 channel" if channels == 1 else f"1 or {channels} channels"
    raise ValueError(f"the {encoder} encoder reads images with {accepted}, got {have} channels "
                     f"(shape {tuple(images.shape)}); a latent dataset must hand it decoded images")


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """RGB images [B, 3, H, W] in [-1, 1] -> ImageNet-normalised ((x + 1) / 2 - mean) / std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size] by bicubic interpolation (unchanged when already that size)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
