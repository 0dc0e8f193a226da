"""What the built-in strategies and schedules do beyond the shipped contracts (those run over
every registered strategy and schedule in test_contracts.py)."""

import pytest
import torch

from maskdit.masking import Mask, build_masking, build_ratio_schedule, num_kept, specs

@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_random_drops_each_position_with_frequency_r(ratio):
    """Over n draws each position's drop count is Binomial(n, r') with r' = (L - K) / L.

    With n = 4000 the standard deviation of a frequency is <= 0.0079; 5 sigma (0.04) bounds a
    false failure over 64 positions by ~2e-5, while a strategy that favours some positions by
    0.1 or more fails."""
    strategy = build_masking(specs.RandomMaskingSpec(ratio=ratio))
    length, draws = 64, 4000
    mask = strategy(draws, (8, 8), generator=torch.Generator().manual_seed(1234))
    freq = mask.dropped.double().mean(dim=0)
    expected = (length - num_kept(length, ratio)) / length
    assert (freq - expected).abs().max().item() < 5 * (expected * (1 - expected) / draws) ** 0.5
    # the kept order is a shuffle (reference): the first kept id is spread over all positions
    assert mask.ids_keep[:, 0].unique().numel() > 0.9 * length


def test_grid_pattern_is_regular():
    strategy = build_masking(specs.GridMaskingSpec(ratio=0.75, cell=2))
    mask = strategy(6, (8, 8), generator=torch.Generator().manual_seed(0))
    for b in range(6):
        kept = (~mask.dropped[b]).view(4, 2, 4, 2).sum(dim=(1, 3))  # [cells_h, cells_w]
        assert torch.equal(kept, torch.ones(4, 4, dtype=torch.long))  # one token per 2x2 cell
    checker = build_masking(specs.GridMaskingSpec(ratio=0.5, cell=2))(1, (4, 4), generator=torch.Generator())
    grid = checker.dropped.view(4, 4).int()
    assert torch.equal(grid, grid.flip(1).flip(0)) and int(grid.sum()) == 8
    assert torch.equal(grid[:, :-1] != grid[:, 1:], torch.ones(4, 3, dtype=torch.bool))  # checkerboard


def test_block_masking_forms_blocks():
    """Block masks are spatially clustered: far more dropped-dropped neighbours than random masks."""
    gen = torch.Generator().manual_seed(3)
    block = build_masking(specs.BlockMaskingSpec(ratio=0.5, min_block=8))(32, (16, 16), generator=gen)
    rand = build_masking(specs.RandomMaskingSpec(ratio=0.5))(32, (16, 16), generator=gen)

    def neighbour_agreement(mask: Mask) -> float:
        grid = mask.dropped.view(-1, 16, 16)
        return (grid[:, :, 1:] == grid[:, :, :-1]).double().mean().item()

    assert neighbour_agreement(block) > neighbour_agreement(rand) + 0.2


def test_schedules_need_their_inputs():
    with pytest.raises(ValueError, match="training step"):
        build_masking(specs.RandomMaskingSpec(ratio=specs.CosineRatioSpec(start=0.5, end=0.0, total_steps=10)))(2, (4, 4))
    with pytest.raises(ValueError, match="noise levels"):
        build_masking(specs.RandomMaskingSpec(ratio=specs.SigmaRatioSpec(r_min=0.2, r_max=0.8)))(2, (4, 4))


def test_schedule_values():
    cosine = build_ratio_schedule(specs.CosineRatioSpec(start=0.8, end=0.2, total_steps=100))
    assert cosine(step=0) == pytest.approx(0.8) and cosine(step=50) == pytest.approx(0.5)
    assert cosine(step=100) == pytest.approx(0.2) and cosine(step=10_000) == pytest.approx(0.2)
    sigma = build_ratio_schedule(specs.SigmaRatioSpec(r_min=0.2, r_max=0.8, sigma_min=0.01, sigma_max=100.0))
    assert sigma(sigma=torch.full((4,), 0.001)).tolist() == pytest.approx([0.2] * 4)
    assert sigma(sigma=torch.full((4,), 1.0)).tolist() == pytest.approx([0.5] * 4)
    assert sigma(sigma=torch.tensor([100.0, 0.01])).tolist() == pytest.approx([0.8, 0.2])  # each its own
    assert sigma(sigma=torch.full((2,), 1e4)).tolist() == pytest.approx([0.8, 0.8])
    with pytest.raises(ValueError, match="finite, positive"):
        sigma(sigma=torch.tensor([1.0, float("nan")]))
    uniform = build_ratio_schedule(specs.UniformRatioSpec(low=0.3, high=0.6))
    draws = [uniform(generator=torch.Generator().manual_seed(s)) for s in range(200)]
    assert 0.3 <= min(draws) < 0.33 and 0.57 < max(draws) <= 0.6


def test_num_kept_matches_reference_rounding():
    assert num_kept(256, 0.5) == 128
    assert num_kept(10, 0.75) == 2  # int(2.5)
    with pytest.raises(ValueError, match="no visible token"):
        num_kept(4, 0.9)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        num_kept(4, 1.0)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        build_masking(specs.RandomMaskingSpec())(bad, (4, 4))


def test_bad_grid():
    with pytest.raises(ValueError, match="grid_hw"):
        build_masking(specs.RandomMaskingSpec())(2, (4,))
