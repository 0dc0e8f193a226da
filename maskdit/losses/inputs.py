"""What a loss term sees: one batch after noising and denoising."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from maskdit.core.taps import TappedTokens
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask


@dataclass(frozen=True, eq=False)
class LossInputs:
    """y: clean data [B, C, H, W]; noisy: x_t = y + sigma * noise [B, C, H, W]; sigma [B];
    denoised: D(x_t; sigma) [B, C, H, W], predicted at every position even under a mask;
    mask: the Mask the denoiser ran with (None = all tokens), or a GroupedMask when samples kept
    different counts (its ``dropped`` [B, L] is each sample's own mask, in batch order, so terms
    that read ``mask.dropped`` work unchanged); patch_size: side of a token's patch (None when
    there is no mask and nothing needs it); step: the training step (None outside training);
    hidden: block index -> the tokens after that block from the same forward pass, for the
    blocks the terms asked for (their ``blocks``); heads: the model's training heads by term
    name (:mod:`maskdit.losses.heads`); pixels: the clean images [B, 3, R, R] in [-1, 1] of a
    latent batch y, for terms that read images (None: y is the images)."""

    y: torch.Tensor
    noisy: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor
    mask: Mask | GroupedMask | None = None
    patch_size: int | None = None
    step: int | None = None
    hidden: Mapping[int, tuple[TappedTokens, ...]] = field(default_factory=dict)
    heads: Mapping[str, Any] = field(default_factory=dict)
    pixels: torch.Tensor | None = None

    @property
    def clean_images(self) -> torch.Tensor:
        """The clean images of the batch: ``pixels`` when the data are latents, else y."""
        return self.pixels if self.pixels is not None else self.y

    @property
    def masked(self) -> bool:
        """True when some token was dropped."""
        return self.mask is not None and not self.mask.is_identity
