"""The model rows of the ``--dry-run`` summary: parameters and compute at the spec's mask ratio."""

from __future__ import annotations

from maskdit.core.flops import flops_per_forward, sampling_flops, training_flops
from maskdit.core.params import count_parameters
from maskdit.core.specs import ModelSpec


def _giga(value: int) -> str:
    return f"{value / 1e9:.3g} G"


def model_rows(spec: ModelSpec, *, mask_ratio: float) -> list[tuple[str, str]]:
    """(label, value) rows: parameters (with fp32 + AdamW memory), training / sampling multiply-adds per sample."""
    total = count_parameters(spec)
    trainable = count_parameters(spec, include_frozen=False)
    state_gib = trainable * 16 / 2**30  # fp32 weights, grads, two AdamW moments
    rows = [("parameters", f"{total / 1e6:.2f}M incl. frozen pos-embeds ({trainable / 1e6:.2f}M trainable; "
                           f"~{state_gib:.2f} GiB weights+grads+AdamW in fp32)")]
    masked, unmasked = training_flops(spec, mask_ratio=mask_ratio), training_flops(spec)
    rows.append(("train FLOPs", f"{_giga(masked)} MACs/sample/step at r = {mask_ratio:g} vs {_giga(unmasked)} "
                                f"unmasked ({masked / unmasked:.2f}x); forward {_giga(flops_per_forward(spec))}"))
    rows.append(("sample FLOPs", f"{_giga(sampling_flops(spec))} MACs/sample per network evaluation "
                                 f"({_giga(sampling_flops(spec, guidance=True))} with guidance)"))
    return rows
