"""The ``dit`` block: a transformer block with adaLN-Zero conditioning (DiT, Peebles & Xie 2023, sec. 3.2).

Attribute names mirror the reference checkpoints: ``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
``mlp.fc2``, ``adaLN_modulation.1``. LayerNorms have no affine parameters (eps 1e-6); the
conditioning vector regresses shift, scale and gate for the attention and MLP branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

LN_EPS = 1e-6


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim without affine parameters (eps 1e-6)."""
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with shift, scale [B, D] broadcast over tokens; one fused kernel."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias) and torch's SDPA.

    ``qk_norm`` applies a LayerNorm to queries and keys per head (Dehghani et al. 2023,
    "Scaling Vision Transformers to 22 Billion Parameters"), which keeps attention logits bounded.
    """

    def __init__(self, dim: int, num_heads: int, *, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // num_heads
        self.q_norm = nn.LayerNorm(head_dim, eps=LN_EPS) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=LN_EPS) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.num_heads)
        q, k, v = qkv.unbind(0)  # each [B, H, N, E]
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)  # [B, H, N, E]
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class Mlp(nn.Module):
    """Linear -> tanh-approximated GELU -> Linear (as in DiT)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """adaLN-Zero block: x += gate_a * attn(mod(LN(x))); x += gate_m * mlp(mod(LN(x))).

    ``cond_dim`` may differ from ``dim`` (the MaskDiT decoder is conditioned on the encoder-width
    vector c). ``adaLN_modulation`` = SiLU then Linear(cond_dim -> 6 dim), zero-initialised so
    every block starts as the identity.
    """

    def __init__(
        self, dim: int, num_heads: int, *, cond_dim: int | None = None, mlp_ratio: float = 4.0, qk_norm: bool = False
    ) -> None:
        super().__init__()
        cond_dim = dim if cond_dim is None else cond_dim
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.forward_modulated(x, self.adaLN_modulation(c))

    def forward_modulated(self, x: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """The block given its precomputed modulation [B, 6 D] (lets a model batch all adaLN Linears)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulation.unsqueeze(1).chunk(6, dim=-1)  # [B, 1, D] each
        x = torch.addcmul(x, gate_a, self.attn(torch.addcmul(shift_a, layer_norm(x), 1 + scale_a)))
        return torch.addcmul(x, gate_m, self.mlp(torch.addcmul(shift_m, layer_norm(x), 1 + scale_m)))

    def init_weights(self, generator: torch.Generator | None) -> None:
        """DiT's init: xavier-uniform Linears with zero bias, then zero adaLN (the 'Zero' of adaLN-Zero)."""
        for linear in (self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2):
            nn.init.xavier_uniform_(linear.weight, generator=generator)
            nn.init.zeros_(linear.bias)
        for norm in (self.attn.q_norm, self.attn.k_norm):
            if isinstance(norm, nn.LayerNorm):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)
