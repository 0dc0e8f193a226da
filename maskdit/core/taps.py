"""Tokens handed out of the backbone's own forward pass (the hidden-state contract).

Representation alignment (REPA, Yu et al. 2025, sec. 3) reads the tokens after an early encoder
block. They are taken from the very forward pass the denoising loss uses, so alignment costs no
second pass: while :meth:`~maskdit.core.model.MaskDiT.tapping` is active, the encoder records the
output of each tapped block together with the grid positions its rows hold, which under every
routing are exactly the tokens present at that block (the kept ones inside the sparse span:
MaskDiT, deferred masking, SPRINT's deep blocks, TREAD's routed blocks; all of them outside it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask


@dataclass(frozen=True, eq=False)
class TappedTokens:
    """The tokens after one block for some rows of the batch.

    tokens [B_g, N, D]; positions [B_g, N] int64: the grid position (row-major, as the Mask's)
    of each token, or None when the block saw all L tokens in grid order; rows [B_g] int64: which
    batch rows these are, or None for the whole batch in order (rows differ from the whole batch
    only under a GroupedMask, whose groups run one at a time); grid (h, w): the token grid."""

    tokens: torch.Tensor
    positions: torch.Tensor | None
    rows: torch.Tensor | None
    grid: tuple[int, int]


class BlockTaps:
    """What one tapped forward pass recorded: block index -> its pieces (one per dense call)."""

    def __init__(self, blocks: Iterable[int], depth: int, grid: tuple[int, int]) -> None:
        blocks = tuple(sorted(set(blocks)))
        bad = [b for b in blocks if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b < depth]
        if bad or not blocks:
            raise ValueError(f"tapped blocks must be encoder block indices in [0, {depth}), got {list(blocks) or 'none'}")
        self.blocks = blocks
        self.grid = grid
        self._recorded: dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]] = {b: [] for b in blocks}

    def record(self, block: int, tokens: torch.Tensor, positions: torch.Tensor | None) -> None:
        """Called by the encoder after block ``block`` (tokens [B, N, D]; positions [B, N] or None)."""
        self._recorded[block].append((tokens, positions))

    def resolve(self, mask: Mask | GroupedMask | None) -> dict[int, tuple[TappedTokens, ...]]:
        """The recorded pieces with their batch rows, for a forward pass run with ``mask``. A
        GroupedMask ran its groups in order (GroupedMask.run), one recorded piece per group."""
        groups = mask.members if isinstance(mask, GroupedMask) else (None,)
        out = {}
        for block, pieces in self._recorded.items():
            if len(pieces) != len(groups):
                raise RuntimeError(f"block {block} was recorded {len(pieces)} times in a pass of {len(groups)} "
                                   "dense call(s): was the backbone called more than once while tapping?")
            out[block] = tuple(TappedTokens(tokens, positions, rows, self.grid)
                               for (tokens, positions), rows in zip(pieces, groups))
        return out
