"""DSM and MAE terms against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from maskdit.losses import DSMLoss, LossInputs, MAELoss, edm_weight, infer_patch_size, patchify, pool_to_tokens
from maskdit.masking import Mask


def _mask(dropped_rows):
    return Mask.from_dropped(torch.tensor(dropped_rows, dtype=torch.bool))


def test_edm_weight():
    sigma = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(edm_weight(sigma), torch.tensor([8.0, 5.0, 4.25]))  # (s^2 + 1/4) / (s^2 / 4)


def test_dsm_hand_computed_visible_average():
    # 1 sample, 1 channel, 4x4 image, patch 2 -> 4 tokens; squared error = the token's index + 1
    y = torch.zeros(1, 1, 4, 4)
    per_token_error = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # token grid, row-major: t0..t3
    denoised = per_token_error.repeat_interleave(2, 0).repeat_interleave(2, 1).sqrt().view(1, 1, 4, 4)
    sigma = torch.tensor([1.0])  # lambda = 5
    mask = _mask([[False, True, True, False]])  # tokens 1, 2 dropped; 0, 3 visible
    inputs = LossInputs(y=y, noisy=y, sigma=sigma, denoised=denoised, mask=mask, patch_size=2)
    assert torch.allclose(DSMLoss()(inputs), torch.tensor([5.0 * (1.0 + 4.0) / 2]))
    unmasked = LossInputs(y=y, noisy=y, sigma=sigma, denoised=denoised)
    assert torch.allclose(DSMLoss()(unmasked), torch.tensor([5.0 * (1 + 2 + 3 + 4) / 4]))


def test_dsm_averages_channels_before_pooling_and_uses_sigma_data():
    y = torch.zeros(2, 2, 2, 2)
    denoised = torch.ones(2, 2, 2, 2)
    denoised[:, 1] = 3.0  # squared errors 1 and 9 -> channel mean 5
    sigma = torch.tensor([1.0, 2.0])
    mask = Mask.identity(2, 1)
    got = DSMLoss(sigma_data=1.0)(LossInputs(y=y, noisy=y, sigma=sigma, denoised=denoised, mask=mask, patch_size=2))
    assert torch.allclose(got, 5.0 * torch.tensor([2.0, 1.25]))  # lambda = (s^2 + 1) / s^2


def test_mae_hand_computed_with_unbiased_variance():
    # one 2x2 single-channel patch per token; token 1 is dropped
    noisy = torch.tensor([[1.0, 2.0, 5.0, 5.0], [3.0, 4.0, 5.0, 7.0]]).view(1, 1, 2, 4)  # tokens: [1,2,3,4], [5,5,5,7]
    mask = _mask([[False, True]])
    pred = torch.zeros(1, 1, 2, 4)
    inputs = LossInputs(y=noisy, noisy=noisy, sigma=torch.ones(1), denoised=pred, mask=mask, patch_size=2)
    # token 1 values 5, 5, 5, 7: mean 5.5, unbiased variance (3 * 0.25 + 2.25) / 3 = 1
    # normalised target (t - 5.5) / sqrt(1 + 1e-6); MSE against 0 = mean of squares = 3 / 4 / (1 + 1e-6)
    expected = (3 * 0.25 + 2.25) / 4 / (1.0 + 1e-6)
    assert math.isclose(MAELoss()(inputs).item(), expected, rel_tol=1e-6)
    biased = (3 * 0.25 + 2.25) / 4 / ((3 * 0.25 + 2.25) / 4 + 1e-6)  # what a biased variance would give
    assert not math.isclose(MAELoss()(inputs).item(), biased, rel_tol=1e-3)


def test_mae_prediction_is_not_normalised_and_only_masked_patches_count():
    gen = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 3, 4, 4, generator=gen)
    pred = torch.randn(2, 3, 4, 4, generator=gen)
    mask = _mask([[True, False, False, True], [False, True, True, False]])
    got = MAELoss()(LossInputs(y=noisy, noisy=noisy, sigma=torch.ones(2), denoised=pred, mask=mask, patch_size=2))
    expected = []
    for b in range(2):
        losses = []
        for token in range(4):
            if not mask.dropped[b, token]:
                continue
            r, c = divmod(token, 2)
            t = noisy[b, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2].flatten()
            p = pred[b, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2].flatten()
            t = (t - t.mean()) / (t.var(unbiased=True) + 1e-6).sqrt()
            losses.append(((p - t) ** 2).mean())
        expected.append(torch.stack(losses).mean())
    assert torch.allclose(got, torch.stack(expected), atol=1e-6)


def test_mae_is_zero_and_not_computed_without_masking():
    y = torch.randn(3, 1, 4, 4)
    broken = torch.full((3, 1, 4, 4), float("nan"))  # would poison anything computed from it
    for mask in (None, Mask.identity(3, 4)):
        inputs = LossInputs(y=y, noisy=broken, sigma=torch.ones(3), denoised=broken, mask=mask, patch_size=None)
        out = MAELoss()(inputs)
        assert torch.equal(out, torch.zeros(3)) and not out.requires_grad


def test_patch_helpers():
    assert infer_patch_size((32, 32), 256) == 2 and infer_patch_size((8, 16), 8) == 4
    for hw, tokens in (((32, 32), 100), ((6, 6), 5), ((8, 2), 1), ((4, 4), 0)):
        with pytest.raises(ValueError, match="cannot be cut"):
            infer_patch_size(hw, tokens)
    with pytest.raises(ValueError, match="disagrees"):
        infer_patch_size((32, 32), 256, patch_size=4)
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    patches = patchify(x, 2)  # [1, 4, 8]
    assert patches.shape == (1, 4, 8)
    assert sorted(patches[0, 1].tolist()) == sorted(x[0, :, 0:2, 2:4].flatten().tolist())  # token 1 = row 0, col 1
    assert torch.allclose(pool_to_tokens(x, 2)[0, 1], x[0, :, 0:2, 2:4].mean())
