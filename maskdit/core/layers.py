"""The two adaLN output heads of MaskDiT: the decoder entry and the final layer.

Both are LayerNorm (no affine) -> adaLN shift/scale from c -> zero-initialised Linear, with
attribute names ``linear`` and ``adaLN_modulation.1`` as in the reference checkpoints
(MaskDiT, Zheng et al. 2024, sec. 3; DiT, Peebles & Xie 2023, sec. 3.2).
"""

from __future__ import annotations

import torch
from torch import nn

from maskdit.core.blocks import layer_norm, modulate


class ModulatedLinear(nn.Module):
    """LN(x) modulated by (shift, scale) regressed from c, then Linear(dim -> out_dim); all zero-init."""

    def __init__(self, dim: int, out_dim: int, *, cond_dim: int | None = None) -> None:
        super().__init__()
        cond_dim = dim if cond_dim is None else cond_dim
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # [B, D] each
        return self.linear(modulate(layer_norm(x), shift, scale))

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        for layer in (self.linear, self.adaLN_modulation[1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


class DecoderEntry(ModulatedLinear):
    """Encoder width -> decoder width, before mask tokens are inserted (``decoder_layer``)."""


class FinalLayer(ModulatedLinear):
    """Last width -> p * p * C_out per token (``final_layer``); C_out = 2C with a learned variance."""
