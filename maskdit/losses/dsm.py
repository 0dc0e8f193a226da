"""EDM denoising score matching, averaged over the visible tokens (MaskDiT's main loss)."""

from __future__ import annotations

import torch

from maskdit.losses.inputs import LossInputs
from maskdit.losses.patches import pool_to_tokens


def edm_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def velocity_weight(sigma: torch.Tensor) -> torch.Tensor:
    """((1 + sigma) / sigma)^2: |v_hat - v|^2 of the linear interpolant = this times |x0_hat - y|^2
    (x0_hat = x_t - t v with t = sigma / (1 + sigma), REPA's convention; the same in SiT's)."""
    return (1 + 1 / sigma) ** 2


def eps_weight(sigma: torch.Tensor) -> torch.Tensor:
    """1 / sigma^2: |eps_hat - eps|^2 = this times |x0_hat - y|^2 (x = y + sigma eps; Ho et al. 2020)."""
    return sigma**-2


#: the loss weightings, each lambda(sigma) on |D - y|^2: EDM's, the velocity MSE (SiT, REPA, SPRINT), eps MSE (DDPM)
WEIGHTINGS = ("edm", "v", "eps")


class DSMLoss:
    """lambda(sigma) ||D(y + n; sigma) - y||^2 (EDM eq. 2 and 8), per sample [B].

    ``weighting`` picks lambda: ``'edm'`` (EDM's, with ``sigma_data``), ``'v'`` (the flow-matching
    velocity MSE of SiT / REPA / SPRINT, exactly, written through the denoiser's x0) or ``'eps'``
    (DDPM's noise MSE). Since every model is a denoiser D in sigma space, each weighting is the
    MSE of that parameterisation whatever the network predicts.

    Without a mask it is the plain per-sample mean over all values. With a mask (MaskDiT,
    Zheng et al. 2024, sec. 3.2): the squared error is averaged over channels and over each
    p x p patch to give one value per token [B, L], then averaged over each sample's own VISIBLE
    tokens (``mask.dropped``, also for a GroupedMask). With an identity mask both agree (up to rounding).
    ``tokens='all'`` averages over every position whatever the mask: for token routing (TREAD,
    Krause et al. 2025) and sparse-deep training (SPRINT), where every token reaches the output.
    """

    name = "dsm"

    def __init__(self, sigma_data: float = 0.5, *, tokens: str = "visible", weighting: str = "edm") -> None:
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data!r}")
        if tokens not in ("visible", "all"):
            raise ValueError(f"tokens must be 'visible' or 'all', got {tokens!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
        # sigma_data only where it is used (the objective checks it against an EDM denoiser's)
        self.sigma_data = float(sigma_data) if weighting == "edm" else None
        self.tokens = tokens
        self.weighting = weighting

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) [B] of this weighting."""
        if self.weighting == "edm":
            return edm_weight(sigma, self.sigma_data)
        return velocity_weight(sigma) if self.weighting == "v" else eps_weight(sigma)

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        weight = self.weight(inputs.sigma).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        error = weight * (inputs.denoised - inputs.y) ** 2  # [B, C, H, W]
        return covered_mean(error, inputs, self.tokens)

    def __repr__(self) -> str:
        if self.weighting != "edm":
            return f"DSMLoss(weighting={self.weighting!r}, tokens={self.tokens!r})"
        return f"DSMLoss(sigma_data={self.sigma_data:g}, tokens={self.tokens!r})"


def covered_mean(error: torch.Tensor, inputs: LossInputs, tokens: str) -> torch.Tensor:
    """Per-sample mean [B] of per-pixel ``error`` [B, C, H, W] over the positions a term covers:
    all of them (no mask, or ``tokens='all'``), else each sample's visible tokens (pooled per patch)."""
    if inputs.mask is None or tokens == "all":
        return error.flatten(1).mean(dim=1)  # [B]
    if inputs.patch_size is None:
        raise ValueError("averaging over visible tokens needs the patch size")
    per_token = pool_to_tokens(error, inputs.patch_size)  # [B, L]
    visible = (~inputs.mask.dropped).to(per_token.dtype)  # [B, L], 1 = seen by the encoder
    return (per_token * visible).sum(dim=1) / visible.sum(dim=1)
