"""Where in training a step falls: its phase, and the learning rate it uses."""

from __future__ import annotations

from dataclasses import dataclass

from maskdit.train.specs import PhaseSpec, TrainSpec


@dataclass(frozen=True)
class Phase:
    index: int
    name: str
    start: int  # first global step of the phase
    stop: int  # one past its last step
    spec: PhaseSpec | None  # None: the single implicit phase


def phases_of(train: TrainSpec) -> list[Phase]:
    if not train.phases:
        return [Phase(0, "train", 0, train.total_steps, None)]
    result, start = [], 0
    for index, spec in enumerate(train.phases):
        result.append(Phase(index, spec.name, start, start + spec.steps, spec))
        start += spec.steps
    return result


def phase_at(phases: list[Phase], step: int) -> Phase:
    for phase in phases:
        if phase.start <= step < phase.stop:
            return phase
    return phases[-1]


def learning_rate(train: TrainSpec, phase: Phase, step: int) -> float:
    """The phase's lr (or train.lr), with a linear warm-up over the first warmup_steps global steps."""
    base = phase.spec.lr if phase.spec is not None and phase.spec.lr is not None else train.lr
    if train.warmup_steps and step < train.warmup_steps:
        return base * (step + 1) / train.warmup_steps
    return base
