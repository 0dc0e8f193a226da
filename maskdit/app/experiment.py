"""Experiment: the parts an :class:`~maskdit.app.experiment_spec.ExperimentSpec` describes, assembled in one place.

The training job, the dry-run summary, ``sample``, ``evaluate`` and the benchmarks all take
their parts from here, so a spec means the same run wherever it is used. A part is built when
first asked for: a dry run never loads the dataset, an evaluation never builds an objective.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.config.registry import plugin_modules
from maskdit.core import build_denoiser
from maskdit.data import build_dataset
from maskdit.losses import Objective, build_objective
from maskdit.masking import build_masking
from maskdit.samplers import Sampler, build_sampler
from maskdit.train.specs import PhaseSpec

if TYPE_CHECKING:  # heavy imports, made where the part is built
    from maskdit.eval.evaluator import Evaluator
    from maskdit.train.distributed import DistContext
    from maskdit.train.loop import Trainer
    from maskdit.train.phases import Phase


def sampler_for(sampler: Any, num_classes: int) -> Sampler:
    """The ready sampler of a sampler section for a model with ``num_classes`` classes (0:
    unconditional); guidance's null label is the model's ``num_classes``. ``sample`` uses this
    directly for model files that carry no experiment spec."""
    return build_sampler(sampler, null_label=num_classes or None)


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
        generator seeded with the run seed, so every rank of a distributed run builds the same one."""
        return build_denoiser(self.spec.model, generator=torch.Generator().manual_seed(self.spec.seed))

    def masking(self, phase: PhaseSpec | None = None):
        """The masking strategy of a training phase (the experiment's where the phase sets none)."""
        return build_masking(self._masking_spec(phase))

    def objective(self, phase: PhaseSpec | None = None) -> Objective:
        """The objective of a training phase: its masking and loss terms, else the experiment's."""
        spec = self.spec
        terms = phase.loss_terms if phase is not None and phase.loss_terms is not None else spec.losses.terms
        return build_objective(spec.losses.model_copy(update={"terms": terms}), masking=self._masking_spec(phase),
                               patch_size=spec.model.patch_size, num_classes=spec.model.num_classes,
                               loss_tokens=spec.model.routing.loss_tokens)

    def loss_for_phase(self, phase: Phase) -> Callable[..., Any]:
        """The Trainer's loss for a phase: the phase's objective, given the labels only when the
        model is class-conditional (an unconditional model's data may still carry labels)."""
        objective = self.objective(phase.spec)
        conditional = self.spec.model.num_classes > 0

        def loss(model, images, labels, *, step, generator, rows=None, total=None):
            return objective(model, images, labels if conditional else None, generator=generator, step=step,
                             rows=rows, total=total)

        return loss

    @cached_property
    def run_record(self) -> dict[str, Any]:
        """What every checkpoint records about the run: the spec (enough to rebuild it) and the
        modules of the users' plugins it names (what reading it back needs as ``--plugin``)."""
        return {"spec": self.spec.model_dump(mode="json"), "plugins": plugin_modules(self.spec)}

    def trainer(self, run_dir: str | Path, *, model: torch.nn.Module | None = None, dataset: Any = None,
                loss_for_phase: Callable[[Phase], Any] | None = None, dist: DistContext | None = None,
                progress: bool = False, on_sample: Callable[[int, torch.nn.Module], None] | None = None) -> Trainer:
        """The Trainer of this experiment writing to ``run_dir``. ``model`` (default: a fresh
        :meth:`denoiser`), ``dataset`` (e.g. one shared by several experiments on the same data)
        and ``loss_for_phase`` (e.g. a timed wrapper of :meth:`loss_for_phase`) replace the parts
        built here."""
        from maskdit.train.loop import Trainer

        return Trainer(self.spec.train, model if model is not None else self.denoiser(),
                       dataset if dataset is not None else self.dataset,
                       loss_for_phase if loss_for_phase is not None else self.loss_for_phase, Path(run_dir),
                       seed=self.spec.seed, run_record=self.run_record, on_sample=on_sample, progress=progress,
                       dist=dist)

    # ---- sampling and evaluation ----------------------------------------------------------
    @cached_property
    def sampler(self) -> Sampler:
        return sampler_for(self.spec.sampler, self.spec.model.num_classes)

    @cached_property
    def metrics(self) -> tuple[str, ...]:
        """The eval section's metrics that apply to this model (class accuracy needs classes)."""
        from maskdit.app.evaluation import evaluation_metrics

        return evaluation_metrics(self.spec)

    def evaluator(self, *, device: str | torch.device = "cpu") -> Evaluator:
        """The networks and reference the metrics need, loaded on ``device``."""
        from maskdit.eval.evaluator import build_evaluator

        return build_evaluator(self.spec.eval.model_copy(update={"metrics": self.metrics}), self.spec.data,
                               device=device)

    def _masking_spec(self, phase: PhaseSpec | None):
        return phase.masking if phase is not None and phase.masking is not None else self.spec.masking
