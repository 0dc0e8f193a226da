"""LightningDiT's cosine term on the velocity (Yao et al. 2025, "Reconstruction vs. Generation").

1 - cos(v_hat, v) over the channels at each position, averaged over the positions the term covers;
LightningDiT adds it to the velocity MSE with weight 1. Written through the denoiser's x0 (every
model here is a sigma-space denoiser): with x = y + sigma eps, sigma v_repa = x - (1 + sigma) y, so
v_hat and v are x - (1 + sigma) D and x - (1 + sigma) y up to the same positive factor, which the
cosine ignores (and the sign of SiT's convention flips both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskdit.losses.dsm import covered_mean
from maskdit.losses.inputs import LossInputs


class VelocityCosineLoss:
    """Per sample [B]: mean over covered positions of 1 - cos(v_hat, v) along the channel axis."""

    name = "velocity_cosine"

    def __init__(self, *, tokens: str = "visible", eps: float = 1e-8) -> None:
        if tokens not in ("visible", "all"):
            raise ValueError(f"tokens must be 'visible' or 'all', got {tokens!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.tokens = tokens
        self.eps = float(eps)

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        grow = (1 + inputs.sigma).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        predicted = inputs.noisy - grow * inputs.denoised  # sigma * v_hat (REPA's sign), [B, C, H, W]
        target = inputs.noisy - grow * inputs.y  # sigma * v
        distance = 1 - F.cosine_similarity(predicted, target, dim=1, eps=self.eps)  # [B, H, W]
        return covered_mean(distance.unsqueeze(1), inputs, self.tokens)  # [B, 1, H, W] -> [B]

    def __repr__(self) -> str:
        return f"VelocityCosineLoss(tokens={self.tokens!r})"
