"""MAE-style reconstruction of the dropped patches (MaskDiT's auxiliary loss)."""

from __future__ import annotations

import torch

from maskdit.losses.inputs import LossInputs
from maskdit.losses.patches import patchify


class MAELoss:
    """Per-patch MSE between the denoiser output and the normalised noisy input, averaged over
    the MASKED patches (Zheng et al. 2024, sec. 3.2; He et al. 2022 "norm_pix_loss").

    target = patchify(x_t) [B, L, p*p*C], normalised per patch: (t - mean) / sqrt(var + eps)
    with the UNBIASED variance (divisor p*p*C - 1, as the reference computes it);
    prediction = patchify(D(x_t; sigma)), not normalised; no EDM weighting. Returns zeros [B]
    without computing anything when no token is dropped, and 0 for a sample that drops none
    (a group of a GroupedMask that keeps every token).
    """

    name = "mae"

    def __init__(self, eps: float = 1e-6, normalize_target: bool = True) -> None:
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.eps = float(eps)
        self.normalize_target = bool(normalize_target)

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        if not inputs.masked:
            return inputs.y.new_zeros(inputs.y.shape[0])
        if inputs.patch_size is None:
            raise ValueError("the mae loss needs the patch size to cut patches")
        target = patchify(inputs.noisy, inputs.patch_size)  # [B, L, p*p*C]
        if self.normalize_target:
            if target.shape[-1] < 2:
                raise ValueError("a normalised MAE target needs at least 2 values per patch (p*p*C >= 2)")
            mean = target.mean(dim=-1, keepdim=True)  # [B, L, 1]
            var = target.var(dim=-1, keepdim=True, unbiased=True)  # [B, L, 1]
            target = (target - mean) / (var + self.eps).sqrt()
        prediction = patchify(inputs.denoised, inputs.patch_size)  # [B, L, p*p*C]
        per_patch = ((prediction - target) ** 2).mean(dim=-1)  # [B, L]
        dropped = inputs.mask.dropped.to(per_patch.dtype)  # [B, L], 1 = dropped
        # a sample with nothing dropped has a zero sum: 0 / 1, not 0 / 0
        return (per_patch * dropped).sum(dim=1) / dropped.sum(dim=1).clamp_min(1)

    def __repr__(self) -> str:
        return f"MAELoss(eps={self.eps:g}, normalize_target={self.normalize_target})"
