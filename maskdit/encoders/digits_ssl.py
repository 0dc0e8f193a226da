"""``digits_ssl``: a small ViT for the embedded digits, trained without labels, to align to.

A masked autoencoder (MAE, He et al. 2022) trained by ``scripts/train_digits_ssl.py`` on the
MNIST-5k train split only, from pixels alone: no label is read. It is not the digits metric's
classifier (aligning a model to the metric's own network would improve the metric, not the
model). The network: 4-pixel patches of a 32 x 32 digit (an 8 x 8 grid), width 128, 4 pre-norm
blocks with 4 heads, fixed 2-D sin-cos positions, no class token, a final LayerNorm. The features
are those final normalised tokens on all 64 patches, [B, 128, 8, 8]. The shipped weights
(float16, ``maskdit/assets/digits_ssl.safetensors``) are checked against :data:`ASSET_SHA256`
before they are read; another file named by ``path`` is read without that check.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from maskdit.config.errors import CheckpointError, printable, short
from maskdit.core.blocks import Attention, Mlp
from maskdit.core.embeddings import PatchEmbed, sincos_2d
from maskdit.encoders.base import FrozenEncoder
from maskdit.encoders.preprocess import resize_square, to_channels
from maskdit.encoders.weights import check_sha256, load_weights, read_weights

ARCH = "digits-ssl-mae-v1"
ASSET = Path(__file__).resolve().parents[1] / "assets" / "digits_ssl.safetensors"
#: the SHA-256 that scripts/train_digits_ssl.py printed for the packaged file
ASSET_SHA256 = "64566e733dc3221ef599b8db54d2cc49e7f080eb88bbe569ac71bac69d5f2c41"
REBUILD = "python scripts/train_digits_ssl.py"
LN_EPS = 1e-6


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, width: int, num_heads: int, *, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_transformer(module: nn.Module, generator: torch.Generator) -> None:
    """MAE's initialisation from ``generator``: Xavier-uniform linear and patch weights (the patch
    convolution seen as a linear map), zero biases, LayerNorms (1, 0)."""
    with torch.no_grad():
        for part in module.modules():
            if isinstance(part, (nn.Linear, nn.Conv2d)):
                fan_out, fan_in = part.weight.shape[0], part.weight[0].numel()
                bound = (6.0 / (fan_in + fan_out)) ** 0.5
                part.weight.uniform_(-bound, bound, generator=generator)
                if part.bias is not None:
                    part.bias.zero_()
            elif isinstance(part, nn.LayerNorm):
                part.reset_parameters()


class DigitsViT(nn.Module):
    """The encoder network: images [B, C, S, S] -> the final normalised tokens [B, K, width] of the
    kept patches (``ids_keep`` [B, K] in raster order; None: all (S / patch)^2 patches). Its
    weights are drawn from ``generator`` (MAE's initialisation) until trained ones are loaded."""

    def __init__(self, *, generator: torch.Generator, width: int = 128, depth: int = 4, num_heads: int = 4,
                 patch_size: int = 4, image_size: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.width, self.patch_size, self.image_size, self.in_channels = width, patch_size, image_size, in_channels
        with torch.device("meta"):  # allocated below and drawn from the generator, never the global RNG
            self.patch_embed = PatchEmbed(in_channels, width, patch_size)
            self.blocks = nn.ModuleList(Block(width, num_heads) for _ in range(depth))
            self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.to_empty(device="cpu")
        # fixed positions, rebuilt from the sizes (not stored in the weights file)
        self.register_buffer("pos_embed", sincos_2d(width, image_size // patch_size)[None], persistent=False)
        init_transformer(self, generator)

    def forward(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(images) + self.pos_embed  # [B, L, D]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))  # [B, L, D] -> [B, K, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class DigitsSSLEncoder(FrozenEncoder):
    """:class:`DigitsViT` as a frozen encoder: digits [B, 1, H, W] in [-1, 1] -> [B, width, 8, 8].
    28 x 28 digits are padded with background to 32 x 32 (as MNIST5k does); other sizes resized."""

    def __init__(self, network: DigitsViT) -> None:
        super().__init__()
        self.network = network
        self.width, self.in_channels = network.width, network.in_channels
        self.image_size, self.patch_size = network.image_size, network.patch_size
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = to_channels(images, self.in_channels, encoder="digits_ssl")
        if x.shape[-2:] == (28, 28) and self.image_size == 32:
            x = F.pad(x, (2, 2, 2, 2), value=-1.0)  # MNIST's 28 x 28 -> 32 x 32, background -1
        tokens = self.network(resize_square(x, self.image_size))  # [B, h*w, D]
        return rearrange(tokens, "b (h w) d -> b d h w", h=self.grid_size)  # -> [B, D, h, w]


def save_digits_ssl(network: DigitsViT, path: str | os.PathLike, *, metadata: dict[str, str]) -> None:
    """Write the network's weights as float16 safetensors with the architecture tag and ``metadata``."""
    tensors = {key: value.detach().to("cpu", torch.float16).contiguous() for key, value in network.state_dict().items()}
    save_file(tensors, str(path), metadata={"arch": ARCH, **metadata})


def load_digits_ssl(path: str | os.PathLike | None = None) -> DigitsViT:
    """The trained network in float32: the packaged asset (SHA-256 checked) when ``path`` is None."""
    if path is None:
        check_sha256(ASSET, ASSET_SHA256, rebuild=REBUILD)
        path = ASSET
    state = read_weights(path)  # first: a missing or unreadable file is named as such
    with safe_open(str(path), framework="pt") as handle:
        arch = (handle.metadata() or {}).get("arch")
    if arch != ARCH:
        raise CheckpointError(f"{printable(path)}: holds architecture {short(arch)}, expected {ARCH!r}")
    network = DigitsViT(generator=torch.Generator().manual_seed(0))  # every weight replaced below
    load_weights(network, state, source=path)
    return network


def build_digits_ssl(*, weights: str = "pretrained", path: str | os.PathLike | None = None,
                     seed: int = 0) -> DigitsSSLEncoder:
    """The digits encoder: trained weights (the packaged asset, or ``path``), or drawn from ``seed``."""
    if weights == "random":
        network = DigitsViT(generator=torch.Generator().manual_seed(seed))
    elif weights == "pretrained":
        network = load_digits_ssl(path)
    else:
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    return DigitsSSLEncoder(network)
