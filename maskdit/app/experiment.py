"""Experiment: the parts an :class:`~maskdit.app.experiment_spec.ExperimentSpec` describes, assembled in one place.

A training run, the dry-run summary, ``sample``, ``evaluate`` and the benchmarks all take
their parts from here, so a spec means the same run wherever it is used. A part is built when
first asked for: a dry run never loads the dataset, an evaluation never builds an objective.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.config.registry import plugin_modules
from maskdit.core import build_denoiser
from maskdit.data import build_dataset
from maskdit.losses import Objective, ObjectiveOutput, attach_heads, build_objective
from maskdit.masking import build_masking
from maskdit.samplers import Sampler, build_sampler
from maskdit.train.callbacks import Callbacks
from maskdit.train.distributed import DistContext
from maskdit.train.loop import Trainer
from maskdit.train.objectives import TrainingObjective
from maskdit.train.phases import phases_of
from maskdit.train.specs import PhaseSpec

if TYPE_CHECKING:  # scipy and matplotlib (the metrics), imported where the evaluator is built
    from maskdit.eval.evaluator import Evaluator

log = logging.getLogger(__name__)


def sampler_for(sampler: Any, num_classes: int) -> Sampler:
    """The ready sampler of a sampler section for a model with ``num_classes`` classes (0:
    unconditional); guidance's null label is the model's ``num_classes``. ``sample`` uses this
    directly for model files that carry no experiment spec."""
    return build_sampler(sampler, null_label=num_classes or None)


def evaluation_metrics(spec: Any) -> tuple[str, ...]:
    """The spec's metrics that apply to its model: class accuracy needs a class-conditional one."""
    metrics = tuple(spec.eval.metrics)
    if spec.model.num_classes == 0 and "class_accuracy" in metrics:
        log.info("unconditional model: class_accuracy is not computed")
        metrics = tuple(m for m in metrics if m != "class_accuracy")
    return metrics


class Experiment:
    """``Experiment(spec)``: the dataset, a fresh denoiser, the objective of each training phase,
    the sampler, the evaluator and the trainer that ``spec`` describes."""

    def __init__(self, spec: ExperimentSpec) -> None:
        if not isinstance(spec, ExperimentSpec):
            raise TypeError(f"Experiment takes an ExperimentSpec, got {type(spec).__name__}")
        self.spec = spec

    def __repr__(self) -> str:
        return f"Experiment({self.spec.name!r})"

    # ---- training -------------------------------------------------------------------------
    @cached_property
    def dataset(self) -> torch.utils.data.Dataset:
        return build_dataset(self.spec.data)

    def denoiser(self) -> torch.nn.Module:
        """A freshly initialised network (backbone and preconditioning), its weights drawn from a
        generator seeded with the run seed, so every rank of a distributed run builds the same one.
        Loss terms that train a head (repa's projector) get it attached, drawn from a second
        generator with the same seed: the network's weights do not depend on the loss terms."""
        denoiser = build_denoiser(self.spec.model, generator=torch.Generator().manual_seed(self.spec.seed))
        return attach_heads(denoiser, [self.objective(phase.spec) for phase in phases_of(self.spec.train)],
                            generator=torch.Generator().manual_seed(self.spec.seed))

    def masking(self, phase: PhaseSpec | None = None):
        """The masking strategy of a training phase (the experiment's where the phase sets none)."""
        return build_masking(self._masking_spec(phase))

    def objective(self, phase: PhaseSpec | None = None) -> Objective:
        """The objective of a training phase: its masking and loss terms, else the experiment's."""
        spec = self.spec
        terms = phase.loss_terms if phase is not None and phase.loss_terms is not None else spec.losses.terms
        return build_objective(spec.losses.model_copy(update={"terms": terms}), masking=self._masking_spec(phase),
                               patch_size=spec.model.patch_size, num_classes=spec.model.num_classes,
                               loss_tokens=spec.model.routing.loss_tokens, model_depth=spec.model.depth)

    def objectives(self) -> dict[str, TrainingObjective]:
        """Phase name -> what the Trainer optimises in that phase: the phase's :meth:`objective`,
        given the data's labels only when the model is class-conditional (an unconditional
        model's data may still carry labels)."""
        conditional = self.spec.model.num_classes > 0
        built: dict[str, TrainingObjective] = {}
        for phase in phases_of(self.spec.train):
            objective = self.objective(phase.spec)
            built[phase.name] = objective if conditional else WithoutLabels(objective)
        return built

    @cached_property
    def run_record(self) -> dict[str, Any]:
        """What every checkpoint records about the run: the spec (enough to rebuild it) and the
        modules of the users' plugins it names (what reading it back needs as ``--plugin``)."""
        return {"spec": self.spec.model_dump(mode="json"), "plugins": plugin_modules(self.spec)}

    def trainer(self, run_dir: str | Path, *, model: torch.nn.Module | None = None, dataset: Any = None,
                objectives: Mapping[str, TrainingObjective] | None = None, callbacks: Callbacks | None = None,
                dist: DistContext | None = None, progress: bool = False) -> Trainer:
        """The Trainer of this experiment writing to ``run_dir``. ``model`` (default: a fresh
        :meth:`denoiser`), ``dataset`` (e.g. one shared by several experiments on the same data)
        and ``objectives`` (default: :meth:`objectives`; e.g. timed wrappers of them) replace the
        parts built here; ``callbacks`` are the Trainer's hooks (step, every N steps, checkpoint)."""
        return Trainer(self.spec.train, model if model is not None else self.denoiser(),
                       dataset if dataset is not None else self.dataset,
                       objectives if objectives is not None else self.objectives(), Path(run_dir),
                       seed=self.spec.seed, run_record=self.run_record, callbacks=callbacks, progress=progress,
                       dist=dist)

    # ---- sampling and evaluation ----------------------------------------------------------
    @cached_property
    def sampler(self) -> Sampler:
        return sampler_for(self.spec.sampler, self.spec.model.num_classes)

    @cached_property
    def metrics(self) -> tuple[str, ...]:
        """The eval section's metrics that apply to this model (class accuracy needs classes)."""
        return evaluation_metrics(self.spec)

    def evaluator(self, *, device: str | torch.device = "cpu") -> Evaluator:
        """The networks and reference the metrics need, loaded on ``device``."""
        # deferred: the evaluator imports scipy (FID), which training never needs
        from maskdit.eval.evaluator import build_evaluator

        return build_evaluator(self.spec.eval.model_copy(update={"metrics": self.metrics}), self.spec.data,
                               device=device)

    def _masking_spec(self, phase: PhaseSpec | None):
        return phase.masking if phase is not None and phase.masking is not None else self.spec.masking


@dataclass(frozen=True)
class WithoutLabels:
    """An unconditional model's training objective: the data's labels are not passed on."""

    objective: Objective

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                 **options: Any) -> ObjectiveOutput:
        return self.objective(model, images, None, **options)
