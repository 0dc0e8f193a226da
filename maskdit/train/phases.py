"""Where in training a step falls: its phase, and the learning rate it uses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from maskdit.train.specs import LRDecaySpec, PhaseSpec, TrainSpec


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
    """The phase's lr (or train.lr), times a linear warm-up over the first warmup_steps global
    steps and the phase's decay (or train.lr_decay) over its last steps."""
    base = phase.spec.lr if phase.spec is not None and phase.spec.lr is not None else train.lr
    decay = phase.spec.lr_decay if phase.spec is not None and phase.spec.lr_decay is not None else train.lr_decay
    if decay is not None:
        base *= decay_factor(decay, step - phase.start, phase.stop - phase.start)
    if train.warmup_steps and step < train.warmup_steps:
        return base * (step + 1) / train.warmup_steps
    return base


def decay_factor(decay: LRDecaySpec, index: int, length: int) -> float:
    """The lr multiplier at the ``index``-th of a phase's ``length`` steps: 1 until the decay's
    window (its last ceil(fraction x length) steps), then falling to ``decay.final`` at the last step."""
    window = max(1, math.ceil(decay.fraction * length - 1e-9))  # 0.3 x 10 is 3.0000000000000004
    done = index - (length - window) + 1  # 1..window inside the window
    if done <= 0:
        return 1.0
    progress = min(done / window, 1.0)
    remaining = 1.0 - progress if decay.shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return decay.final + (1.0 - decay.final) * remaining
