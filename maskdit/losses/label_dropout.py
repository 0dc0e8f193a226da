"""Label dropout for classifier-free guidance (Ho & Salimans 2022)."""

from __future__ import annotations

import torch


def drop_labels(
    labels: torch.Tensor, probability: float, num_classes: int, *, generator: torch.Generator | None = None,
    rows: slice | None = None, total: int | None = None,
) -> torch.Tensor:
    """Replace each label by the null class ``num_classes`` with the given probability.

    One uniform draw per sample from ``generator``; probability 0 draws nothing and returns
    ``labels`` unchanged (the same tensor). ``rows`` of ``total``: ``labels`` are those rows of a
    larger batch (one rank's share); the draw is the whole batch's and these rows of it are used.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"label dropout probability must be in [0, 1], got {probability!r}")
    if probability == 0.0:
        return labels
    u = torch.rand((len(labels) if total is None else total,), generator=generator, device=labels.device)  # [N]
    if rows is not None:
        u = u[rows]  # [N] -> [B]
    return torch.where(u < probability, torch.full_like(labels, num_classes), labels)
