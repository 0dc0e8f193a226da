"""The Mask: which patch tokens of a batch are kept (seen by the encoder) and which are dropped.

Layout follows the reference MaskDiT / MAE code: ``ids_keep`` lists the kept grid positions
(in whatever order the strategy chose, e.g. shuffled), ``ids_restore`` is the inverse of the
permutation ``cat(ids_keep, ids_dropped)``, so ``scatter`` can put the encoder's K tokens and
L - K fill tokens back into grid order with one gather.

A Mask keeps the same K in every sample, so the kept tokens stay one dense [B, K, D] tensor.
Per-sample ratios (noise-adaptive masking) come as a :class:`~maskdit.masking.grouped.GroupedMask`:
the batch split into groups of samples, each group one Mask with its own K. K = 0 (keep nothing,
:meth:`Mask.keep_none`) is path drop (SPRINT, Park et al. 2025): the whole sparse span of a
routing that rejoins is replaced by its fill; a backbone whose dropped tokens never rejoin refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Mask:
    """ids_keep [B, K] long, ids_restore [B, L] long, dropped [B, L] bool (True = dropped, grid order).

    Contract: every sample keeps exactly K tokens (0 <= K <= L; 0 only for path drop); per sample, ``ids_keep`` and the
    dropped positions are disjoint and together all L positions; ``ids_restore`` is the inverse
    of the order "ids_keep, then the dropped positions"; ``scatter(gather(t), fill)`` gives back
    t at the kept positions and ``fill`` at the dropped ones. A batch whose samples keep
    different counts is a :class:`~maskdit.masking.grouped.GroupedMask` of such Masks.
    """

    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    dropped: torch.Tensor

    def __post_init__(self) -> None:
        keep, restore, dropped = self.ids_keep, self.ids_restore, self.dropped
        if keep.ndim != 2 or restore.ndim != 2 or dropped.ndim != 2:
            raise ValueError(
                "Mask tensors must be 2-D: ids_keep [B, K], ids_restore [B, L], dropped [B, L]; "
                f"got shapes {tuple(keep.shape)}, {tuple(restore.shape)}, {tuple(dropped.shape)}"
            )
        if restore.shape != dropped.shape or keep.shape[0] != restore.shape[0]:
            raise ValueError(
                f"Mask shapes disagree: ids_keep {tuple(keep.shape)}, ids_restore "
                f"{tuple(restore.shape)}, dropped {tuple(dropped.shape)}"
            )
        if keep.shape[1] > restore.shape[1] or restore.shape[1] < 1:
            raise ValueError(f"Mask keeps {keep.shape[1]} of {restore.shape[1]} tokens; need 0 <= K <= L and L >= 1")
        if keep.dtype != torch.long or restore.dtype != torch.long:
            raise TypeError(f"ids_keep and ids_restore must be int64, got {keep.dtype} and {restore.dtype}")
        if dropped.dtype != torch.bool:
            raise TypeError(f"dropped must be bool, got {dropped.dtype}")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def identity(cls, batch_size: int, num_tokens: int, device: torch.device | str | None = None) -> Mask:
        """Keep every token, in grid order (the inference path, mask ratio 0)."""
        ids = torch.arange(num_tokens, device=device).expand(batch_size, num_tokens).contiguous()
        dropped = torch.zeros(batch_size, num_tokens, dtype=torch.bool, device=device)
        return cls(ids_keep=ids, ids_restore=ids.clone(), dropped=dropped)

    @classmethod
    def keep_none(cls, batch_size: int, num_tokens: int, device: torch.device | str | None = None) -> Mask:
        """Keep no token (K = 0): every position is dropped, i.e. filled where the routing rejoins.

        This is path drop (SPRINT's training with probability p per sample, and the weak branch of
        path-drop guidance): the sparse span sees nothing and the dense blocks see only its fill."""
        ids = torch.arange(num_tokens, device=device).expand(batch_size, num_tokens)
        return cls.from_order(ids.contiguous(), 0)

    @classmethod
    def from_order(cls, ids_shuffle: torch.Tensor, num_kept: int) -> Mask:
        """From a per-sample order of all L positions [B, L]: the first ``num_kept`` are kept
        (0 keeps none: path drop)."""
        batch, length = ids_shuffle.shape
        if not 0 <= num_kept <= length:
            raise ValueError(f"num_kept must be in [0, {length}], got {num_kept}")
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        # position j is dropped iff its rank in the order is >= num_kept
        dropped = ids_restore >= num_kept
        return cls(ids_keep=ids_shuffle[:, :num_kept].contiguous(), ids_restore=ids_restore, dropped=dropped)

    @classmethod
    def from_dropped(cls, dropped: torch.Tensor) -> Mask:
        """From a bool [B, L] drop pattern with the same count in every row; kept ids in grid order."""
        if dropped.ndim != 2 or dropped.dtype != torch.bool:
            raise ValueError(f"dropped must be a bool [B, L] tensor, got {dropped.dtype} {tuple(dropped.shape)}")
        counts = dropped.sum(dim=1)
        if counts.numel() and not bool((counts == counts[0]).all()):
            raise ValueError(f"every sample must drop the same number of tokens, got counts {counts.tolist()}")
        num_kept = dropped.shape[1] - (int(counts[0]) if counts.numel() else 0)
        # stable sort puts kept positions (0) first, each group in ascending grid order
        ids_shuffle = torch.argsort(dropped.to(torch.uint8), dim=1, stable=True)
        return cls.from_order(ids_shuffle, num_kept)

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.ids_keep.shape[0]

    @property
    def num_kept(self) -> int:
        return self.ids_keep.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.ids_restore.shape[1]

    @property
    def num_dropped(self) -> int:
        return self.num_tokens - self.num_kept

    @property
    def ratio(self) -> float:
        """Fraction of tokens dropped."""
        return self.num_dropped / self.num_tokens

    @property
    def is_identity(self) -> bool:
        return self.num_dropped == 0

    def to(self, device: torch.device | str) -> Mask:
        return Mask(self.ids_keep.to(device), self.ids_restore.to(device), self.dropped.to(device))

    def rows(self, rows: slice | torch.Tensor) -> Mask:
        """The mask of ``rows`` of the batch, a slice or an index tensor (every row keeps K tokens,
        so this is again a Mask)."""
        return Mask(self.ids_keep[rows], self.ids_restore[rows], self.dropped[rows])

    # ---- token movement -------------------------------------------------------------------
    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, K, D]: the kept tokens, in ids_keep order."""
        self._check_tokens(tokens, self.num_tokens, "gather")
        index = self.ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # [B, K, D]
        return torch.gather(tokens, 1, index)

    def scatter(self, kept: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
        """[B, K, D] -> [B, L, D]: kept tokens back at their grid positions, ``fill`` elsewhere.

        ``fill`` broadcasts to [D] (e.g. a learned mask token of shape [1, 1, D]), is a scalar, or
        is a whole sequence [B, L, D] whose own values stay at the dropped positions (token
        routing puts back each dropped token's earlier representation, TREAD, Krause et al. 2025).
        """
        self._check_tokens(kept, self.num_kept, "scatter")
        batch, _, dim = kept.shape
        if isinstance(fill, torch.Tensor) and fill.ndim == 3 and fill.shape[1] == self.num_tokens > 1:
            if fill.shape != (batch, self.num_tokens, dim):
                raise ValueError(f"a sequence fill must be [B={batch}, {self.num_tokens}, {dim}], "
                                 f"got {tuple(fill.shape)}")
            index = self.ids_keep.unsqueeze(-1).expand(-1, -1, dim)  # [B, K, D]
            return fill.to(kept.dtype).scatter(1, index, kept)  # out of place: gradients reach both
        fill = torch.as_tensor(fill, dtype=kept.dtype, device=kept.device)
        if fill.numel() not in (1, dim):
            raise ValueError(f"fill must broadcast to [{dim}], got shape {tuple(fill.shape)}")
        filler = fill.reshape(1, 1, -1).expand(batch, self.num_dropped, dim)  # [B, L-K, D]
        shuffled = torch.cat([kept, filler], dim=1)  # [B, L, D] in ids_shuffle order
        index = self.ids_restore.unsqueeze(-1).expand(-1, -1, dim)  # [B, L, D]
        return torch.gather(shuffled, 1, index)

    def _check_tokens(self, tokens: torch.Tensor, expected_len: int, what: str) -> None:
        if tokens.ndim != 3 or tokens.shape[0] != self.batch_size or tokens.shape[1] != expected_len:
            raise ValueError(
                f"Mask.{what} expects [B={self.batch_size}, {expected_len}, D] tokens, "
                f"got {tuple(tokens.shape)}"
            )

    def __repr__(self) -> str:
        return f"Mask(batch={self.batch_size}, tokens={self.num_tokens}, kept={self.num_kept})"
