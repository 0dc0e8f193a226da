"""Images to files, the one writer: 8-bit pixels, grids as PNG, ADM's evaluation ``.npz``.

Model images are float [N, C, H, W] in [-1, 1]. Two roundings to 8 bits are kept so files stay
byte-identical to what each writer wrote before: ADM's ``round((x + 1) * 127.5)`` (the samples of
``python -m maskdit.sample`` and every ``.npz``) and torchvision's ``floor((x + 1) / 2 * 255 + 0.5)``
with grey repeated to RGB (the class grids and the decoded-latents grid, once ``save_image``'s).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskdit.io.files import atomic_write


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float [N, C, H, W] -> uint8 [N, C, H, W] (ADM's rounding: (x + 1) * 127.5, clipped);
    exact on images that came from 8-bit pixels as x = v / 127.5 - 1."""
    return ((images + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [N, C, H, W] -> uint8 [N, H, W, C] (ADM's rounding: (x + 1) * 127.5, clipped)."""
    return to_uint8(images).permute(0, 2, 3, 1).contiguous().numpy()  # [N, C, H, W] -> [N, H, W, C]


def to_uint8_rgb(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [N, C, H, W] -> uint8 [N, H, W, 3] as torchvision's ``save_image`` rounds
    (clip, to [0, 1], * 255 + 0.5, floored); one channel is repeated to three as it does."""
    pixels = images.detach().cpu().clamp(-1, 1).add(1).div(2)  # [-1, 1] -> [0, 1]
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)  # [N, 1, H, W] -> [N, 3, H, W]
    scaled = pixels.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().numpy()  # [N, C, H, W] -> [N, H, W, C]


def tile(pixels: np.ndarray, columns: int, *, padding: int = 2) -> np.ndarray:
    """uint8 [N, H, W, C] -> one [rows (H + p) + p, columns (W + p) + p, C] canvas, row-major, black gaps."""
    count, height, width, channels = pixels.shape
    if count < 1 or columns < 1 or padding < 0:
        raise ValueError(f"need >= 1 image and column and padding >= 0, got {count}, {columns}, {padding}")
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                      dtype=np.uint8)
    for i in range(count):
        r, c = divmod(i, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        canvas[top:top + height, left:left + width] = pixels[i]
    return canvas


def save_grid(path: str | os.PathLike, pixels: np.ndarray, *, columns: int | None = None, padding: int = 2,
              format: str | None = None) -> Path:
    """Write uint8 [N, H, W, C] pixels as one image grid (default near-square; one channel as grey)
    to ``path`` atomically; ``format`` defaults to the one ``path``'s extension names."""
    path = Path(path)
    if format is None:  # the temporary file's name says nothing: take the format from the final name
        format = Image.registered_extensions().get(path.suffix.lower())
        if format is None:
            raise ValueError(f"unknown file extension: {path.suffix.lower()}")
    canvas = tile(pixels, columns or math.ceil(math.sqrt(len(pixels))), padding=padding)
    image = Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas)
    return atomic_write(path, lambda tmp: image.save(tmp, format=format))


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
    return save_rgb_grid(path, grid, columns=per_class, padding=padding)


def save_rgb_grid(path: str | os.PathLike, images: torch.Tensor, *, columns: int | None = None,
                  padding: int = 2) -> Path:
    """Float images [N, C, H, W] in [-1, 1] as an RGB PNG grid (see :func:`to_uint8_rgb`); a lone
    image has no border, as torchvision's ``make_grid`` (which laid these grids out before) left it."""
    return save_grid(path, to_uint8_rgb(images), columns=columns, padding=padding if len(images) > 1 else 0,
                     format="png")


def write_adm_npz(path: str | os.PathLike, images: torch.Tensor | np.ndarray, labels: torch.Tensor | None = None) -> Path:
    """Images as ADM's evaluation batch: arr_0 uint8 NHWC (+ arr_1 labels). ``images`` is float
    [N, 3, H, W] in [-1, 1], or already uint8 [N, H, W, 3] (see :func:`to_uint8_nhwc`)."""
    pixels = images if isinstance(images, np.ndarray) else to_uint8_nhwc(images)
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ValueError(f"expected uint8 [N, H, W, C] pixels, got {pixels.dtype} {pixels.shape}")
    arrays = {"arr_0": pixels}
    if labels is not None:
        arrays["arr_1"] = labels.numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(path, write)
