"""Hypothesis properties of the masked terms: DSM sees only visible tokens, MAE only dropped ones."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdit.losses import DSMLoss, LossInputs, MAELoss
from maskdit.masking import Mask
from maskdit.testing.strategies import loss_inputs

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pixel_mask(mask: Mask, patch: int, shape) -> torch.Tensor:
    """[B, L] dropped -> [B, 1, H, W] bool at pixel resolution."""
    batch, _, height, width = shape
    grid = mask.dropped.view(batch, 1, height // patch, width // patch)  # [B, L] -> [B, 1, gh, gw]
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


@FAST
@given(loss_inputs(), st.integers(0, 2**16))
def test_dsm_ignores_dropped_and_mae_ignores_visible_positions(base, seed):
    y, noisy, sigma, denoised, mask, patch = base.y, base.noisy, base.sigma, base.denoised, base.mask, base.patch_size
    dropped = _pixel_mask(mask, patch, y.shape)
    junk = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 100
    # change D at dropped positions: DSM unchanged
    moved = LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=torch.where(dropped, junk, denoised), mask=mask,
                       patch_size=patch)
    assert torch.allclose(DSMLoss()(base), DSMLoss()(moved), rtol=1e-12)
    # change x_t and D at visible positions: MAE unchanged (loss_inputs gives >= 2 values per patch to normalise)
    moved = LossInputs(y=y, noisy=torch.where(dropped, noisy, junk), sigma=sigma,
                       denoised=torch.where(dropped, denoised, junk), mask=mask, patch_size=patch)
    assert torch.allclose(MAELoss()(base), MAELoss()(moved), rtol=1e-12)


@FAST
@given(loss_inputs())
def test_dsm_equals_mean_over_visible_pixels(inputs):
    """Equal-size patches: the mean of per-token means over visible tokens = the mean over visible pixels."""
    y, sigma, denoised, mask, patch = inputs.y, inputs.sigma, inputs.denoised, inputs.mask, inputs.patch_size
    visible = ~_pixel_mask(mask, patch, y.shape)
    weight = ((sigma**2 + 0.25) / (sigma * 0.5) ** 2).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
    error = (weight * (denoised - y) ** 2).mean(dim=1, keepdim=True)  # [B, 1, H, W]
    expected = (error * visible).flatten(1).sum(1) / visible.flatten(1).sum(1)
    got = DSMLoss()(inputs)
    assert torch.allclose(got, expected, rtol=1e-10)
