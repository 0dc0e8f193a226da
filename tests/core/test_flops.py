"""The analytic FLOP count: DiT's published figure, and exact agreement with torch's FlopCounterMode."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maskdit.core import ModelSpec, build_model, flops_per_forward, forward_breakdown, training_flops

from .helpers import random_mask, tiny_spec


def test_dit_xl2_matches_published_gflops():
    gflops = flops_per_forward(ModelSpec(preset="DiT-XL/2")) / 1e9
    assert gflops == pytest.approx(118.6, rel=0.005)


@pytest.mark.parametrize("preset, masked, unmasked", [("MaskDiT-S/2", 9.85, 6.04), ("MaskDiT-XL/2", 65.1, 118.4)])
def test_reference_masked_training_forward(preset, masked, unmasked):
    """Zheng et al. 2024, sec. 3.1: masked reference MaskDiT vs unmasked DiT (within the adaLN/embedding terms)."""
    spec = ModelSpec(preset=preset)
    assert flops_per_forward(spec, mask_ratio=0.5) / 1e9 == pytest.approx(masked, rel=0.01)
    dit = spec.model_copy(update={"decoder_depth": 0})
    assert flops_per_forward(dit) / 1e9 == pytest.approx(unmasked, rel=0.01)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("decoder_depth, learn_sigma", [(1, False), (0, True)])
def test_matches_flop_counter(ratio, decoder_depth, learn_sigma):
    spec = tiny_spec(decoder_depth=decoder_depth, learn_sigma=learn_sigma)
    net = build_model(spec)
    batch = 3
    mask = random_mask(spec, batch, ratio)
    x = torch.randn(batch, 3, 8, 8)
    # the math backend spells attention as bmm, which the counter sees (the fused CPU kernel it does not)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        net(x, torch.rand(batch), torch.tensor([0, 1, 5]), mask=mask)
    assert counter.get_total_flops() == 2 * batch * flops_per_forward(spec, mask_ratio=ratio)


def test_masking_shrinks_only_the_encoder():
    spec = ModelSpec(preset="MaskDiT-S/2")
    full, masked = forward_breakdown(spec), forward_breakdown(spec, mask_ratio=0.5)
    assert masked.encoder < 0.5 * full.encoder
    assert masked.decoder < full.decoder  # only the entry Linear shrinks
    assert training_flops(spec, mask_ratio=0.5) == 3 * flops_per_forward(spec, mask_ratio=0.5)
