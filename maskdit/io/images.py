"""The sample grid: one row per class, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.utils import save_image

from maskdit.io.files import atomic_write


def class_grid(images: torch.Tensor, labels: torch.Tensor, *, num_classes: int, per_class: int = 10) -> torch.Tensor:
    """Arrange ``images`` [N, C, H, W] in [-1, 1] as rows of ``per_class`` images of each class 0..num_classes-1.

    Returns [num_classes * per_class, C, H, W] in row-major order; missing images are black (-1).
    """
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"need images [N, C, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}")
    if per_class < 1 or num_classes < 1:
        raise ValueError("num_classes and per_class must be >= 1")
    cells = torch.full((num_classes, per_class, *images.shape[1:]), -1.0)  # [K, P, C, H, W]
    for k in range(num_classes):
        chosen = images[labels.cpu() == k][:per_class]
        cells[k, : len(chosen)] = chosen.detach().float().cpu()
    return cells.flatten(0, 1)  # [K, P, C, H, W] -> [K * P, C, H, W]


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, path: str | os.PathLike, *, num_classes: int,
                    per_class: int = 10, padding: int = 2) -> Path:
    """Write the class grid of ``images`` in [-1, 1] to ``path`` (PNG) and return the path."""
    grid = class_grid(images, labels, num_classes=num_classes, per_class=per_class)
    pixels = grid.clamp(-1, 1).add(1).div(2)  # [-1, 1] -> [0, 1]
    path = Path(path)
    return atomic_write(path, lambda tmp: save_image(pixels, tmp, nrow=per_class, padding=padding, format="png"))
