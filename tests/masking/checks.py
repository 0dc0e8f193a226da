"""The Mask contract for a GroupedMask as the built-in strategies give it: the shipped checks
(maskdit.testing) plus what the built-ins promise beyond them (one group per kept count)."""

from __future__ import annotations

from maskdit.masking import GroupedMask, Mask
from maskdit.testing.masks import check_call_result


def check_any_mask(mask: Mask | GroupedMask, kept: list[int]) -> None:
    """``kept[b]``: the count sample b must keep."""
    assert check_call_result(mask, batch_size=len(kept), num_tokens=mask.num_tokens, subject="the mask") == kept
    if isinstance(mask, GroupedMask):
        assert len({group.num_kept for group in mask.groups}) == mask.num_groups  # one group per count
        assert mask.num_kept_per_sample.tolist() == kept
    else:
        assert len(set(kept)) == 1, f"a plain Mask for per-sample counts {kept}"
