"""GroupedMask: per-sample kept counts as groups of samples, each group one dense Mask.

A :class:`~maskdit.masking.mask.Mask` keeps the same K tokens in every sample, which keeps the
encoder's input one dense [B, K, D] tensor. When the ratio differs between samples (noise-adaptive
masking: each sample's ratio follows its own sigma), the batch is split into groups that each
share one K. The model runs each group as one dense tensor (:meth:`GroupedMask.run`) and puts
the per-sample outputs back in the batch's order; the loss terms see each sample's own mask
through :attr:`GroupedMask.dropped` [B, L], in batch order as for a Mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from maskdit.masking.mask import Mask


@dataclass(frozen=True, eq=False)
class GroupedMask:
    """``groups[g]`` is the Mask of the batch rows ``members[g]`` (an int64 [B_g] tensor).

    Contract: one or more groups, each a Mask obeying the Mask contract with its own K (exact
    counts, disjoint and complete keep / drop, ``ids_restore`` the inverse permutation, gather /
    scatter round trip, all inside every group); all groups have the same number of tokens L;
    the members of all groups together are each of the batch rows 0 .. B - 1 exactly once.
    Strategies give one group per distinct kept count, in order of decreasing count, each
    group's members in ascending batch order; a batch with one count is a plain Mask.

    What a Mask offers per sample, a GroupedMask offers in batch order: ``dropped`` [B, L],
    ``batch_size``, ``num_tokens``, ``ratio`` (the mean dropped fraction over the samples),
    ``is_identity``, ``rows`` and ``to``. ``gather`` / ``scatter`` need one K, so they are done
    per group: :meth:`run` calls a function once per group and reassembles the results.
    """

    groups: tuple[Mask, ...]
    members: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        groups, members = tuple(self.groups), tuple(self.members)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "members", members)
        if not groups or len(groups) != len(members):
            raise ValueError(f"a GroupedMask needs one member list per group and at least one group, got "
                             f"{len(groups)} groups and {len(members)} member lists")
        for g, (mask, rows) in enumerate(zip(groups, members)):
            if not isinstance(mask, Mask):
                raise TypeError(f"group {g} must be a Mask, got {type(mask).__name__}")
            if not isinstance(rows, torch.Tensor) or rows.dtype != torch.long or rows.ndim != 1:
                raise TypeError(f"members[{g}] must be an int64 1-D tensor of batch rows, got {rows!r}")
            if rows.numel() != mask.batch_size:
                raise ValueError(f"group {g} holds {mask.batch_size} samples but members[{g}] lists {rows.numel()}")
            if mask.num_tokens != groups[0].num_tokens:
                raise ValueError(f"every group must have the same number of tokens: group 0 has "
                                 f"{groups[0].num_tokens}, group {g} has {mask.num_tokens}")
            if rows.device != mask.dropped.device or mask.dropped.device != groups[0].dropped.device:
                raise ValueError(f"group {g} and its members must be on the device of group 0")
        order = torch.cat(members)
        if not torch.equal(torch.sort(order).values, torch.arange(order.numel(), device=order.device)):
            raise ValueError(f"the groups' members must list each batch row 0..{order.numel() - 1} exactly once")

    @classmethod
    def combine(cls, groups: Sequence[Mask], members: Sequence[torch.Tensor]) -> Mask | GroupedMask:
        """A GroupedMask of ``groups``, or the one Mask itself when one group holds the batch in order."""
        grouped = cls(tuple(groups), tuple(members))
        only = grouped.groups[0]
        if len(grouped.groups) == 1 and torch.equal(grouped.members[0], torch.arange(only.batch_size,
                                                                                      device=only.dropped.device)):
            return only
        return grouped

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return sum(mask.batch_size for mask in self.groups)

    @property
    def num_tokens(self) -> int:
        return self.groups[0].num_tokens

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def ratio(self) -> float:
        """Fraction of the batch's tokens dropped (the mean of the samples' dropped fractions)."""
        dropped = sum(mask.num_dropped * mask.batch_size for mask in self.groups)
        return dropped / (self.batch_size * self.num_tokens)

    @property
    def is_identity(self) -> bool:
        return all(mask.is_identity for mask in self.groups)

    @cached_property
    def _inverse(self) -> torch.Tensor:
        """[B]: where each batch row sits in ``cat(members)`` (the group-major order)."""
        return torch.argsort(torch.cat(self.members))

    @cached_property
    def dropped(self) -> torch.Tensor:
        """[B, L] bool, True = dropped, in batch order and grid order: each sample's own mask."""
        return self.merge([mask.dropped for mask in self.groups])

    @property
    def num_kept_per_sample(self) -> torch.Tensor:
        """[B] int64: the tokens each sample keeps, in batch order."""
        counts = [torch.full((mask.batch_size,), mask.num_kept, dtype=torch.long, device=mask.dropped.device)
                  for mask in self.groups]
        return self.merge(counts)

    def to(self, device: torch.device | str) -> GroupedMask:
        return GroupedMask(tuple(mask.to(device) for mask in self.groups),
                           tuple(rows.to(device) for rows in self.members))

    def rows(self, rows: slice) -> Mask | GroupedMask:
        """The mask of batch rows ``rows`` (a slice, e.g. one rank's share): each group keeps its
        members inside the slice, renumbered from 0; groups left empty disappear."""
        start, stop, step = rows.indices(self.batch_size)
        if step != 1 or stop <= start:
            raise ValueError(f"rows must be a non-empty contiguous slice of the batch of {self.batch_size}, got {rows}")
        groups, members = [], []
        for mask, ids in zip(self.groups, self.members):
            inside = (ids >= start) & (ids < stop)
            if bool(inside.any()):
                where = torch.nonzero(inside).flatten()
                groups.append(mask.rows(where))
                members.append(ids[where] - start)
        return GroupedMask.combine(groups, members)

    # ---- running each group ---------------------------------------------------------------
    def split(self, batched: torch.Tensor) -> list[torch.Tensor]:
        """[B, ...] -> one [B_g, ...] tensor per group (the group's members, in member order)."""
        if not isinstance(batched, torch.Tensor) or batched.ndim < 1 or batched.shape[0] != self.batch_size:
            raise ValueError(f"GroupedMask.split expects a [B={self.batch_size}, ...] tensor, got "
                             f"{_describe(batched)}")
        return [batched[rows.to(batched.device)] for rows in self.members]

    def merge(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """One [B_g, ...] tensor per group -> [B, ...] in batch order (the inverse of :meth:`split`)."""
        if len(parts) != self.num_groups:
            raise ValueError(f"GroupedMask.merge expects {self.num_groups} parts, one per group, got {len(parts)}")
        for g, (part, mask) in enumerate(zip(parts, self.groups)):
            if not isinstance(part, torch.Tensor) or part.ndim < 1 or part.shape[0] != mask.batch_size:
                raise ValueError(f"part {g} must be a [B_g={mask.batch_size}, ...] tensor, got {_describe(part)}")
        joined = torch.cat(list(parts))  # [B, ...] in group-major order
        return joined[self._inverse.to(joined.device)]  # [B, ...] in batch order

    def run(self, fn: Callable[..., torch.Tensor], *batched: torch.Tensor | None) -> torch.Tensor:
        """``fn(group_mask, *group_rows_of_each_input)`` once per group, results merged in batch order.

        Each of ``batched`` is a [B, ...] tensor, or None (passed on as None); e.g. the backbone
        runs ``run(lambda m, x, t, y: forward(x, t, y, mask=m), x, t, labels)``. Each group is one
        dense call, so every sample's output is what it would be with its group's Mask alone."""
        pieces = [[None] * self.num_groups if value is None else self.split(value) for value in batched]
        outputs = [fn(mask, *(piece[g] for piece in pieces)) for g, mask in enumerate(self.groups)]
        return self.merge(outputs)

    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        raise TypeError("a GroupedMask keeps a different number of tokens in each group, so its kept tokens are "
                        "not one tensor: gather inside GroupedMask.run(fn, ...), once per group")

    def scatter(self, kept: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
        raise TypeError("a GroupedMask keeps a different number of tokens in each group: scatter inside "
                        "GroupedMask.run(fn, ...), once per group")

    def __repr__(self) -> str:
        groups = ", ".join(f"{mask.batch_size}x{mask.num_kept}" for mask in self.groups)
        return f"GroupedMask(batch={self.batch_size}, tokens={self.num_tokens}, samples x kept: {groups})"


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
