"""Feature statistics (mean, covariance) accumulated in float64, and the ADM / pytorch-fid npz format.

:class:`RunningStats` merges batches with Chan et al.'s parallel update of the mean and the
centred scatter matrix, so 50k features never sit in memory at once and large feature means
do not cancel catastrophically the way a raw sum of outer products does. The covariance is
the unbiased estimate (``ddof = 1``), matching ``numpy.cov`` as pytorch-fid and ADM use it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskdit.io.files import atomic_write
from maskdit.io.npz import load_npz, npz_keys

MAX_STATS_BYTES = 1 << 30  # mu and sigma of features up to ~11k dimensions (Inception's are 2048)


class FewSamplesWarning(UserWarning):
    """The covariance was estimated from no more samples than feature dimensions (it is singular)."""


@dataclass(frozen=True)
class FeatureStats:
    """Mean ``mu`` [D] and covariance ``sigma`` [D, D] of a feature set (float64), and its size if known."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int | None = None

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1:
            raise ValueError(f"mu must be a vector [D], got shape {mu.shape}")
        if sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"sigma must be [D, D] = {(mu.shape[0], mu.shape[0])} to match mu, got shape {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError("feature statistics contain NaN or infinite values")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray) -> FeatureStats:
        """Statistics of a whole feature matrix [N, D] at once."""
        running = RunningStats()
        running.update(features)
        return running.finalize()


class RunningStats:
    """Streaming float64 mean and covariance of feature batches [B, D]."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None  # sum of (x - mean)(x - mean)^T

    @property
    def dim(self) -> int | None:
        return None if self._mean is None else int(self._mean.shape[0])

    def update(self, features: torch.Tensor | np.ndarray) -> RunningStats:
        """Add a batch [B, D]; raises on NaN/inf or a dimension that differs from earlier batches."""
        if isinstance(features, torch.Tensor):
            features = features.detach().to("cpu", torch.float64).numpy()
        batch = np.asarray(features, dtype=np.float64)
        if batch.ndim != 2:
            raise ValueError(f"features must be a matrix [N, D], got shape {batch.shape}")
        if self._mean is not None and batch.shape[1] != self._mean.shape[0]:
            raise ValueError(f"feature dimension changed from {self._mean.shape[0]} to {batch.shape[1]}")
        if not np.isfinite(batch).all():
            bad = int((~np.isfinite(batch)).any(axis=1).sum())
            raise ValueError(f"{bad} of {batch.shape[0]} feature rows contain NaN or infinite values")
        n_b = batch.shape[0]
        if n_b == 0:
            return self
        mean_b = batch.mean(axis=0)
        centred = batch - mean_b
        scatter_b = centred.T @ centred  # [D, B] @ [B, D] -> [D, D]
        if self._mean is None:
            self.count, self._mean, self._scatter = n_b, mean_b, scatter_b
            return self
        n_a, n = self.count, self.count + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._scatter = self._scatter + scatter_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.count = n
        return self

    def finalize(self) -> FeatureStats:
        """The mean and unbiased covariance so far; warns when N <= D (a singular covariance)."""
        if self._mean is None or self.count < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.count}")
        dim = self._mean.shape[0]
        if self.count <= dim:
            warnings.warn(
                f"covariance of {dim}-d features estimated from only {self.count} samples is singular; "
                f"use more samples than feature dimensions for a meaningful Frechet distance",
                FewSamplesWarning,
                stacklevel=2,
            )
        return FeatureStats(self._mean.copy(), self._scatter / (self.count - 1), self.count)


def save_stats(path: str | os.PathLike, stats: FeatureStats) -> Path:
    """Write ``mu`` and ``sigma`` as an npz that pytorch-fid and ADM's evaluator read as they are."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"statistics files are .npz, got {path.name!r}")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object keeps numpy from appending another .npz
            np.savez(handle, mu=stats.mu, sigma=stats.sigma)

    return atomic_write(path, write)


def load_stats(path: str | os.PathLike, *, mu_key: str = "mu", sigma_key: str = "sigma") -> FeatureStats:
    """Read ``mu``/``sigma`` from an npz (pytorch-fid stats, ADM reference batches such as
    VIRTUAL_imagenet256_labeled.npz). Other arrays in the file (e.g. ADM's ``arr_0`` images) are not loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no statistics file at {path}")
    keys = npz_keys(path)
    missing = [key for key in (mu_key, sigma_key) if key not in keys]
    if missing:
        raise ValueError(
            f"{path} lacks {' and '.join(repr(k) for k in missing)}; it holds {sorted(keys)}. "
            f"Expected an ADM / pytorch-fid npz with 'mu' [D] and 'sigma' [D, D]"
        )
    arrays = load_npz(path, keys=[mu_key, sigma_key], max_bytes=MAX_STATS_BYTES)  # headers checked first
    mu, sigma = arrays[mu_key], arrays[sigma_key]
    try:
        return FeatureStats(mu, sigma)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
