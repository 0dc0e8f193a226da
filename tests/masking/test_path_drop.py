"""Path drop in training: each sample, with probability p drawn from the passed generator, keeps no
token; the others keep the strategy's mask; p = 0 is the strategy itself, bit for bit."""

import math

import pytest
import torch
from pydantic import ValidationError

from maskdit.masking import MASKING, GroupedMask, Mask, PathDrop, RandomMasking, SigmaRatio, path_dropped
from maskdit.masking.specs import GridMaskingSpec, NoMaskingSpec, RandomMaskingSpec
from maskdit.masking.strategies import GridMasking
from maskdit.testing.contract import ContractError
from maskdit.testing.masking import check_masking_spec
from maskdit.testing.masks import check_call_result, check_mask


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_keep_none_meets_the_mask_contract_and_fills_every_position():
    mask = Mask.keep_none(3, 8)
    check_mask(mask, batch_size=3, num_tokens=8)
    assert mask.num_kept == 0 and mask.ratio == 1.0 and not mask.is_identity and bool(mask.dropped.all())
    tokens = torch.randn(3, 8, 4)
    assert mask.gather(tokens).shape == (3, 0, 4)
    fill = torch.randn(1, 1, 4)
    assert torch.equal(mask.scatter(mask.gather(tokens), fill), fill.expand(3, 8, 4))
    sequence = torch.randn(3, 8, 4)  # TREAD's fill: each token's own earlier representation
    assert torch.equal(mask.scatter(mask.gather(tokens), sequence), sequence)
    assert torch.equal(Mask.from_dropped(torch.ones(3, 8, dtype=torch.bool)).ids_restore, mask.ids_restore)


def test_the_draw_rate_is_p_and_the_count_is_the_generators():
    batch, p = 20_000, 0.1
    strategy = PathDrop(RandomMasking(0.5), p)
    result = strategy(batch, (4, 4), generator=_seeded(3))
    kept = check_call_result(result, batch_size=batch, num_tokens=16, subject="path drop")
    dropped = torch.tensor([count == 0 for count in kept])
    replay = _seeded(3)
    RandomMasking(0.5)(batch, (4, 4), generator=replay)  # the strategy's own draws come first
    assert torch.equal(dropped, torch.rand(batch, generator=replay) < p)
    count = int(dropped.sum())
    assert abs(count - batch * p) < 5 * math.sqrt(batch * p * (1 - p))  # 2000 +- 212
    assert set(kept) == {0, 8}


def test_the_samples_that_keep_their_path_keep_the_strategys_mask():
    strategy = GridMasking(0.75, cell=2)
    result = PathDrop(strategy, 0.5)(64, (8, 8), generator=_seeded(1))
    alone = strategy(64, (8, 8), generator=_seeded(1))
    assert isinstance(result, GroupedMask) and [g.num_kept for g in result.groups] == [16, 0]
    stay = result.members[0]
    assert torch.equal(result.dropped[stay], alone.dropped[stay])
    assert bool(result.dropped[result.members[1]].all())
    assert 16 < result.members[1].numel() < 48


def test_p_zero_draws_nothing_and_returns_the_strategys_mask():
    generator = _seeded(5)
    inner = RandomMasking(0.5)
    mask = PathDrop(inner, 0.0)(6, (4, 4), generator=generator)
    state = generator.get_state()
    again = _seeded(5)
    expected = inner(6, (4, 4), generator=again)
    assert torch.equal(state, again.get_state())  # nothing more drawn than the strategy's
    assert torch.equal(mask.ids_keep, expected.ids_keep) and torch.equal(mask.dropped, expected.dropped)


@pytest.mark.parametrize("name", MASKING.names())
def test_a_spec_without_path_drop_builds_the_strategy_itself(name):
    spec = MASKING.get(name)()
    assert spec.path_drop == 0.0
    assert not isinstance(spec.build(), PathDrop)
    built = MASKING.get(name).model_validate({**spec.model_dump(), "path_drop": 0.25}).build()
    assert isinstance(built, PathDrop) and built.probability == 0.25


def test_p_one_drops_every_sample():
    result = PathDrop(RandomMasking(0.5), 1.0)(4, (4, 4), generator=_seeded())
    assert isinstance(result, Mask) and result.num_kept == 0


def test_per_sample_groups_keep_their_counts_and_the_dropped_join_one_group():
    schedule = SigmaRatio(0.25, 0.75, 0.1, 10.0, groups=2)
    sigma = torch.tensor([0.05, 20.0] * 10)
    strategy = PathDrop(RandomMasking(schedule), 0.3)
    result = strategy(20, (4, 4), sigma=sigma, generator=_seeded(2))
    alone = RandomMasking(schedule)(20, (4, 4), sigma=sigma, generator=_seeded(2))
    kept = check_call_result(result, batch_size=20, num_tokens=16, subject="path drop")
    expected = [12, 4] * 10
    assert all(count in (0, want) for count, want in zip(kept, expected)) and {0, 4, 12} == {*kept}
    rows = [row for row, count in enumerate(kept) if count]
    assert torch.equal(result.dropped[rows], alone.dropped[rows])
    assert [g.num_kept for g in result.groups] == sorted({*kept}, reverse=True)  # fewest kept last


def test_kept_counts_follow_the_draw():
    strategy = PathDrop(RandomMasking(0.5), 0.3)
    counts = strategy.kept_counts(500, 16, generator=_seeded(4))
    replay = _seeded(4)
    dropped = (torch.rand(500, generator=replay) < 0.3).tolist()
    assert counts == [0 if drop else 8 for drop in dropped]


def test_path_dropped_rejects_what_is_not_a_drop_pattern():
    mask = Mask.identity(3, 4)
    assert path_dropped(mask, torch.zeros(3, dtype=torch.bool)) is mask
    with pytest.raises(ValueError, match=r"bool \[B=3\]"):
        path_dropped(mask, torch.zeros(2, dtype=torch.bool))
    with pytest.raises(TypeError, match="Mask or GroupedMask"):
        path_dropped(torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool))


def test_bad_probabilities_are_refused():
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            PathDrop(RandomMasking(0.5), bad)
    with pytest.raises(ValidationError, match="path_drop"):
        RandomMaskingSpec(path_drop=1.2)


@pytest.mark.parametrize("spec", [GridMaskingSpec(ratio=0.75, path_drop=0.3), NoMaskingSpec(path_drop=0.5),
                                  RandomMaskingSpec(ratio=0.5, path_drop=1.0)])
def test_the_masking_contract_covers_path_drop(spec):
    result = check_masking_spec(spec, batch_size=16, grid_hw=(4, 4), seed=1)
    assert result is not None


class _Leaky(PathDrop):
    """Drops the sampled rows, and also moves a kept token of another row (a broken path drop)."""

    def __call__(self, *args, **kwargs):
        result = super().__call__(*args, **kwargs)
        if not isinstance(result, GroupedMask):  # p = 0: the strategy's own mask
            return result
        group = result.groups[0]
        keep = group.ids_keep.clone()
        keep[0, 0] = int(torch.nonzero(group.dropped[0])[0])  # a dropped position kept instead
        moved = Mask.from_dropped(~torch.zeros_like(group.dropped).scatter(1, keep, True))
        return GroupedMask((moved, *result.groups[1:]), result.members)


def test_the_path_drop_contract_can_fail(monkeypatch):
    spec = RandomMaskingSpec(ratio=0.5, path_drop=0.5)
    monkeypatch.setattr(RandomMaskingSpec, "build", lambda self, **_: _Leaky(RandomMasking(self.ratio),
                                                                               self.path_drop))
    with pytest.raises(ContractError, match="path drop"):
        check_masking_spec(spec, batch_size=16, grid_hw=(4, 4), seed=1)
