"""Input-side embeddings: patches, fixed 2D sin-cos positions, noise level / timestep.

Layouts follow DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3.2)
so that reference checkpoints load by name: ``proj`` is the patch convolution, ``mlp.0`` /
``mlp.2`` the two Linears of the timestep MLP.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


class PatchEmbed(nn.Module):
    """[B, C, H, W] -> [B, L, D]: a convolution with kernel = stride = patch, tokens in raster order."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"expected [B, C, H, W] with H, W divisible by {self.patch_size}, got {tuple(x.shape)}")
        return rearrange(self.proj(x), "b d h w -> b (h w) d")  # [B, D, h, w] -> [B, L, D]


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[N] positions -> [N, dim]: sin of dim/2 geometric frequencies, then cos (Vaswani et al. 2017)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))  # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # [N, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_size: int) -> torch.Tensor:
    """[grid^2, dim] fixed 2D position embedding (MAE, He et al. 2022), raster order.

    The first half encodes the column index, the second half the row index (the convention of
    the MAE / DiT / MaskDiT code, whose meshgrid puts the width coordinate first).
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows = coords.repeat_interleave(grid_size)  # [L]: row of token i = i // grid
    cols = coords.repeat(grid_size)  # [L]: column of token i = i % grid
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()


def timestep_frequencies(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """[B] (fractional) timesteps or noise labels -> [B, dim]: cos then sin of dim/2 frequencies (DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]  # [B, half]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Noise level -> conditioning vector: 256-frequency sinusoid, Linear, SiLU, Linear.

    MaskDiT feeds EDM's c_noise = ln(sigma) / 4 (Karras et al. 2022, Table 1); DiT feeds the
    integer DDPM timestep. The embedder does not care which.
    """

    def __init__(self, hidden_size: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 1:
            raise ValueError(f"noise labels must be 1-D [B], got shape {tuple(t.shape)}")
        freq = timestep_frequencies(t, self.frequency_size).to(self.mlp[0].weight.dtype)
        return self.mlp(freq)
