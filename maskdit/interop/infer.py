"""Read a network's architecture off the shapes of its state dict (reference DiT / MaskDiT layout).

Everything the shapes determine is inferred: widths, depths, patch size, channels, input size,
number of classes, label-embedder kind, decoder presence, learned variance, qk-norm. Head counts
leave no trace in the weights and must come from the caller.
"""

from __future__ import annotations

import math
import re
from typing import Any

from maskdit.config.errors import CheckpointError
from maskdit.io.weight_files import StateDict


def _shape(state: StateDict, key: str, ndim: int, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key}, needed to infer the architecture")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: mis-shaped key {key}: expected a {ndim}-D tensor, got shape {shape}")
    return shape


def _count(state: StateDict, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_architecture(state: StateDict, *, default_label_embedder: str, source: str = "checkpoint") -> dict[str, Any]:
    """ModelSpec fields determined by the shapes of ``state`` (keys without any wrapper prefix)."""
    hidden, channels, patch, patch_w = _shape(state, "x_embedder.proj.weight", 4, source)
    if patch != patch_w:
        raise CheckpointError(f"{source}: x_embedder.proj.weight has a non-square patch {patch}x{patch_w}")
    fields: dict[str, Any] = {"hidden_size": hidden, "in_channels": channels, "patch_size": patch}

    _, tokens, pos_width = _shape(state, "pos_embed", 3, source)
    grid = math.isqrt(tokens)
    if grid * grid != tokens or pos_width != hidden:
        raise CheckpointError(f"{source}: pos_embed {tuple(state['pos_embed'].shape)} is not [1, grid^2, {hidden}]")
    fields["input_size"] = grid * patch

    fields["depth"] = _count(state, "blocks")
    if fields["depth"] == 0:
        raise CheckpointError(f"{source}: no encoder blocks (keys blocks.<i>.*)")
    mlp_hidden = _shape(state, "blocks.0.mlp.fc1.weight", 2, source)[0]
    fields["mlp_ratio"] = mlp_hidden / hidden
    fields["qk_norm"] = "blocks.0.attn.q_norm.weight" in state

    fields["decoder_depth"] = _count(state, "decoder_blocks")
    last_width = hidden
    if fields["decoder_depth"]:
        last_width = _shape(state, "decoder_layer.linear.weight", 2, source)[0]
        fields["decoder_hidden_size"] = last_width
        decoder_mlp = _shape(state, "decoder_blocks.0.mlp.fc1.weight", 2, source)[0]
        if decoder_mlp != int(last_width * fields["mlp_ratio"]):
            raise CheckpointError(
                f"{source}: decoder MLP width {decoder_mlp} does not follow the encoder's ratio {fields['mlp_ratio']:g}"
            )

    out_features = _shape(state, "final_layer.linear.weight", 2, source)[0]
    out_channels, remainder = divmod(out_features, patch * patch)
    if remainder or out_channels not in (channels, 2 * channels):
        raise CheckpointError(
            f"{source}: final_layer.linear.weight has {out_features} outputs; expected {patch}x{patch}x{channels} "
            f"or {patch}x{patch}x{2 * channels} (learned variance)"
        )
    fields["learn_sigma"] = out_channels == 2 * channels

    fields.update(_labels(state, hidden, default_label_embedder, source))
    return fields


def _labels(state: StateDict, hidden: int, default: str, source: str) -> dict[str, Any]:
    """One-hot Linear weight [hidden, classes] or table [classes + 1, hidden]; a square one is ambiguous."""
    key = "y_embedder.embedding_table.weight"
    if key not in state:
        return {"num_classes": 0, "label_embedder": default}
    rows, cols = _shape(state, key, 2, source)
    onehot, table = rows == hidden, cols == hidden
    if onehot and table:
        kind = default
    elif onehot or table:
        kind = "onehot" if onehot else "table"
    else:
        raise CheckpointError(f"{source}: {key} has shape {(rows, cols)}; neither dimension is the width {hidden}")
    return {"label_embedder": kind, "num_classes": cols if kind == "onehot" else rows - 1}
