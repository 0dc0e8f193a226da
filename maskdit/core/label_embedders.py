"""Class-label embedders, registered as the ``table`` and ``onehot`` plugins.

Labels are always int ids in [0, num_classes]; the id ``num_classes`` is the null label used
for classifier-free guidance (Ho & Salimans 2022). Both keep their weight under the attribute
``embedding_table`` so reference checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be a 1-D integer tensor [B], got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and not labels.device.type == "meta":
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}] ({num_classes} = null), got {low}..{high}")


class TableLabelEmbedder(nn.Module):
    """DiT's embedder: a table of num_classes + 1 rows, the last one a learned null class.

    ``embedding_table.weight``: [num_classes + 1, hidden].
    """

    def __init__(self, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.num_classes)
        return self.embedding_table(labels.long())  # [B, hidden]

    def init_weights(self, generator: torch.Generator | None) -> None:
        nn.init.normal_(self.embedding_table.weight, std=0.02, generator=generator)


class OneHotLabelEmbedder(nn.Module):
    """Reference MaskDiT's embedder: a bias-free Linear applied to the one-hot label.

    ``embedding_table.weight``: [hidden, num_classes]. The null label is the all-zero vector, so its
    embedding is exactly zero. Implemented as a lookup in the transposed weight with a zero row
    appended, which equals the Linear on one-hot vectors without building them.
    """

    def __init__(self, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Linear(num_classes, hidden_size, bias=False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.num_classes)
        table = F.pad(self.embedding_table.weight.t(), (0, 0, 0, 1))  # [num_classes + 1, hidden], last row 0
        return F.embedding(labels.long(), table)  # [B, hidden]

    def init_weights(self, generator: torch.Generator | None) -> None:
        nn.init.normal_(self.embedding_table.weight, std=0.02, generator=generator)
