"""Assertions of the Mask contract, for a Mask (one K) and for a GroupedMask (one K per group)."""

from __future__ import annotations

import torch

from maskdit.masking import GroupedMask, Mask


def check_mask(mask: Mask, kept: int, seed: int = 0) -> None:
    """Exact counts, disjoint and complete keep / drop, ids_restore the inverse permutation,
    gather / scatter round trip."""
    assert isinstance(mask, Mask)
    batch, length = mask.batch_size, mask.num_tokens
    assert mask.ids_keep.shape == (batch, kept)
    assert mask.dropped.shape == mask.ids_restore.shape == (batch, length)
    assert mask.dropped.sum(dim=1).tolist() == [length - kept] * batch

    for b in range(batch):
        keep = mask.ids_keep[b].tolist()
        dropped = torch.nonzero(mask.dropped[b]).flatten().tolist()
        assert len(set(keep)) == len(keep)
        assert set(keep).isdisjoint(dropped)
        assert sorted(keep + dropped) == list(range(length))
        # ids_restore inverts the order "kept (in ids_keep order), then dropped"
        order = torch.argsort(mask.ids_restore[b])
        assert order[:kept].tolist() == keep
        assert sorted(order[kept:].tolist()) == dropped
        assert torch.equal(order[mask.ids_restore[b]], torch.arange(length))

    # gather then scatter: kept tokens bit-exact, the fill at every dropped position
    tokens = torch.randn(batch, length, 3, generator=torch.Generator().manual_seed(seed))
    fill = torch.tensor([7.0, -8.0, 9.5])
    restored = mask.scatter(mask.gather(tokens), fill)
    keep = ~mask.dropped
    assert torch.equal(restored[keep], tokens[keep])
    assert torch.equal(restored[mask.dropped], fill.expand(int(mask.dropped.sum()), 3))


def check_any_mask(mask: Mask | GroupedMask, kept: list[int], seed: int = 0) -> None:
    """``kept[b]``: the count sample b must keep. A GroupedMask's groups partition the batch,
    each holds samples of one count and obeys the Mask contract, and its ``dropped`` puts each
    group's rows back at their batch positions."""
    if isinstance(mask, Mask):
        assert len(set(kept)) == 1, f"a plain Mask for per-sample counts {kept}"
        check_mask(mask, kept[0], seed)
        return
    assert isinstance(mask, GroupedMask)
    batch = len(kept)
    members = torch.cat(mask.members).tolist()
    assert sorted(members) == list(range(batch))  # every sample in exactly one group
    assert len({group.num_kept for group in mask.groups}) == mask.num_groups  # one group per count
    for group, rows in zip(mask.groups, mask.members):
        counts = {kept[b] for b in rows.tolist()}
        assert counts == {group.num_kept}
        check_mask(group, group.num_kept, seed)
        assert torch.equal(mask.dropped[rows], group.dropped)
    assert (~mask.dropped).sum(dim=1).tolist() == kept
    assert mask.num_kept_per_sample.tolist() == kept
