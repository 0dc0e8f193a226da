"""The study's one use of the Trainer: train a spec in a run folder, resuming, with the three hooks it needs.

Every Trainer call of the study is in :func:`fit`: ``Experiment.trainer`` with per-phase objectives
(wrapped to stamp the start of each step) and an every-N-steps evaluation callback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from maskdit import Experiment, ExperimentSpec
from maskdit.train import Callbacks, Every

OnStart = Callable[[int | None, torch.nn.Module | None], None]
OnEvaluation = Callable[[int, torch.nn.Module], None]


def fit(spec: ExperimentSpec, run_dir: Path, *, dataset: Any, resume: bool | Path = False,
        on_start: OnStart | None = None, on_step: Callable[[], None] | None = None,
        on_evaluation: OnEvaluation | None = None,
        on_objectives: Callable[[dict[str, Any]], None] | None = None) -> torch.nn.Module:
    """Train ``spec`` in ``run_dir`` to its last step; returns the EMA model.

    ``resume``: True (the newest valid checkpoint of ``run_dir``), a checkpoint folder (e.g. another
    run's, to branch from), or False. ``on_start(step, ema_model)`` is told where training starts
    (``None, None``: from scratch); ``on_step()`` is called at the start of every training step (the
    loss is computed once per step); ``on_evaluation(step, ema_model)`` every ``train.sample_every`` steps;
    ``on_objectives(objectives)`` sees the phases' objectives before training (to warm a feature cache).
    """
    experiment = Experiment(spec)
    built = experiment.objectives()
    if on_objectives is not None:
        on_objectives(built)

    def stamped(objective: Any) -> Callable[..., Any]:  # the objective is called once, at the start of each step
        def call(*args: Any, **kwargs: Any) -> Any:
            on_step()
            return objective(*args, **kwargs)

        return call

    objectives = {name: stamped(o) for name, o in built.items()} if on_step else built
    every = [Every(spec.train.sample_every, on_evaluation)] if on_evaluation and spec.train.sample_every else []
    trainer = experiment.trainer(run_dir, dataset=dataset, objectives=objectives,
                                 callbacks=Callbacks(on_evaluation=every))
    resumed = bool(trainer.resume(resume if isinstance(resume, Path) else None)) if resume else False
    if on_start is not None and resumed:
        on_start(trainer.state.step, trainer.ema_model())
    elif on_start is not None:
        on_start(None, None)
    if trainer.state.step < spec.train.total_steps:
        trainer.fit()
    return trainer.ema_model()
