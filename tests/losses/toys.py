"""Small denoisers for loss tests."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class TinyMaskedDenoiser(nn.Module):
    """Patch tokens -> linear -> (dropped tokens replaced by a learned mask token) -> linear ->
    pixels, with EDM preconditioning. Small enough to reason about gradients."""

    def __init__(self, channels: int = 2, patch: int = 2, width: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.patch, self.num_classes = patch, num_classes
        self.encode = nn.Linear(patch * patch * channels, width)
        self.decode = nn.Linear(width, patch * patch * channels)
        self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, width, generator=gen))
        self.label_embed = nn.Embedding(num_classes + 1, width)
        with torch.no_grad():  # deterministic weights, from the local generator only
            for param in (self.encode.weight, self.encode.bias, self.decode.weight, self.decode.bias,
                          self.label_embed.weight):
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
        self.calls: list = []

    def forward(self, x, sigma, *, labels=None, mask=None):
        self.calls.append({"mask": mask, "labels": labels, "sigma": sigma})
        _, _, h, w = x.shape
        s = sigma.view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        c_in, c_skip, c_out = 1 / (s**2 + 0.25).sqrt(), 0.25 / (s**2 + 0.25), s * 0.5 / (s**2 + 0.25).sqrt()
        tokens = self.encode(rearrange(c_in * x, "b c (h p) (w q) -> b (h w) (p q c)", p=self.patch, q=self.patch))
        if labels is not None:
            tokens = tokens + self.label_embed(labels)[:, None]  # [B, 1, D]
        if mask is not None:
            tokens = mask.scatter(mask.gather(tokens), self.mask_token)  # [B, L, D], mask token where dropped
        out = rearrange(self.decode(tokens), "b (h w) (p q c) -> b c (h p) (w q)", h=h // self.patch, p=self.patch,
                        q=self.patch)
        return c_skip * x + c_out * out


def fixed_denoiser(output: torch.Tensor):
    """A 'denoiser' that returns a given tensor (to pin D in hand computations)."""

    def denoise(x, sigma, *, labels=None, mask=None):
        return output.to(x.dtype)

    return denoise
