"""EDM denoising score matching, averaged over the visible tokens (MaskDiT's main loss)."""

from __future__ import annotations

import torch

from maskdit.losses.inputs import LossInputs
from maskdit.losses.patches import pool_to_tokens


def edm_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class DSMLoss:
    """lambda(sigma) ||D(y + n; sigma) - y||^2 (EDM eq. 2 and 8), per sample [B].

    Without a mask it is the plain per-sample mean over all values. With a mask (MaskDiT,
    Zheng et al. 2024, sec. 3.2): the squared error is averaged over channels and over each
    p x p patch to give one value per token [B, L], then averaged over each sample's own VISIBLE
    tokens (``mask.dropped``, also for a GroupedMask). With an identity mask both agree (up to rounding).
    ``tokens='all'`` averages over every position whatever the mask: for token routing (TREAD,
    Krause et al. 2025) and sparse-deep training (SPRINT), where every token reaches the output.
    """

    name = "dsm"

    def __init__(self, sigma_data: float = 0.5, *, tokens: str = "visible") -> None:
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data!r}")
        if tokens not in ("visible", "all"):
            raise ValueError(f"tokens must be 'visible' or 'all', got {tokens!r}")
        self.sigma_data = float(sigma_data)
        self.tokens = tokens

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        weight = edm_weight(inputs.sigma, self.sigma_data).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        error = weight * (inputs.denoised - inputs.y) ** 2  # [B, C, H, W]
        if inputs.mask is None or self.tokens == "all":
            return error.flatten(1).mean(dim=1)  # [B]
        if inputs.patch_size is None:
            raise ValueError("the dsm loss needs the patch size to average over visible tokens")
        per_token = pool_to_tokens(error, inputs.patch_size)  # [B, L]
        visible = (~inputs.mask.dropped).to(per_token.dtype)  # [B, L], 1 = seen by the encoder
        return (per_token * visible).sum(dim=1) / visible.sum(dim=1)

    def __repr__(self) -> str:
        return f"DSMLoss(sigma_data={self.sigma_data:g}, tokens={self.tokens!r})"
