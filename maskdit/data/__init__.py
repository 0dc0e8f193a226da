"""Datasets: the registered dataset plugins, the embedded MNIST-5k digits, image folders and VAE latents.

torchvision's ImageFolder is imported when an image folder is first listed, so importing the
spec stays light. Datasets that need randomness per draw (random flips, the latent z draw)
offer ``dataset.draw(ids, generator=g) -> (x, labels)``; see :mod:`maskdit.data.latent_dataset`.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from maskdit.config.registry import Registry, registry
from maskdit.data import specs
from maskdit.data.cache import cache_dir
from maskdit.data.mnist5k import MNIST5k, load_mnist5k_raw, mnist5k_source, split_indices, to_model_range

#: the registered datasets: spec.build() -> Dataset
DATASETS: Registry = registry("dataset")


def build_dataset(spec: specs.DataSpec) -> Dataset:
    """The dataset a data spec names, with the transforms it asks for."""
    return DATASETS.build(spec)


__all__ = [
    "DATASETS",
    "build_dataset",
    "MNIST5k",
    "load_mnist5k_raw",
    "mnist5k_source",
    "split_indices",
    "to_model_range",
    "cache_dir",
    "specs",
]
