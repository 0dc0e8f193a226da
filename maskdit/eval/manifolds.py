"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models", eqs. 1-3).

Each feature set approximates its manifold by the union of balls around its points, each ball's
radius the distance to the point's k-th nearest neighbour in the same set (k = 3 in the paper).
Precision = fraction of generated samples inside the real manifold; recall = fraction of real
samples inside the generated manifold. Distances are computed in float64, in row chunks, so
memory stays O(chunk x N).
"""

from __future__ import annotations

import torch


def _as_features(name: str, x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{name} features must be a matrix [N, D], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} features contain NaN or infinite values")
    return x.detach().to("cpu", torch.float64)


def knn_radii(features: torch.Tensor, k: int = 3, *, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of ``features`` [N, D] to its k-th nearest other row -> [N]."""
    x = _as_features("manifold", features)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k = {k} needs at least k + 1 = {k + 1} feature vectors, got {x.shape[0]}")
    radii = []
    for rows in x.split(chunk):
        distances = torch.cdist(rows, x)  # [chunk, N]; includes each point's zero distance to itself
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def manifold_coverage(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, *, chunk: int = 1024) -> float:
    """Fraction of ``queries`` [M, D] within radii[i] of some manifold point i ([N, D])."""
    x = _as_features("manifold", manifold)
    q = _as_features("query", queries)
    if x.shape[1] != q.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {q.shape[1]}")
    r = radii.to(torch.float64)
    inside = [(torch.cdist(rows, x) <= r).any(dim=1) for rows in q.split(chunk)]  # each [chunk]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """(precision, recall) of generated ``fake`` [M, D] against ``real`` [N, D] features."""
    precision = manifold_coverage(real, knn_radii(real, k, chunk=chunk), fake, chunk=chunk)
    recall = manifold_coverage(fake, knn_radii(fake, k, chunk=chunk), real, chunk=chunk)
    return precision, recall
