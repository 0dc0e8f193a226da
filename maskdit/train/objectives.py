"""What each phase of training optimises: a training objective per phase, by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn

from maskdit.losses.objective import ObjectiveOutput
from maskdit.train.phases import Phase


class TrainingObjective(Protocol):
    """What a phase trains on: an :class:`~maskdit.losses.Objective`, or anything called the same
    way that returns its :class:`~maskdit.losses.ObjectiveOutput` (per-sample totals [B], the
    unweighted parts, the mask it drew).

    In a distributed run the loop also passes ``rows`` and ``total``: this rank holds rows ``rows``
    of a global micro-batch of ``total``, so the objective draws the global batch's randomness and
    keeps its rows (as :class:`~maskdit.losses.Objective` does); single-process runs never pass them.
    On a latent dataset that stores its crops, an objective whose ``reads_pixels`` is true (and whose
    ``reads_pixels_at(step)``, when it has one, is true at that step) also gets ``pixels=``: the
    clean images [B, 3, R, R] of its rows in [-1, 1]; any other objective never gets it."""

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, step: int,
                 generator: torch.Generator, rows: slice | None = None,
                 total: int | None = None) -> ObjectiveOutput: ...


def objectives_by_phase(objectives: Mapping[str, TrainingObjective] | TrainingObjective,
                        phases: list[Phase]) -> dict[str, TrainingObjective]:
    """Phase name -> objective: a mapping must name every phase and nothing else; one objective
    serves every phase."""
    names = [phase.name for phase in phases]
    if not isinstance(objectives, Mapping):
        if not callable(objectives):
            raise TypeError(f"objectives must be a mapping phase name -> objective, or one objective; "
                            f"got {type(objectives).__name__}")
        return dict.fromkeys(names, objectives)
    missing, unknown = [n for n in names if n not in objectives], sorted(set(objectives) - set(names))
    if missing or unknown:
        raise ValueError(f"objectives must name each phase of the run {names}: missing {missing}, unknown {unknown}")
    if any(not callable(objectives[name]) for name in names):
        raise TypeError("each phase's objective must be callable")
    return {name: objectives[name] for name in names}
