"""The backbone with a GroupedMask: every sparsity method runs each group dense and returns each
sample's output at its own batch row, the output it gets alone with its own Mask."""

import pytest
import torch

from maskdit.core import build_denoiser, build_model
from maskdit.masking import GroupedMask, RandomMasking, SigmaRatio
from tests.core.helpers import randomize_, tiny_spec

#: method -> model overrides on a 4-block tiny encoder (decoder only for MaskDiT)
METHODS = {
    "maskdit": {},
    "deferred": {"decoder_depth": 0, "routing": {"start": 1}},
    "tread": {"decoder_depth": 0, "routing": {"start": 1, "end": 3}},
    "sprint": {"decoder_depth": 0, "routing": {"start": 1, "end": 3, "fill": "mask_token", "fuse": "concat"}},
}
SIGMA = torch.tensor([3.0, 0.001, 0.2, 80.0, 0.03])  # five noise levels, each its own kept count


def _grouped_mask(grid: int) -> GroupedMask:
    strategy = RandomMasking(SigmaRatio(0.0, 0.75, groups=5))  # r = 0 below sigma 0.002: an all-kept group
    mask = strategy(5, (grid, grid), sigma=SIGMA, generator=torch.Generator().manual_seed(4))
    assert isinstance(mask, GroupedMask) and mask.num_groups == 5
    assert sum(group.is_identity for group in mask.groups) == 1
    return mask


@pytest.mark.parametrize("method", METHODS)
def test_each_sample_gets_the_output_of_its_own_mask(method):
    spec = tiny_spec(depth=4, **METHODS[method])
    net = randomize_(build_model(spec, generator=torch.Generator().manual_seed(0)), seed=1).eval()
    mask = _grouped_mask(spec.grid_size)
    generator = torch.Generator().manual_seed(2)
    x, t, labels = torch.randn(5, 3, 8, 8, generator=generator), torch.rand(5, generator=generator), torch.arange(5)

    out = net(x, t, labels, mask=mask)
    assert out.shape == (5, spec.out_channels, 8, 8)
    for b in range(5):
        alone = net(x[b:b + 1], t[b:b + 1], labels[b:b + 1], mask=mask.rows(slice(b, b + 1)))
        assert torch.allclose(out[b:b + 1], alone, atol=1e-5), f"sample {b}"
    # samples of different groups really differ in what they saw: another sample's mask changes the output
    swapped = net(x[:1], t[:1], labels[:1], mask=mask.rows(slice(3, 4)))
    assert not torch.allclose(out[:1], swapped, atol=1e-3)


def test_the_denoiser_passes_a_grouped_mask_and_gradients_reach_every_group():
    spec = tiny_spec(depth=2)
    denoiser = build_denoiser(spec, generator=torch.Generator().manual_seed(0))
    randomize_(denoiser.net, seed=1)
    mask = _grouped_mask(spec.grid_size)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = denoiser(x, SIGMA, labels=torch.arange(5), mask=mask)
    for b in range(5):
        alone = denoiser(x[b:b + 1], SIGMA[b:b + 1], labels=torch.arange(5)[b:b + 1], mask=mask.rows(slice(b, b + 1)))
        assert torch.allclose(out[b:b + 1], alone, atol=1e-5)
    out.square().sum().backward()
    assert bool((x.grad.flatten(1).abs().sum(dim=1) > 0).all())
    assert denoiser.net.mask_token.grad.abs().sum() > 0
