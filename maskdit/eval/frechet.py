"""The Fréchet distance between two Gaussians fitted to features (FID; Heusel et al. 2017, eq. 6).

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

The matrix square root comes from ``scipy.linalg.sqrtm``. Round-off can give it a small
imaginary part (dropped; a large one raises) and a near-singular product can make it fail or
be flagged singular (then ``eps`` is added to both diagonals, with a warning), the usual
treatment of FID code.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from maskdit.eval.stats import FeatureStats


class SingularCovarianceWarning(UserWarning):
    """The covariance product was (near-)singular, so an offset was added to the diagonals."""


def _checked_sqrtm(product: np.ndarray) -> tuple[np.ndarray, bool]:
    """sqrtm(product) and whether it is trustworthy: finite, not flagged singular by scipy, small residual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = scipy.linalg.sqrtm(product)
    singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(root).all():
        return root, False
    residual = np.linalg.norm(root @ root - product) / max(float(np.linalg.norm(product)), 1e-300)
    return root, bool(residual < 1e-3)


def frechet_distance(
    stats1: FeatureStats,
    stats2: FeatureStats,
    *,
    eps: float = 1e-6,
    imag_atol: float = 1e-3,
) -> float:
    """Squared Fréchet distance between N(mu1, S1) and N(mu2, S2), computed in float64.

    ``eps`` is the diagonal offset used when (S1 S2)^(1/2) cannot be computed reliably;
    ``imag_atol`` the largest imaginary part on the root's diagonal that counts as round-off.
    """
    if stats1.dim != stats2.dim:
        raise ValueError(f"feature dimensions differ: {stats1.dim} vs {stats2.dim} (different feature extractors?)")
    mu1, mu2 = stats1.mu, stats2.mu
    s1, s2 = stats1.sigma, stats2.sigma
    root, ok = _checked_sqrtm(s1 @ s2)
    if not ok:
        warnings.warn(
            f"(S1 S2)^(1/2) is not reliable (near-singular covariances); adding {eps:g} to their diagonals. "
            f"Use more samples than feature dimensions to avoid this",
            SingularCovarianceWarning,
            stacklevel=2,
        )
        offset = np.eye(stats1.dim) * eps
        root, ok = _checked_sqrtm((s1 + offset) @ (s2 + offset))
        if not ok:
            raise ValueError("matrix square root failed even with a diagonal offset; the covariances are degenerate")
    if np.iscomplexobj(root):
        largest = float(np.max(np.abs(np.diagonal(root).imag)))
        if largest > imag_atol:
            raise ValueError(f"matrix square root has an imaginary component of {largest:.3g} (> {imag_atol:g})")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root))
