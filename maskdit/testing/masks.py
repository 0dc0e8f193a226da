"""The Mask contract, checked on any Mask a strategy returns.

A Mask of a batch of B samples over L tokens keeps K tokens in every sample (0 <= K <= L; K = 0,
keeping nothing, only from path drop):

- 'mask shapes': ids_keep [B, K] and ids_restore [B, L] int64, dropped [B, L] bool, with the B
  and L of the call;
- 'exact counts': every row of ``dropped`` marks exactly L - K tokens;
- 'disjoint and complete': each row's kept ids are distinct grid positions not marked dropped,
  so kept and dropped together cover all L positions once;
- 'ids_restore inverse': ids_restore is the inverse of the permutation "kept ids in ids_keep
  order, then the dropped ones", i.e. argsort(ids_restore)[:K] == ids_keep;
- 'gather/scatter round trip': scatter(gather(tokens), fill) gives back the kept tokens exactly
  and ``fill`` at every dropped position.

A batch whose samples need different K (per-sample ratios) is served as several Masks: a result
with ``groups`` (Masks) and ``members`` (the int64 batch rows of each group). Contract 'mask
groups': the members list each batch row exactly once, each group satisfies the Mask contract
on its own with the call's L, and the result's ``dropped`` [B, L] (if it has one) holds each
group's rows at their batch positions.
"""

from __future__ import annotations

from typing import Any

import torch

from maskdit.masking.mask import Mask
from maskdit.testing.contract import require


def check_mask(mask: Mask, *, batch_size: int | None = None, num_tokens: int | None = None,
               subject: str = "a Mask") -> None:
    """Raise ContractError naming the first rule of the Mask contract ``mask`` breaks."""
    require(isinstance(mask, Mask), "mask shapes", subject, lambda: f"expected a Mask, got {type(mask).__name__}")
    keep, restore, dropped = mask.ids_keep, mask.ids_restore, mask.dropped
    batch, kept = keep.shape
    length = restore.shape[1]
    _check_shapes(mask, batch_size, num_tokens, subject)

    counts = dropped.sum(dim=1)  # [B]
    bad = torch.nonzero(counts != length - kept).flatten()
    require(bad.numel() == 0, "exact counts", subject,
            lambda: f"ids_keep keeps {kept} of {length} tokens, so every row must drop {length - kept}; "
                    f"row {int(bad[0])} drops {int(counts[bad[0]])}")

    require(bool(((keep >= 0) & (keep < length)).all()), "disjoint and complete", subject,
            lambda: f"ids_keep holds positions outside [0, {length}): {keep.tolist()}")
    ordered = keep.sort(dim=1).values  # [B, K]
    repeated = torch.nonzero((ordered[:, 1:] == ordered[:, :-1]).any(dim=1)).flatten()
    require(repeated.numel() == 0, "disjoint and complete", subject,
            lambda: f"row {int(repeated[0])} keeps a position twice: {keep[repeated[0]].tolist()}")
    overlap = torch.nonzero(dropped.gather(1, keep).any(dim=1)).flatten()
    require(overlap.numel() == 0, "disjoint and complete", subject,
            lambda: f"row {int(overlap[0])} marks kept positions as dropped: kept {keep[overlap[0]].tolist()}, "
                    f"dropped {torch.nonzero(dropped[overlap[0]]).flatten().tolist()}")

    grid = torch.arange(length, device=restore.device).expand(batch, length)
    require(torch.equal(restore.sort(dim=1).values, grid), "ids_restore inverse", subject,
            lambda: "ids_restore is not a permutation of 0..L-1 in every row")
    order = torch.argsort(restore, dim=1)  # [B, L]: kept (ids_keep order), then dropped
    wrong = torch.nonzero((order[:, :kept] != keep).any(dim=1) | ~dropped.gather(1, order[:, kept:]).all(dim=1))
    require(wrong.numel() == 0, "ids_restore inverse", subject,
            lambda: f"row {int(wrong[0, 0])}: argsort(ids_restore) = {order[wrong[0, 0]].tolist()} should list "
                    f"ids_keep {keep[wrong[0, 0]].tolist()} and then the dropped positions")

    _check_round_trip(mask, subject)


def check_call_result(result: Any, *, batch_size: int, num_tokens: int, subject: str) -> list[int]:
    """The Mask contract on what a strategy call returned: one Mask, or groups of Masks (see the
    module docstring). Returns each sample's kept count, in batch order."""
    if isinstance(result, Mask):
        check_mask(result, batch_size=batch_size, num_tokens=num_tokens, subject=subject)
        return [result.num_kept] * batch_size
    groups, members = getattr(result, "groups", None), getattr(result, "members", None)
    require(groups is not None and members is not None, "mask shapes", subject,
            lambda: f"a strategy returns a Mask (or groups of Masks), got {type(result).__name__}")
    groups, members = list(groups), list(members)
    rows = [row for ids in members for row in torch.as_tensor(ids).tolist()]
    require(len(groups) == len(members) and sorted(rows) == list(range(batch_size)), "mask groups", subject,
            lambda: f"the groups' members must list each of the {batch_size} batch rows once, got {rows}")
    kept = [0] * batch_size
    for index, (mask, ids) in enumerate(zip(groups, members)):
        ids = torch.as_tensor(ids)
        check_mask(mask, batch_size=ids.numel(), num_tokens=num_tokens, subject=f"{subject}, group {index}")
        for row in ids.tolist():
            kept[row] = mask.num_kept
        dropped = getattr(result, "dropped", None)
        require(dropped is None or torch.equal(dropped[ids.to(dropped.device)], mask.dropped), "mask groups",
                subject, lambda: f"its dropped [B, L] does not hold group {index}'s rows at their batch positions")
    return kept


def _check_shapes(mask: Mask, batch_size: int | None, num_tokens: int | None, subject: str) -> None:
    keep, restore, dropped = mask.ids_keep, mask.ids_restore, mask.dropped
    ok = (keep.ndim == restore.ndim == dropped.ndim == 2 and restore.shape == dropped.shape
          and keep.shape[0] == restore.shape[0] and keep.dtype == restore.dtype == torch.long
          and dropped.dtype == torch.bool)
    require(ok, "mask shapes", subject,
            lambda: f"need ids_keep [B, K] and ids_restore [B, L] int64, dropped [B, L] bool; got "
                    f"{keep.dtype} {tuple(keep.shape)}, {restore.dtype} {tuple(restore.shape)}, "
                    f"{dropped.dtype} {tuple(dropped.shape)}")
    require(batch_size is None or keep.shape[0] == batch_size, "mask shapes", subject,
            lambda: f"the call asked for {batch_size} samples, the mask has {keep.shape[0]}")
    require(num_tokens is None or restore.shape[1] == num_tokens, "mask shapes", subject,
            lambda: f"the grid has {num_tokens} tokens, the mask covers {restore.shape[1]}")


def _check_round_trip(mask: Mask, subject: str) -> None:
    batch, length = mask.dropped.shape
    # distinct values everywhere, so a token put back at the wrong place shows
    tokens = torch.arange(batch * length * 2, dtype=torch.float64, device=mask.dropped.device).view(batch, length, 2)
    fill = torch.tensor([-1.5, -2.5], dtype=torch.float64, device=mask.dropped.device)
    restored = mask.scatter(mask.gather(tokens), fill)  # [B, L, 2]
    kept = ~mask.dropped
    require(torch.equal(restored[kept], tokens[kept]), "gather/scatter round trip", subject,
            "scatter(gather(tokens)) moved or changed kept tokens")
    require(torch.equal(restored[mask.dropped], fill.expand(int(mask.dropped.sum()), 2)),
            "gather/scatter round trip", subject, "scatter did not put the fill at every dropped position")
