"""What the Trainer tells the outside world: a named record of each optimizer step, and the
hooks it calls (after each step, every N steps with the EMA model, after each checkpoint)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn


@dataclass(frozen=True)
class StepResult:
    """One optimizer step, as the global means over its micro-batches (and ranks).

    ``step`` counts the optimizer steps completed with this one (the ``step`` of its
    metrics.jsonl line); ``loss`` is NaN and ``parts`` empty when the step was ``skipped``
    (non-finite loss or gradient); ``grad_norm`` is the norm before clipping (NaN when the loss
    was not finite); ``mask_ratio`` is the share of tokens the last micro-batch's mask dropped."""

    step: int
    phase: str
    lr: float
    loss: float
    parts: dict[str, float]
    grad_norm: float
    mask_ratio: float
    skipped: bool
    total_skipped: int  # skipped steps so far in the run, this one included


StepHook = Callable[[StepResult], None]
#: ``hook(step, path)``: a checkpoint of ``step`` was written to ``path`` (rank 0)
CheckpointHook = Callable[[int, Path], None]
#: ``hook(step, ema_model)``: an unwrapped copy of the model holding the EMA weights, in eval mode
EMAHook = Callable[[int, nn.Module], None]


@dataclass(frozen=True)
class Every:
    """Run ``hook(step, ema_model)`` after every ``steps``-th optimizer step, on rank 0 (a sample
    grid, the held-out loss, the metrics)."""

    steps: int
    hook: EMAHook

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"Every needs a whole number of steps >= 1, got {self.steps!r}")
        if not callable(self.hook):
            raise TypeError(f"Every needs a callable hook(step, ema_model), got {type(self.hook).__name__}")

    def due(self, step: int) -> bool:
        return step % self.steps == 0


@dataclass(frozen=True)
class Callbacks:
    """The Trainer's hooks, each called in the order given.

    ``on_step``: after each optimizer step (skipped ones too), on every rank, with its
    :class:`StepResult` (the same global means on every rank). ``on_evaluation``: the
    :class:`Every` hooks, on rank 0, with one EMA copy shared by the hooks due at a step.
    ``on_checkpoint``: after each checkpoint is written, on rank 0."""

    on_step: Sequence[StepHook] = ()
    on_evaluation: Sequence[Every] = ()
    on_checkpoint: Sequence[CheckpointHook] = ()

    def __post_init__(self) -> None:
        for name in ("on_step", "on_evaluation", "on_checkpoint"):
            hooks = tuple(getattr(self, name))  # a tuple: the hooks cannot change under the loop
            object.__setattr__(self, name, hooks)
        if any(not isinstance(item, Every) for item in self.on_evaluation):
            raise TypeError("on_evaluation takes Every(steps, hook) entries")
        if any(not callable(hook) for hook in (*self.on_step, *self.on_checkpoint)):
            raise TypeError("on_step and on_checkpoint take callables")

    def evaluations_due(self, step: int) -> tuple[Every, ...]:
        return tuple(entry for entry in self.on_evaluation if entry.due(step))
