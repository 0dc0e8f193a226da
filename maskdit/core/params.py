"""Parameter counts as the papers report them: trainable parameters plus the frozen position embeddings."""

from __future__ import annotations

import torch
from torch import nn

from maskdit.core.factory import build_model
from maskdit.core.specs import ModelSpec


def count_parameters(model: nn.Module | ModelSpec, *, include_frozen: bool = True) -> int:
    """Number of parameters of a module, or of the model a ModelSpec builds (on the meta device).

    The reference figures (DiT's 675M for XL/2, Peebles & Xie 2023, Table 1; MaskDiT's 68.35M for S/2)
    count the frozen sin-cos position embeddings, which here are buffers named ``*pos_embed``;
    ``include_frozen=False`` counts only what the optimiser updates.
    """
    if isinstance(model, ModelSpec):
        model = build_model(model, device=torch.device("meta"))
    total = sum(p.numel() for p in model.parameters() if include_frozen or p.requires_grad)
    if include_frozen:
        total += sum(b.numel() for name, b in model.named_buffers() if name.split(".")[-1].endswith("pos_embed"))
    return total
