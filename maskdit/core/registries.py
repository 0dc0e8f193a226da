"""The plugin tables of the network: transformer blocks and label embedders.

Factories: ``BLOCKS`` entries are called as ``block(width, num_heads, *, cond_dim, mlp_ratio,
qk_norm) -> nn.Module`` with ``forward(x [B, N, width], c [B, cond_dim]) -> [B, N, width]`` and
``init_weights(generator)``; ``LABEL_EMBEDDERS`` entries as ``embedder(num_classes, hidden)`` with
``forward(labels [B] int) -> [B, hidden]`` and ``init_weights(generator)``.
"""

from __future__ import annotations

from torch import nn

from maskdit.core.blocks import DiTBlock
from maskdit.core.labels import OneHotLabelEmbedder, TableLabelEmbedder
from maskdit.registry import Registry

BLOCKS: Registry[nn.Module] = Registry("block")
BLOCKS.register("dit", DiTBlock)

LABEL_EMBEDDERS: Registry[nn.Module] = Registry("label embedder")
LABEL_EMBEDDERS.register("table", TableLabelEmbedder)
LABEL_EMBEDDERS.register("onehot", OneHotLabelEmbedder)
