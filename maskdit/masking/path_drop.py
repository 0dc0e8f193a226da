"""Path drop (SPRINT, Park et al. 2025, "path-drop learning"): with probability p per sample,
drop the whole sparse path of that sample during training.

A path-dropped sample keeps no token (:meth:`Mask.keep_none`, K = 0): the routing's sparse span
sees nothing of it, every position rejoins as the fill (SPRINT's mask token) and is fused with
the dense-shallow output. The model so learns what it predicts without its deep path, which is
the weak branch of path-drop guidance at sampling (:mod:`maskdit.samplers.path_drop`).

:class:`PathDrop` wraps any masking strategy: it draws the strategy's mask as usual, then one
uniform per sample from the same generator (``u < p``: dropped), and returns the samples that
keep their path with their own masks and the dropped ones as one keep-nothing group (a
:class:`~maskdit.masking.grouped.GroupedMask`; the backbone runs each group dense). At p = 0
it draws nothing more and returns the strategy's mask itself.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask


class PathDrop:
    """``PathDrop(strategy, p)``: a masking strategy whose samples, each with probability ``p``,
    keep no token (their sparse path dropped); the others keep ``strategy``'s mask.

    Needs a backbone whose routing rejoins (``routing.end``): elsewhere the encoder would see
    nothing. The draws come from the ``generator`` passed to the call, after the strategy's own."""

    def __init__(self, strategy: Any, probability: float) -> None:
        if not callable(strategy):
            raise TypeError(f"PathDrop wraps a masking strategy (a callable), got {strategy!r}")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not (
                math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise ValueError(f"path drop probability must be a number in [0, 1], got {probability!r}")
        self.strategy = strategy
        self.probability = float(probability)

    @property
    def max_ratio(self) -> float:
        """The largest ratio of a sample that keeps its path (a dropped one keeps nothing)."""
        return self.strategy.max_ratio

    @property
    def schedule(self) -> Any:
        """The wrapped strategy's ratio schedule (None when it has none)."""
        return getattr(self.strategy, "schedule", None)

    def __call__(
        self,
        batch_size: int,
        grid_hw: tuple[int, int],
        *,
        sigma: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Mask | GroupedMask:
        mask = self.strategy(batch_size, grid_hw, sigma=sigma, step=step, generator=generator, device=device)
        if self.probability == 0.0:
            return mask  # nothing drawn: p = 0 is the strategy itself, bit for bit
        return path_dropped(mask, self.draw(batch_size, generator, device))

    def draw(self, batch_size: int, generator: torch.Generator | None,
             device: torch.device | str | None = None) -> torch.Tensor:
        """[B] bool, True = the sample's path is dropped: one uniform per sample from ``generator``
        (on its device, as the strategies draw), ``u < p``."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        return torch.rand(batch_size, generator=generator, device=device) < self.probability

    def kept_counts(self, batch_size: int, num_tokens: int, *, sigma: torch.Tensor | None = None,
                    step: int | None = None, generator: torch.Generator | None = None) -> list[int]:
        """Each sample's kept count: the strategy's, 0 where the path is dropped (drawn as a call
        draws it, after the strategy's schedule)."""
        counts = self.strategy.kept_counts(batch_size, num_tokens, sigma=sigma, step=step, generator=generator)
        if self.probability == 0.0:
            return counts
        dropped = self.draw(batch_size, generator).tolist()
        return [0 if drop else count for count, drop in zip(counts, dropped)]

    def __repr__(self) -> str:
        return f"PathDrop({self.strategy!r}, p={self.probability:g})"


def path_dropped(mask: Mask | GroupedMask, dropped: torch.Tensor) -> Mask | GroupedMask:
    """``mask`` with the samples where ``dropped`` [B] (bool) is True keeping no token.

    The samples that keep their path stay in their groups (in batch order); the dropped ones
    form one last group with K = 0 (the fewest kept, as strategies order groups). A batch with
    nothing dropped is ``mask`` itself; one dropped entirely is a single keep-nothing Mask."""
    if not isinstance(mask, (Mask, GroupedMask)):
        raise TypeError(f"path_dropped takes a Mask or GroupedMask, got {type(mask).__name__}")
    if not isinstance(dropped, torch.Tensor) or dropped.dtype != torch.bool or dropped.shape != (mask.batch_size,):
        raise ValueError(f"dropped must be a bool [B={mask.batch_size}] tensor, got "
                         f"{getattr(dropped, 'dtype', type(dropped).__name__)} {tuple(getattr(dropped, 'shape', ()))}")
    if not bool(dropped.any()):
        return mask
    if isinstance(mask, Mask):
        groups, members = (mask,), (torch.arange(mask.batch_size, device=mask.dropped.device),)
    else:
        groups, members = mask.groups, mask.members
    device = groups[0].dropped.device
    dropped = dropped.to(device)
    kept_groups, kept_members, none_rows = [], [], []
    for group, rows in zip(groups, members):
        drop = dropped[rows]  # [B_g]
        if group.num_kept == 0:  # already keeps nothing: joins the dropped group
            none_rows.append(rows)
            continue
        none_rows.append(rows[drop])
        stay = torch.nonzero(~drop).flatten()
        if stay.numel():
            kept_groups.append(group.rows(stay))
            kept_members.append(rows[stay])
    none = torch.sort(torch.cat(none_rows)).values  # ascending batch order
    kept_groups.append(Mask.keep_none(none.numel(), mask.num_tokens, device=device))
    kept_members.append(none)
    return GroupedMask.combine(kept_groups, kept_members)
