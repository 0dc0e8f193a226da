"""Tiny specs shared by the network tests (a few thousand parameters, milliseconds per forward)."""

from __future__ import annotations

import torch

from maskdit.core import ModelSpec
from maskdit.core.layers import FinalLayer
from maskdit.masking import ConstantRatio, RandomMasking


def tiny_spec(**overrides) -> ModelSpec:
    fields = dict(
        input_size=8, in_channels=3, patch_size=2, depth=2, hidden_size=32, num_heads=2,
        decoder_depth=1, decoder_hidden_size=16, decoder_num_heads=2, num_classes=5,
    )
    return ModelSpec(**{**fields, **overrides})


def random_mask(spec: ModelSpec, batch: int, ratio: float, seed: int = 0):
    strategy = RandomMasking(ConstantRatio(ratio))
    return strategy(batch, (spec.grid_size, spec.grid_size), generator=torch.Generator().manual_seed(seed))


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every parameter and buffer (zero-initialised ones would hide wiring bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    return module


class Recorder(torch.nn.Module):
    """A stand-in network: returns a fixed output and remembers what it was called with
    (x, the time / noise label, labels, mask)."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.final_layer = FinalLayer(4, 4)  # the wrappers read the network dtype from here
        self.calls = []

    def forward(self, x, noise_labels, labels=None, mask=None):
        self.calls.append((x, noise_labels, labels, mask))
        return self.out
