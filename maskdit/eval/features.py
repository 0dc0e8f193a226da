"""Running a feature extractor over images in batches, and the reference a metric compares against."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from maskdit.eval.stats import FeatureStats, RunningStats, load_stats

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
"""images [N, C, H, W] in [-1, 1] -> features [N, D]; e.g. ``DigitsClassifier.features`` or ``FIDInception``."""


def extractor_device(extractor: FeatureExtractor) -> torch.device:
    """The device of the module behind ``extractor`` (a module or a bound method of one); CPU otherwise."""
    module = getattr(extractor, "__self__", extractor)
    if isinstance(module, torch.nn.Module):
        for parameter in module.parameters():
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(extractor: FeatureExtractor, images: torch.Tensor, *, batch_size: int = 250) -> torch.Tensor:
    """Features [N, D] (float32, on the CPU) of ``images`` [N, C, H, W], ``batch_size`` at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = extractor_device(extractor)
    chunks = [extractor(batch.to(device)).float().cpu() for batch in images.split(batch_size)]
    features = torch.cat(chunks)
    if features.ndim != 2 or features.shape[0] != images.shape[0]:
        raise ValueError(f"the extractor must return [N, D] features, got {tuple(features.shape)}")
    return features


@dataclass(frozen=True)
class Reference:
    """What generated samples are compared with: feature statistics, and the features themselves
    when available (precision / recall needs them; an npz of ``mu``/``sigma`` has only statistics)."""

    stats: FeatureStats
    features: torch.Tensor | None = None  # [N, D]
    name: str = "reference"

    @property
    def dim(self) -> int:
        return self.stats.dim

    @classmethod
    def from_features(cls, features: torch.Tensor, *, name: str = "reference") -> Reference:
        stats = RunningStats().update(features).finalize()
        return cls(stats, features.detach().float().cpu(), name)

    @classmethod
    def from_images(cls, extractor: FeatureExtractor, images: torch.Tensor, *, name: str = "reference",
                    batch_size: int = 250) -> Reference:
        return cls.from_features(extract_features(extractor, images, batch_size=batch_size), name=name)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Reference:
        """ADM / pytorch-fid statistics (``mu``, ``sigma``); FID only."""
        return cls(load_stats(path), None, os.fspath(path))
