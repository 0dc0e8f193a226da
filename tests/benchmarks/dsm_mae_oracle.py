"""An independent DSM + MAE loss (MaskDiT, Zheng et al. 2024, sec. 3.2), written from the paper with
plain torch ops: the cross-check of the library objective the train_step study times."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskdit import Mask


def dsm_mae_loss(denoised: torch.Tensor, y: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor, mask: Mask, *,
                 patch_size: int, sigma_data: float = 0.5, mae_weight: float = 0.1) -> torch.Tensor:
    """Per sample [B]: EDM-weighted DSM averaged over visible patches + ``mae_weight`` x the MSE of the
    prediction against the per-patch normalised noisy input, averaged over masked patches."""
    p = patch_size
    weight = ((sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2).reshape(-1, 1, 1, 1)  # EDM lambda(sigma)
    per_token = F.avg_pool2d((weight * (denoised - y) ** 2).mean(1, keepdim=True), p).flatten(1)  # [B, L]
    visible = (~mask.dropped).float()
    dsm = (per_token * visible).sum(1) / visible.sum(1)
    patches = F.unfold(noisy, p, stride=p).transpose(1, 2)  # [B, L, C*p*p]
    target = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    prediction = F.unfold(denoised, p, stride=p).transpose(1, 2)
    dropped = mask.dropped.float()
    mae = (((prediction - target) ** 2).mean(-1) * dropped).sum(1) / dropped.sum(1).clamp(min=1)
    return dsm + mae_weight * mae
