"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper, with a guidance interval."""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask


class ClassifierFreeGuidance:
    """D(x; sigma, c) = D_u + s (D_c - D_u), one batched call for both (conditional first).

    ``sigma_interval=(lo, hi)``: guide only samples with lo <= sigma <= hi, elsewhere the scale
    is 1 and the conditional output is returned as is (Kynkaanniemi et al. 2024, "Applying
    guidance in a limited interval ..."). ``channels=k``: guide only the first k output
    channels and keep the conditional values in the rest (DiT's ``forward_with_cfg`` guides 3
    of its 4 latent channels). The null label is ``null_label`` (the model's num_classes).
    Where the effective scale is exactly 1 the conditional output is returned bit for bit, and
    when no sample needs guidance only the conditional pass runs. A scale other than 1 without
    labels raises ValueError: there is nothing to guide towards, and running unguided would
    hide the mistake.
    """

    def __init__(
        self,
        denoiser: Any,
        scale: float,
        *,
        null_label: int,
        sigma_interval: tuple[float, float] | None = None,
        channels: int | None = None,
    ) -> None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
        if not isinstance(null_label, int) or isinstance(null_label, bool) or null_label < 0:
            raise ValueError(f"null_label must be an int >= 0 (the model's num_classes), got {null_label!r}")
        if sigma_interval is not None:
            lo, hi = sigma_interval
            if not (0.0 <= lo <= hi and not math.isnan(hi)):
                raise ValueError(f"sigma_interval must be (lo, hi) with 0 <= lo <= hi, got {sigma_interval!r}")
            sigma_interval = (float(lo), float(hi))
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        self.denoiser = denoiser
        self.scale = float(scale)
        self.null_label = null_label
        self.sigma_interval = sigma_interval
        self.channels = channels

    def __call__(
        self, x: torch.Tensor, sigma: torch.Tensor, *, labels: torch.Tensor | None = None, mask: Mask | None = None
    ) -> torch.Tensor:
        if self.scale == 1.0:
            return self.denoiser(x, sigma, labels=labels, mask=mask)
        if labels is None:
            raise ValueError(f"classifier-free guidance (scale {self.scale:g}) needs class labels: pass labels=... "
                             "(or use scale 1 for unguided samples)")
        if x.ndim < 2 or sigma.shape != (x.shape[0],) or labels.shape != (x.shape[0],):
            raise ValueError(
                f"guidance expects x [B, C, ...], sigma [B], labels [B]; got {tuple(x.shape)}, "
                f"{tuple(sigma.shape)}, {tuple(labels.shape)}"
            )
        if self.channels is not None and self.channels > x.shape[1]:
            raise ValueError(f"channels={self.channels} but the input has only {x.shape[1]} channels")
        scale = self._scales(sigma)  # [B]
        guided = scale != 1.0  # [B] bool
        if not bool(guided.any()):
            return self.denoiser(x, sigma, labels=labels, mask=mask)
        null = torch.full_like(labels, self.null_label)
        both = self.denoiser(
            torch.cat([x, x]), torch.cat([sigma, sigma]), labels=torch.cat([labels, null]), mask=_doubled(mask)
        )  # [2B, C, ...]: conditional half first
        cond, uncond = both.chunk(2)
        view = (-1,) + (1,) * (x.ndim - 1)  # [B] -> [B, 1, 1, 1]
        mixed = uncond + scale.to(cond.dtype).view(view) * (cond - uncond)
        if self.channels is not None:
            mixed = torch.cat([mixed[:, : self.channels], cond[:, self.channels :]], dim=1)
        return torch.where(guided.view(view), mixed, cond)

    def _scales(self, sigma: torch.Tensor) -> torch.Tensor:
        scale = torch.full(sigma.shape, self.scale, dtype=torch.float64, device=sigma.device)
        if self.sigma_interval is None:
            return scale
        lo, hi = self.sigma_interval
        sigma64 = sigma.to(torch.float64)
        inside = (sigma64 >= lo) & (sigma64 <= hi)
        return torch.where(inside, scale, torch.ones_like(scale))

    def __repr__(self) -> str:
        return (f"ClassifierFreeGuidance(scale={self.scale:g}, sigma_interval={self.sigma_interval}, "
                f"channels={self.channels}, null_label={self.null_label})")


def cfg(
    denoiser: Any,
    scale: float,
    *,
    sigma_interval: tuple[float, float] | None = None,
    channels: int | None = None,
    null_label: int | None = None,
) -> ClassifierFreeGuidance:
    """Wrap ``denoiser`` with classifier-free guidance (see ``ClassifierFreeGuidance``).

    ``null_label`` defaults to ``denoiser.num_classes`` (the contract's null class id).
    """
    if null_label is None:
        null_label = getattr(denoiser, "num_classes", None)
        if null_label is None:
            raise ValueError("cfg needs the null label: pass null_label=<num_classes> (the denoiser has no num_classes)")
        if null_label == 0:
            raise ValueError("cfg on an unconditional denoiser (num_classes = 0) makes no sense")
    return ClassifierFreeGuidance(denoiser, scale, null_label=int(null_label), sigma_interval=sigma_interval,
                                  channels=channels)


def _doubled(mask: Mask | GroupedMask | None) -> Mask | GroupedMask | None:
    """``mask`` for the batch [conditional half, unconditional half]: each sample's mask twice."""
    if mask is None:
        return None
    if isinstance(mask, GroupedMask):  # row b's copy in the second half is row b + B
        batch = mask.batch_size
        return GroupedMask(tuple(_doubled(group) for group in mask.groups),
                           tuple(torch.cat([rows, rows + batch]) for rows in mask.members))
    return Mask(torch.cat([mask.ids_keep, mask.ids_keep]), torch.cat([mask.ids_restore, mask.ids_restore]),
                torch.cat([mask.dropped, mask.dropped]))
