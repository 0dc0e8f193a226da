"""The objective under noise-adaptive masking: one denoiser call with a GroupedMask, and every
loss term on each sample's own mask."""

import pytest
import torch

from maskdit.core import ModelSpec, build_denoiser
from maskdit.losses import DSMLoss, LogNormalNoise, MAELoss, Objective, WeightedTerm
from maskdit.masking import BlockMasking, GroupedMask, Mask, RandomMasking, SigmaRatio

TINY = dict(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
            decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)
SIGMA = torch.tensor([0.001, 40.0, 0.5, 3.0, 0.05, 10.0])  # one kept count each


def _denoiser():
    denoiser = build_denoiser(ModelSpec(**TINY), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight random: the zero-initialised head would hide wiring errors
        for param in denoiser.parameters():
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
    return denoiser


def _objective(masking=None):
    terms = [WeightedTerm("dsm", 1.0, DSMLoss()), WeightedTerm("mae", 0.1, MAELoss())]
    return Objective(terms, LogNormalNoise(), masking=masking, patch_size=2, num_classes=3)


def _batch(seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(6, 2, 8, 8, generator=gen), torch.randn(6, 2, 8, 8, generator=gen), torch.arange(6) % 3


@pytest.mark.parametrize("strategy_cls", [RandomMasking, BlockMasking])
def test_each_sample_is_scored_on_its_own_mask(strategy_cls):
    """Every part of sample b equals what the objective gives sample b alone with its own Mask."""
    denoiser, (y, noise, labels) = _denoiser(), _batch()
    masking = strategy_cls(SigmaRatio(0.0, 0.75, groups=6))  # r = 0 below sigma 0.002: nothing dropped there
    with torch.no_grad():
        out = _objective(masking)(denoiser, y, labels, sigma=SIGMA, noise=noise,
                                  generator=torch.Generator().manual_seed(0))
        assert isinstance(out.mask, GroupedMask) and out.mask.num_groups == 6
        for b in range(6):
            own = out.mask.rows(slice(b, b + 1))
            assert isinstance(own, Mask)
            alone = _objective()(denoiser, y[b:b + 1], labels[b:b + 1], sigma=SIGMA[b:b + 1],
                                 noise=noise[b:b + 1], mask=own)
            for name in ("dsm", "mae"):
                assert torch.allclose(out.parts[name][b:b + 1], alone.parts[name], rtol=1e-4), (name, b)
    assert out.parts["mae"][0] == 0 and bool((out.parts["mae"][1:] > 0).all())  # all-kept sample: no MAE
    assert bool(torch.isfinite(out.total).all())


def test_mae_is_zero_not_nan_for_a_sample_that_drops_nothing():
    inputs_mask = GroupedMask((Mask.identity(1, 16), Mask.from_dropped(torch.tensor([[True] * 4 + [False] * 12]))),
                              (torch.tensor([0]), torch.tensor([1])))
    from maskdit.losses import LossInputs

    y = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    inputs = LossInputs(y=y, noisy=y + 1, sigma=torch.ones(2), denoised=torch.zeros_like(y), mask=inputs_mask,
                        patch_size=2)
    mae = MAELoss()(inputs)
    assert mae[0] == 0 and mae[1] > 0


def test_data_parallel_rows_see_the_rows_of_the_whole_batchs_grouped_mask():
    """Two ranks holding rows 0-2 and 3-5 get exactly the single process's per-sample losses."""
    denoiser, (y, _, labels) = _denoiser(), _batch()
    objective = _objective(RandomMasking(SigmaRatio(0.1, 0.75, groups=3)))
    with torch.no_grad():
        whole = objective(denoiser, y, labels, generator=torch.Generator().manual_seed(9))
        assert isinstance(whole.mask, GroupedMask)
        for rows in (slice(0, 3), slice(3, 6)):
            part = objective(denoiser, y[rows], labels[rows], generator=torch.Generator().manual_seed(9), rows=rows,
                             total=6)
            assert torch.equal(part.mask.dropped, whole.mask.dropped[rows])
            assert torch.allclose(part.total, whole.total[rows], rtol=1e-4)


def test_a_given_grouped_mask_must_fit_the_batch():
    denoiser, (y, noise, labels) = _denoiser(), _batch()
    mask = RandomMasking(SigmaRatio(0.1, 0.75, groups=6))(6, (4, 4), sigma=SIGMA)
    with pytest.raises(ValueError, match="Mask or GroupedMask for a batch of 5"):
        _objective()(denoiser, y[:5], labels[:5], sigma=SIGMA[:5], noise=noise[:5], mask=mask)
