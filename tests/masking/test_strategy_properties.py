"""Contract properties every masking strategy x ratio schedule must satisfy (hypothesis)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdit.masking import (
    MASKING,
    RATIO_SCHEDULES,
    Mask,
    build_masking,
    build_ratio_schedule,
    kept_per_sample,
    num_kept,
    specs,
)
from tests.masking.checks import check_any_mask
from tests.masking.plugins import SCHEDULE_EXAMPLES, STRATEGY_NAMES, strategy_spec

PAIRS = [(s, r) for s in STRATEGY_NAMES for r in SCHEDULE_EXAMPLES]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _draw_case(data, strategy_name, schedule_name):
    schedule = data.draw(SCHEDULE_EXAMPLES[schedule_name], label="schedule")
    height = data.draw(st.integers(1, 12), label="height")
    width = data.draw(st.integers(1, 12), label="width")
    batch = data.draw(st.integers(1, 5), label="batch")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    step = data.draw(st.integers(0, 2000), label="step")
    log_sigma = data.draw(st.lists(st.floats(-7, 5), min_size=batch, max_size=batch), label="log_sigma")
    sigma = torch.tensor(log_sigma, dtype=torch.float64).exp()
    strategy = build_masking(strategy_spec(strategy_name, schedule))
    return strategy, schedule, (height, width), batch, seed, step, sigma


def _expected_kept(strategy_name, schedule, length, batch, seed, step, sigma) -> list[int]:
    """Ask the schedule for the batch's ratio (one, or one per sample) with a generator in the
    same state the strategy sees: the count each sample must keep."""
    if strategy_name == "none":
        return [length] * batch
    ratio = build_ratio_schedule(schedule)(step=step, sigma=sigma, generator=torch.Generator().manual_seed(seed))
    return kept_per_sample(length, ratio, batch)


@pytest.mark.parametrize("strategy_name,schedule_name", PAIRS)
@FAST
@given(data=st.data())
def test_mask_invariants(strategy_name, schedule_name, data):
    strategy, schedule, grid, batch, seed, step, sigma = _draw_case(data, strategy_name, schedule_name)
    length = grid[0] * grid[1]
    try:
        expected = _expected_kept(strategy_name, schedule, length, batch, seed, step, sigma)
    except ValueError:  # the ratio leaves no visible token: the strategy must refuse too
        with pytest.raises(ValueError, match="no visible token"):
            strategy(batch, grid, sigma=sigma, step=step, generator=torch.Generator().manual_seed(seed))
        return
    mask = strategy(batch, grid, sigma=sigma, step=step, generator=torch.Generator().manual_seed(seed))

    # exact counts per sample; each group (the whole batch, for one ratio) obeys the Mask contract
    check_any_mask(mask, expected, seed)

    # determinism under a seeded generator
    again = strategy(batch, grid, sigma=sigma, step=step, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(again.dropped, mask.dropped)
    again_groups = again.groups if hasattr(again, "groups") else (again,)
    for one, other in zip(again_groups, mask.groups if hasattr(mask, "groups") else (mask,)):
        assert torch.equal(one.ids_keep, other.ids_keep) and torch.equal(one.ids_restore, other.ids_restore)


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
@FAST
@given(height=st.integers(1, 10), width=st.integers(1, 10), batch=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_zero_ratio_is_identity(strategy_name, height, width, batch, seed):
    strategy = build_masking(strategy_spec(strategy_name, 0.0))
    mask = strategy(batch, (height, width), generator=torch.Generator().manual_seed(seed))
    assert mask.is_identity
    assert torch.equal(mask.ids_keep, torch.arange(height * width).expand(batch, -1))
    tokens = torch.randn(batch, height * width, 2)
    assert torch.equal(mask.scatter(mask.gather(tokens), 0.0), tokens)


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
