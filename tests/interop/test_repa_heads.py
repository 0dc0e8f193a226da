"""A REPA checkpoint's projector becomes the repa term's head: same weights, REPA's forward, and a
model loaded from the file trains with it; mismatches are named."""

import argparse

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from maskdit.encoders.base import FrozenEncoder
from maskdit.interop import load_reference_sit, read_repa_projectors
from maskdit.interop.repa_heads import attach_repa_projectors, repa_head
from maskdit.losses import Objective, WeightedTerm
from maskdit.losses.repa import RepaLoss

from .reference_layout import random_state, repa_shapes

TINY = dict(depth=2, hidden=32, patch=2, channels=4, classes=10, input_size=8)
ARGS = argparse.Namespace(model="SiT-B/2", path_type="linear", prediction="v", encoder_depth=1, qk_norm=False)


class Width6(FrozenEncoder):
    def __init__(self, width=6):
        super().__init__()
        self.width = width
        self.proj = nn.Conv2d(3, width, 2, stride=2)
        self.freeze()

    def encode(self, images):
        return self.proj(images)


def _checkpoint():
    state = random_state(repa_shapes(z_dims=(6, 5), projector_dim=12, **TINY))
    return {"model": state, "ema": state, "args": ARGS}


def test_head_computes_repas_projector_with_the_files_weights():
    ckpt = _checkpoint()
    projectors = read_repa_projectors(ckpt)
    tokens = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
    for index, width in enumerate((6, 5)):
        s = {k: v for k, v in ckpt["ema"].items() if k.startswith(f"projectors.{index}.")}
        w = [(s[f"projectors.{index}.{i}.weight"], s[f"projectors.{index}.{i}.bias"]) for i in (0, 2, 4)]
        by_hand = F.linear(F.silu(F.linear(F.silu(F.linear(tokens, *w[0])), *w[1])), *w[2])
        head = repa_head(projectors, index)
        assert head[4].out_features == width
        torch.testing.assert_close(head(tokens), by_hand)


def test_a_loaded_repa_model_trains_with_its_projector():
    ckpt = _checkpoint()
    denoiser = load_reference_sit(ckpt, num_heads=4)
    term = RepaLoss(Width6(), depth=1, projector_dim=12)
    attach_repa_projectors(denoiser, read_repa_projectors(ckpt), term=term)
    objective = Objective([WeightedTerm("repa", 0.5, term)], noise=lambda b, generator=None, device=None,
                          dtype=None: torch.full((b,), 0.5, dtype=dtype))
    y = torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match="channels"):  # latents: the encoder needs images
        objective(denoiser, y, torch.tensor([1, 2]))
    # a latent model's images would come from the data; here the features are given by hand
    term.target_features = lambda imgs, grid: torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(1))
    out = objective(denoiser, y, torch.tensor([1, 2]), noise=torch.randn_like(y))
    out.total.sum().backward()
    assert denoiser.heads["repa"][0].weight.grad.abs().sum() > 0


def test_mismatches_are_named():
    ckpt = _checkpoint()
    projectors = read_repa_projectors(ckpt)
    denoiser = load_reference_sit(ckpt, num_heads=4)
    with pytest.raises(ValueError, match="maps to 6 features"):
        attach_repa_projectors(denoiser, projectors, term=RepaLoss(Width6(7), depth=1, projector_dim=12))
    with pytest.raises(ValueError, match="after block 1"):
        attach_repa_projectors(denoiser, projectors, term=RepaLoss(Width6(), depth=2, projector_dim=12))
    with pytest.raises(ValueError, match="out of range"):
        repa_head(projectors, 2)
