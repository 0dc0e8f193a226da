"""The network's plugins: transformer blocks and label embedders, named by ``model.block`` and
``model.label_embedder`` (plain strings in JSON).

A block plugin's ``build()`` returns a factory ``block(width, num_heads, *, cond_dim, mlp_ratio,
qk_norm) -> nn.Module`` with ``forward(x [B, N, width], c [B, cond_dim]) -> [B, N, width]`` and
``init_weights(generator)``; a label-embedder plugin's ``build()`` returns ``embedder(num_classes,
hidden)`` with ``forward(labels [B] int) -> [B, hidden]`` and ``init_weights(generator)``.
"""

from __future__ import annotations

from typing import Any, Literal

from maskdit.config.registry import Registry, register, registry
from maskdit.config.spec_model import SpecModel
from maskdit.core.blocks import DiTBlock
from maskdit.core.label_embedders import OneHotLabelEmbedder, TableLabelEmbedder


@register("block")
class DiTBlockSpec(SpecModel):
    """DiT's adaLN-Zero block (Peebles & Xie 2023, sec. 3.2)."""

    name: Literal["dit"] = "dit"

    def build(self, **context: Any):
        return DiTBlock


@register("label_embedder")
class TableLabelEmbedderSpec(SpecModel):
    """DiT's embedding table with a learned null row."""

    name: Literal["table"] = "table"

    def build(self, **context: Any):
        return TableLabelEmbedder


@register("label_embedder")
class OneHotLabelEmbedderSpec(SpecModel):
    """Reference MaskDiT's one-hot labels through a linear map."""

    name: Literal["onehot"] = "onehot"

    def build(self, **context: Any):
        return OneHotLabelEmbedder


BLOCKS: Registry = registry("block")
LABEL_EMBEDDERS: Registry = registry("label_embedder")
