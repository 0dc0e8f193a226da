"""Images in class folders (torchvision's ImageFolder layout), ADM centre crop, [-1, 1].

``dataset[i]`` is deterministic (no flip). Random flips need randomness, which is passed in:
``dataset.draw(ids, generator=g)`` (or ``seeds=`` one per row) returns a batch whose images are mirrored with probability
1/2 each when the dataset was built with ``flip=True``.

An unreadable image raises :class:`CorruptImageError` naming the file when it is read. With
``skip_corrupt=True`` every image is decoded once when the dataset is built, and the unreadable
ones are left out and listed in ``dataset.skipped``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from maskdit.data.crop import adm_center_crop, to_tensor
from maskdit.data.draws import Draws
from maskdit.data.errors import DataError

log = logging.getLogger(__name__)


class CorruptImageError(OSError):
    """An image file that cannot be opened or decoded; the message names the file."""


class MissingImagesError(FileNotFoundError, DataError):
    """The image folder, or every image of a class, is missing."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode ``path`` as 8-bit RGB; any failure becomes a CorruptImageError naming it.

    16-bit grayscale (PIL modes ``I;16*``, and ``I`` as 16-bit PNGs open) is scaled by 255 / 65535:
    PIL's own ``convert("RGB")`` clips those values at 255, which turns nearly every pixel white."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16") or image.mode == "I":
                wide = np.asarray(image, dtype=np.float64)  # [H, W] in 0..65535
                image = Image.fromarray(np.clip(np.rint(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8))
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"cannot read image {path}: {err}") from err


def list_image_folder(root: str | os.PathLike) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, class index) of every image under ``root/<class>/``, sorted, and the sorted class names."""
    from torchvision.datasets import ImageFolder  # deferred: torchvision is heavy; only listing needs it

    root = Path(root)
    if not root.is_dir():
        raise MissingImagesError(f"data.path: image folder {root} does not exist or is not a directory")
    try:
        folder = ImageFolder(str(root), loader=lambda path: path)  # lists files only; nothing is decoded here
    except FileNotFoundError as err:
        raise MissingImagesError(f"data.path: {root}: {err} (expected root/<class>/<image> files)") from None
    return list(folder.samples), list(folder.classes)


def prepare_image(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """Read ``path``, ADM-centre-crop it to ``resolution`` and scale: float32 [3, R, R] in [-1, 1]."""
    return to_tensor(adm_center_crop(load_image(path), resolution))


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` files as (image [3, R, R] in [-1, 1], label) pairs.

    Attributes: ``samples`` (path, label) pairs in order, ``classes`` the class folder names,
    ``labels`` int64 [N], ``skipped`` (path, reason) of images left out by ``skip_corrupt``.
    """

    channels = 3

    def __init__(self, root: str | os.PathLike, *, resolution: int = 256, num_classes: int | None = None,
                 flip: bool = False, skip_corrupt: bool = False) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        samples, classes = list_image_folder(root)
        if num_classes is not None and len(classes) != num_classes:
            raise DataError(f"data.num_classes: {root} has {len(classes)} class folders but num_classes is {num_classes}")
        self.root, self.resolution, self.flip = Path(root), resolution, flip
        self.classes = classes
        self.skipped: list[tuple[str, str]] = []
        if skip_corrupt:
            kept = []
            for path, label in samples:
                try:
                    load_image(path)
                except CorruptImageError as err:
                    self.skipped.append((path, str(err.__cause__ or err)))
                    continue
                kept.append((path, label))
            if self.skipped:
                log.warning("%s: skipped %d unreadable image(s), e.g. %s", root, len(self.skipped), self.skipped[0][0])
            samples = kept
        if not samples:
            raise DataError(f"data.path: {root} holds no readable images")
        self.samples = samples
        self.labels = torch.tensor([label for _, label in samples], dtype=torch.int64)

    @classmethod
    def from_spec(cls, spec) -> ImageFolderDataset:
        return cls(spec.path, resolution=spec.resolution, num_classes=spec.num_classes, flip=spec.flip,
                   skip_corrupt=spec.skip_corrupt)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return prepare_image(path, self.resolution), label

    def draw(self, ids, *, generator: torch.Generator | None = None, seeds=None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [B, 3, R, R] and labels [B] of ``ids``; with ``flip`` each image is mirrored with
        probability 1/2, decided by one uniform per image from ``generator`` (whole batch) or from
        ``seeds`` (int64 [B], one generator per row; see :mod:`maskdit.data.draws`)."""
        ids = torch.as_tensor(ids, dtype=torch.int64).flatten()
        draws = Draws(len(ids), generator=generator, seeds=seeds)
        images = torch.stack([self[int(i)][0] for i in ids])  # B x [3, R, R] -> [B, 3, R, R]
        if self.flip:
            mirror = draws.uniform() < 0.5  # [B]
            images[mirror] = images[mirror].flip(-1)
        return images, self.labels[ids]

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({str(self.root)!r}, n={len(self)}, classes={self.num_classes}, "
                f"{self.resolution}x{self.resolution}, flip={self.flip}, skipped={self.num_skipped})")
