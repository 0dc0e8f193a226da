"""Datasets: the DATASETS registry and the embedded MNIST-5k digits."""

from __future__ import annotations

from torch.utils.data import Dataset

from maskdit.data import specs
from maskdit.data.cache import atomic_write, cache_dir
from maskdit.data.mnist5k import MNIST5k, load_mnist5k_raw, mnist5k_source, split_indices, to_model_range
from maskdit.registry import Registry

DATASETS: Registry[Dataset] = Registry("dataset")
DATASETS.register("mnist5k", MNIST5k.from_spec)


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
    "atomic_write",
    "specs",
]
