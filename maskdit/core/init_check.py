"""Plugins checked, not trusted: every float parameter and buffer must be written by ``init_weights``.

Modules are built on the meta device and materialised with ``to_empty``, which leaves whatever the
memory held; a tensor a block or label-embedder plugin forgets to initialise would train on that
garbage (a 1e34 norm weight, then non-finite losses blamed on the learning rate). So every float
tensor is filled with NaN before ``init_weights`` and any NaN left after it is an error naming the
tensor and the plugin that owns it. Integer buffers cannot be marked this way and are not checked.
"""

from __future__ import annotations

import torch
from torch import nn

from maskdit.core.specs import ModelSpec

SHOWN = 5  # unwritten tensors an error names before it counts the rest


class UninitializedWeightsError(RuntimeError):
    """``init_weights`` left a parameter or buffer unwritten."""


def _float_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    named = list(module.named_parameters()) + list(module.named_buffers())
    return [(name, tensor) for name, tensor in named if tensor.is_floating_point()]


def fill_nan_(module: nn.Module) -> None:
    """Mark every float parameter and buffer as unwritten (NaN)."""
    with torch.no_grad():
        for _, tensor in _float_tensors(module):
            tensor.fill_(float("nan"))


def owner(name: str, spec: ModelSpec) -> str:
    """Who initialises the tensor ``name``: a plugin (by kind and name) or the backbone itself."""
    head = name.split(".", 1)[0]
    if head in ("blocks", "decoder_blocks"):
        return f"block plugin {spec.block!r}"
    if head == "y_embedder":
        return f"label-embedder plugin {spec.label_embedder!r}"
    return "MaskDiT.init_weights"


def check_written(module: nn.Module, spec: ModelSpec) -> None:
    """Raise UninitializedWeightsError naming every tensor still holding a NaN (one sync in all)."""
    tensors = _float_tensors(module)
    if not tensors:
        return
    flags = torch.stack([tensor.isnan().any() for _, tensor in tensors]).tolist()
    unwritten = [name for (name, _), bad in zip(tensors, flags) if bad]
    if not unwritten:
        return
    by_owner: dict[str, list[str]] = {}
    for name in unwritten:
        by_owner.setdefault(owner(name, spec), []).append(name)
    parts = []
    for who, names in by_owner.items():
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        parts.append(f"{who} left {', '.join(names[:SHOWN])}{more}")
    raise UninitializedWeightsError(
        f"init_weights did not write every parameter and buffer: {'; '.join(parts)} (they start as NaN; "
        "an init_weights(generator) must set each tensor its module creates)"
    )
