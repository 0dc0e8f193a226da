"""Integration with the real network: a tiny MaskDiT behind EDM preconditioning."""

from __future__ import annotations

import pytest
import torch

core = pytest.importorskip("maskdit.core")

from maskdit.losses import maskdit_objective  # noqa: E402

TINY = dict(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
            decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)


def _denoiser():
    """A tiny MaskDiT with every trainable weight random (the zero-initialised final and adaLN
    layers would otherwise block all gradient to the decoder and its mask token at step 0)."""
    denoiser = core.build_denoiser(core.ModelSpec(**TINY), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in denoiser.parameters():
            if param.requires_grad:
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))
    return denoiser


@pytest.mark.parametrize("ratio, expect_grad", [(0.5, True), (0.0, False)])
def test_mask_token_gradient_only_from_a_masked_step(ratio, expect_grad):
    denoiser = _denoiser()
    objective = maskdit_objective(mask_ratio=ratio, patch_size=2, num_classes=3)
    y = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    out = objective(denoiser, y, torch.tensor([0, 1, 2, 0]), generator=torch.Generator().manual_seed(2))
    out.total.mean().backward()
    grad = denoiser.net.mask_token.grad
    assert (grad is not None and grad.abs().sum() > 0) == expect_grad
    assert (out.parts["mae"] > 0).all() if expect_grad else (out.parts["mae"] == 0).all()
    assert torch.isfinite(out.total).all()


def test_r_zero_objective_is_plain_edm_loss_on_the_real_model():
    denoiser = _denoiser()
    gen = torch.Generator().manual_seed(3)
    y, noise = torch.randn(3, 2, 8, 8, generator=gen), torch.randn(3, 2, 8, 8, generator=gen)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    out = maskdit_objective(mask_ratio=0.0, num_classes=3)(denoiser, y, sigma=sigma, noise=noise)
    with torch.no_grad():
        d = denoiser(y + sigma.view(-1, 1, 1, 1) * noise, sigma)
    plain = (sigma**2 + 0.25) / (sigma * 0.5) ** 2 * ((d - y) ** 2).flatten(1).mean(1)
    assert torch.allclose(out.total.detach(), plain, rtol=1e-5)
