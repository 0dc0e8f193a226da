"""GroupedMask: groups of samples with one kept count each, put back in batch order."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdit.masking import GroupedMask, Mask, RandomMasking, SigmaRatio
from tests.masking.checks import check_any_mask

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grouped(batch: int = 6, seed: int = 0) -> GroupedMask:
    """Samples 0..5 at rising sigma, one group each (every sample its own count), shuffled order."""
    sigma = torch.tensor([5.0, 0.01, 80.0, 0.3, 1.0, 0.002])[:batch]
    mask = RandomMasking(SigmaRatio(0.1, 0.8, groups=batch))(batch, (4, 4), sigma=sigma,
                                                             generator=torch.Generator().manual_seed(seed))
    assert isinstance(mask, GroupedMask)
    return mask


@FAST
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5), length=st.integers(2, 12),
       seed=st.integers(0, 10_000), dim=st.integers(1, 3))
def test_split_merge_and_run_keep_the_batch_order(sizes, length, seed, dim):
    generator = torch.Generator().manual_seed(seed)
    batch = sum(sizes)
    rows = torch.randperm(batch, generator=generator)  # members in any order
    groups, members, start = [], [], 0
    for size in sizes:
        kept = int(torch.randint(1, length + 1, (), generator=generator))
        order = torch.argsort(torch.rand(size, length, generator=generator), dim=1)
        groups.append(Mask.from_order(order, kept))
        members.append(rows[start:start + size])
        start += size
    mask = GroupedMask(tuple(groups), tuple(members))
    values = torch.randn(batch, length, dim, generator=generator)

    assert torch.equal(mask.merge(mask.split(values)), values)
    for part, rows_g in zip(mask.split(values), mask.members):
        assert torch.equal(part, values[rows_g])
    # run: each group's own call, each sample's result back at its batch row
    out = mask.run(lambda group, tokens: group.scatter(group.gather(tokens), -1.0), values)
    expected = values.masked_fill(mask.dropped.unsqueeze(-1), -1.0)
    assert torch.equal(out, expected)
    # dropped: each sample's own mask in batch order; the ratio is the mean share dropped
    for group, rows_g in zip(mask.groups, mask.members):
        assert torch.equal(mask.dropped[rows_g], group.dropped)
    assert mask.ratio == pytest.approx(mask.dropped.double().mean().item())
    assert mask.batch_size == batch and mask.num_tokens == length


def test_run_passes_none_and_gradients_through():
    mask = _grouped()
    x = torch.randn(6, 16, 2, requires_grad=True)
    seen = []

    def call(group, tokens, nothing):
        seen.append((group.batch_size, nothing))
        return group.gather(tokens).sum(dim=1)  # [B_g, 2]

    mask.run(call, x, None).sum().backward()
    assert seen == [(1, None)] * 6
    assert torch.equal(x.grad, (~mask.dropped).unsqueeze(-1).expand(-1, -1, 2).float())


def test_rows_of_a_grouped_mask_are_the_rows_of_each_sample():
    mask = _grouped()
    for rows in (slice(0, 3), slice(3, 6), slice(2, 5), slice(1, 2)):
        part = mask.rows(rows)
        assert torch.equal(part.dropped, mask.dropped[rows])
        check_any_mask(part, (~mask.dropped[rows]).sum(dim=1).tolist())
    assert isinstance(mask.rows(slice(1, 2)), Mask)  # one sample: its plain Mask
    with pytest.raises(ValueError, match="contiguous slice"):
        mask.rows(slice(0, 6, 2))


def test_combine_of_one_group_in_order_is_the_mask():
    mask = Mask.from_order(torch.argsort(torch.rand(3, 5), dim=1), 2)
    assert GroupedMask.combine([mask], [torch.arange(3)]) is mask
    assert isinstance(GroupedMask.combine([mask], [torch.tensor([2, 0, 1])]), GroupedMask)


def test_to_and_repr_and_identity():
    mask = _grouped()
    moved = mask.to("cpu")
    assert torch.equal(moved.dropped, mask.dropped) and not mask.is_identity
    assert "GroupedMask(batch=6, tokens=16" in repr(mask)
    identity = GroupedMask((Mask.identity(2, 4), Mask.identity(1, 4)), (torch.tensor([0, 2]), torch.tensor([1])))
    assert identity.is_identity and identity.ratio == 0.0


def test_gather_and_scatter_say_to_run_per_group():
    mask = _grouped()
    with pytest.raises(TypeError, match="GroupedMask.run"):
        mask.gather(torch.zeros(6, 16, 2))
    with pytest.raises(TypeError, match="GroupedMask.run"):
        mask.scatter(torch.zeros(6, 4, 2))


def test_constructor_validates():
    one, two = Mask.identity(2, 4), Mask.identity(1, 4)
    with pytest.raises(ValueError, match="exactly once"):
        GroupedMask((one, two), (torch.tensor([0, 1]), torch.tensor([1])))
    with pytest.raises(ValueError, match="exactly once"):
        GroupedMask((one, two), (torch.tensor([0, 1]), torch.tensor([5])))
    with pytest.raises(ValueError, match="lists 3"):
        GroupedMask((one,), (torch.tensor([0, 1, 2]),))
    with pytest.raises(ValueError, match="same number of tokens"):
        GroupedMask((one, Mask.identity(1, 5)), (torch.tensor([0, 1]), torch.tensor([2])))
    with pytest.raises(TypeError, match="int64"):
        GroupedMask((one,), (torch.tensor([0.0, 1.0]),))
    with pytest.raises(TypeError, match="must be a Mask"):
        GroupedMask(("mask",), (torch.tensor([0]),))
    with pytest.raises(ValueError, match="at least one group"):
        GroupedMask((), ())
    mask = _grouped()
    with pytest.raises(ValueError, match=r"\[B=6, \.\.\.\]"):
        mask.split(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="6 parts"):
        mask.merge([torch.zeros(1, 2)])
