"""Path-drop guidance (SPRINT, Park et al. 2025): classifier-free-style guidance whose weak branch
is the model with its sparse path dropped.

D(x; sigma, c) = D_weak + s (D_full - D_weak), where D_full is the model as trained to sample and
D_weak the same model with a Mask that keeps no token (:meth:`~maskdit.masking.mask.Mask.keep_none`):
the routing's sparse span sees nothing and every position rejoins as its fill (SPRINT's mask
token), fused with the dense-shallow output. A model learns that branch from path drop in
training (``masking.path_drop``). The weak branch runs only the blocks outside the sparse span,
so a guided evaluation costs one full pass plus that, not two full passes as with cfg.

The weak branch's label is the null label (``label='null'``, SPRINT's released sampler) or the
sample's own (``label='same'``: guidance by the deep path alone, which needs no labels).
Interval, channels and the scale-1 shortcut are those of :class:`ClassifierFreeGuidance`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask
from maskdit.samplers.guidance import ClassifierFreeGuidance

WeakLabel = Literal["null", "same"]


class PathDropGuidance(ClassifierFreeGuidance):
    """D = D_weak + s (D_full - D_weak), D_weak the path-dropped model (see the module docstring).

    ``num_tokens``: the backbone's token count (the keep-nothing mask's L), default the
    denoiser's ``num_tokens``. A denoiser whose spec's routing never rejoins (MaskDiT, MicroDiT)
    has no path to drop: a ValueError, as is ``label='null'`` without a null label."""

    def __init__(
        self,
        denoiser: Any,
        scale: float,
        *,
        label: WeakLabel = "null",
        null_label: int | None = None,
        sigma_interval: tuple[float, float] | None = None,
        channels: int | None = None,
        num_tokens: int | None = None,
    ) -> None:
        if label not in ("null", "same"):
            raise ValueError(f"path-drop guidance's weak label must be 'null' or 'same', got {label!r}")
        if label == "null" and null_label is None:
            raise ValueError("path-drop guidance with the null label needs null_label=<num_classes> (or label='same')")
        # the base class checks null_label; with label 'same' there is none to check
        super().__init__(denoiser, scale, null_label=0 if null_label is None else null_label,
                         sigma_interval=sigma_interval, channels=channels)
        self.null_label = null_label
        self.label = label
        routing = getattr(getattr(denoiser, "spec", None), "routing", None)
        if routing is not None and not routing.rejoins:
            raise ValueError("path-drop guidance drops the sparse path where the dropped tokens rejoin, but this "
                             "model's routing never rejoins (routing.end is not set): use cfg")
        num_tokens = getattr(denoiser, "num_tokens", None) if num_tokens is None else num_tokens
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"path-drop guidance needs the backbone's token count: pass num_tokens=... (the "
                             f"denoiser has num_tokens {num_tokens!r})")
        self.num_tokens = num_tokens

    def _check_labels(self, labels: torch.Tensor | None) -> None:
        if self.label == "null":
            super()._check_labels(labels)

    def _branches(self, call: Any, x: torch.Tensor, time: torch.Tensor, labels: torch.Tensor | None,
                  mask: Mask | GroupedMask | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(full model, path-dropped model) outputs [B, C, ...], two calls: the weak one is cheaper."""
        full = call(x, time, labels=labels, mask=mask)
        weak_labels = labels if self.label == "same" else torch.full_like(labels, self.null_label)
        dropped = Mask.keep_none(x.shape[0], self.num_tokens, device=x.device)
        weak = call(x, time, labels=weak_labels, mask=dropped)
        return full, weak

    def __repr__(self) -> str:
        return (f"PathDropGuidance(scale={self.scale:g}, label={self.label!r}, sigma_interval={self.sigma_interval}, "
                f"channels={self.channels}, null_label={self.null_label})")


def path_drop_guidance(
    denoiser: Any,
    scale: float,
    *,
    label: WeakLabel = "null",
    sigma_interval: tuple[float, float] | None = None,
    channels: int | None = None,
    null_label: int | None = None,
) -> PathDropGuidance:
    """Wrap ``denoiser`` with path-drop guidance (see :class:`PathDropGuidance`).

    With ``label='null'``, ``null_label`` defaults to ``denoiser.num_classes`` (the null class id)."""
    if label == "null" and null_label is None:
        null_label = getattr(denoiser, "num_classes", None)
        if not null_label:
            raise ValueError("path-drop guidance with the null label needs a class-conditional denoiser (or "
                             "null_label=...): use label='same' for an unconditional one")
    return PathDropGuidance(denoiser, scale, label=label, null_label=None if null_label is None else int(null_label),
                            sigma_interval=sigma_interval, channels=channels)
