"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper, with a guidance interval."""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask
from maskdit.processes.flow import t_to_sigma


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
        return self._guide(self.denoiser, x, sigma, sigma, labels, mask, "sigma")

    @property
    def convention(self) -> str | None:
        """The time convention of the wrapped model's velocity (None: it has no ``velocity``)."""
        if not callable(getattr(self.denoiser, "velocity", None)):
            return None
        return getattr(self.denoiser, "convention", None)

    @property
    def prediction(self) -> str:
        """What the wrapped flow model predicts (where its velocity is defined); 'v' if it does not say."""
        return getattr(self.denoiser, "prediction", "v")

    def velocity(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | float,
        *,
        labels: torch.Tensor | None = None,
        mask: Mask | None = None,
        sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The guided velocity v_u + s (v_c - v_u) of a wrapped flow model, on its own time ``t``
        (scalar or [B], its convention), with the same interval, channel and null-label rules.

        At fixed x_t and t, x0 = x_t - s v is affine in v, so this equals guiding x0 wherever both
        exist; the velocity also exists at pure noise, where SiT's samplers start. The interval is
        decided on ``sigma`` [B] (EDM's noise level of each sample) when given, else on the
        sigma of ``t``: a sampler that knows its grid's sigmas passes them, so a level on the
        interval's edge is decided exactly as in sigma space."""
        if self.convention is None:
            raise TypeError(f"{type(self.denoiser).__name__} has no velocity (and time convention): guide it as a "
                            "denoiser, guidance(x, sigma, ...)")
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 and x_t.ndim >= 2 else t  # [] -> [B]
        if sigma is None and self.scale != 1.0 and self.sigma_interval is not None:
            sigma = t_to_sigma(t.to(torch.float64), self.convention)  # noise end -> inf
        if sigma is None:
            sigma = torch.zeros_like(t, dtype=torch.float64)  # no interval: the level is not consulted
        return self._guide(self.denoiser.velocity, x_t, t, sigma, labels, mask, "t")

    def _guide(self, call: Any, x: torch.Tensor, time: torch.Tensor, sigma: torch.Tensor,
               labels: torch.Tensor | None, mask: Mask | None, what: str) -> torch.Tensor:
        """call(x, time) guided: the one mixing rule of __call__ (x0) and velocity (v)."""
        if self.scale == 1.0:
            return call(x, time, labels=labels, mask=mask)
        self._check_labels(labels)
        batch = (x.shape[0],) if x.ndim >= 2 else None
        labels_fit = labels is None or labels.shape == batch  # None: a weak branch that needs none
        if batch is None or time.shape != batch or sigma.shape != batch or not labels_fit:
            raise ValueError(
                f"guidance expects x [B, C, ...], {what} [B], labels [B]; got {tuple(x.shape)}, "
                f"{tuple(time.shape)}, {None if labels is None else tuple(labels.shape)}"
            )
        if self.channels is not None and self.channels > x.shape[1]:
            raise ValueError(f"channels={self.channels} but the input has only {x.shape[1]} channels")
        scale = self._scales(sigma)  # [B]
        guided = scale != 1.0  # [B] bool
        if not bool(guided.any()):
            return call(x, time, labels=labels, mask=mask)
        cond, uncond = self._branches(call, x, time, labels, mask)  # the full model, the weak branch
        view = (-1,) + (1,) * (x.ndim - 1)  # [B] -> [B, 1, 1, 1]
        mixed = uncond + scale.to(cond.dtype).view(view) * (cond - uncond)
        if self.channels is not None:
            mixed = torch.cat([mixed[:, : self.channels], cond[:, self.channels :]], dim=1)
        return torch.where(guided.view(view), mixed, cond)

    def _check_labels(self, labels: torch.Tensor | None) -> None:
        if labels is None:
            raise ValueError(f"classifier-free guidance (scale {self.scale:g}) needs class labels: pass labels=... "
                             "(or use scale 1 for unguided samples)")

    def _branches(self, call: Any, x: torch.Tensor, time: torch.Tensor, labels: torch.Tensor | None,
                  mask: Mask | GroupedMask | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) outputs [B, C, ...]: one batched call, conditional half first."""
        null = torch.full_like(labels, self.null_label)
        both = call(
            torch.cat([x, x]), torch.cat([time, time]), labels=torch.cat([labels, null]), mask=_doubled(mask)
        )  # [2B, C, ...]
        cond, uncond = both.chunk(2)
        return cond, uncond

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
