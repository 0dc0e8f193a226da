"""The frozen representation encoder contract (what representation alignment aligns to).

``encoder(images) -> features``: images [B, C, H, W] in the data's range [-1, 1] (the digits, or
decoded images of a latent dataset), features [B, D, h, w] on the encoder's own patch grid, D =
``encoder.width``. Preprocessing (channel repeat, ImageNet normalisation, resize) happens inside.
The encoder is frozen: no parameter requires a gradient and it stays in eval mode whatever
``train()`` asks, so a trainer that calls ``model.train()`` on everything cannot switch on its
dropout or change its normalisation statistics (REPA, Yu et al. 2025, sec. 3: the target network
is a fixed pretrained encoder).
"""

from __future__ import annotations

import torch
from torch import nn


class FrozenEncoder(nn.Module):
    """Base of every encoder plugin: subclasses set the four sizes below and implement
    :meth:`encode`; :meth:`forward` checks the input and runs it without gradients."""

    width: int  # feature channels D
    in_channels: int  # image channels the encoder reads after its own preprocessing (3 for DINOv2)
    image_size: int  # the side every image is resized to before the network
    patch_size: int  # features [B, D, image_size // patch_size, image_size // patch_size]

    @property
    def grid_size(self) -> int:
        """The side of the feature grid h = w."""
        return self.image_size // self.patch_size

    def freeze(self) -> FrozenEncoder:
        """Stop gradients to every parameter and switch to eval mode; call at the end of __init__."""
        for param in self.parameters():
            param.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)  # frozen: never in training mode (dropout off, statistics fixed)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] in [-1, 1] -> features [B, D, h, w]."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"an encoder takes float images [B, C, H, W], got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        with torch.no_grad():
            features = self.encode(images)
        if features.ndim != 4 or features.shape[0] != images.shape[0] or features.shape[1] != self.width:
            raise ValueError(f"{type(self).__name__} returned features of shape {tuple(features.shape)}; the "
                             f"contract is [B={images.shape[0]}, D={self.width}, h, w]")
        return features
