"""Hypothesis properties of the masked terms: DSM sees only visible tokens, MAE only dropped ones."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdit.losses import DSMLoss, LossInputs, MAELoss
from maskdit.masking import Mask

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw):
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    patch, grid_h, grid_w = draw(st.sampled_from([1, 2, 3])), draw(st.integers(1, 3)), draw(st.integers(2, 3))
    tokens = grid_h * grid_w
    kept = draw(st.integers(1, tokens - 1))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(batch, tokens, generator=gen), dim=1)
    mask = Mask.from_order(order, kept)
    shape = (batch, channels, grid_h * patch, grid_w * patch)
    tensors = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3)]
    sigma = torch.rand(batch, generator=gen, dtype=torch.float64) * 5 + 0.05
    return mask, patch, sigma, tensors, gen


def _pixel_mask(mask: Mask, patch: int, shape) -> torch.Tensor:
    """[B, L] dropped -> [B, 1, H, W] bool at pixel resolution."""
    batch, _, height, width = shape
    grid = mask.dropped.view(batch, 1, height // patch, width // patch)  # [B, L] -> [B, 1, gh, gw]
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


@FAST
@given(batches())
def test_dsm_ignores_dropped_and_mae_ignores_visible_positions(case):
    mask, patch, sigma, (y, noisy, denoised), gen = case
    dropped = _pixel_mask(mask, patch, y.shape)
    junk = torch.randn(y.shape, generator=gen, dtype=torch.float64) * 100
    base = LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=denoised, mask=mask, patch_size=patch)
    # change D at dropped positions: DSM unchanged
    moved = LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=torch.where(dropped, junk, denoised), mask=mask,
                       patch_size=patch)
    assert torch.allclose(DSMLoss()(base), DSMLoss()(moved), rtol=1e-12)
    # change x_t and D at visible positions: MAE unchanged (needs >= 2 values per patch to normalise)
    if patch * patch * y.shape[1] >= 2:
        moved = LossInputs(y=y, noisy=torch.where(dropped, noisy, junk), sigma=sigma,
                           denoised=torch.where(dropped, denoised, junk), mask=mask, patch_size=patch)
        assert torch.allclose(MAELoss()(base), MAELoss()(moved), rtol=1e-12)


@FAST
@given(batches())
def test_dsm_equals_mean_over_visible_pixels(case):
    """Equal-size patches: the mean of per-token means over visible tokens = the mean over visible pixels."""
    mask, patch, sigma, (y, noisy, denoised), _ = case
    visible = ~_pixel_mask(mask, patch, y.shape)
    weight = ((sigma**2 + 0.25) / (sigma * 0.5) ** 2).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
    error = (weight * (denoised - y) ** 2).mean(dim=1, keepdim=True)  # [B, 1, H, W]
    expected = (error * visible).flatten(1).sum(1) / visible.flatten(1).sum(1)
    got = DSMLoss()(LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=denoised, mask=mask, patch_size=patch))
    assert torch.allclose(got, expected, rtol=1e-10)
