"""What a loss term sees: one batch after noising and denoising."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask


@dataclass(frozen=True, eq=False)
class LossInputs:
    """y: clean data [B, C, H, W]; noisy: x_t = y + sigma * noise [B, C, H, W]; sigma [B];
    denoised: D(x_t; sigma) [B, C, H, W], predicted at every position even under a mask;
    mask: the Mask the denoiser ran with (None = all tokens), or a GroupedMask when samples kept
    different counts (its ``dropped`` [B, L] is each sample's own mask, in batch order, so terms
    that read ``mask.dropped`` work unchanged); patch_size: side of a token's patch (None when
    there is no mask and nothing needs it)."""

    y: torch.Tensor
    noisy: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor
    mask: Mask | GroupedMask | None = None
    patch_size: int | None = None

    @property
    def masked(self) -> bool:
        """True when some token was dropped."""
        return self.mask is not None and not self.mask.is_identity
