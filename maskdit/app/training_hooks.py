"""What a training run does besides training, as Trainer callbacks: a sample grid every
``train.sample_every`` steps, and an evaluation every ``eval.every`` steps.

Outputs in the run folder:

- ``samples/step-XXXXXXXX.png``: the EMA model's class-per-row grid at a ``train.sample_every`` step;
- ``samples/eval-XXXXXXXX.png``: the same grid at an ``eval.every`` step;
- ``metrics.jsonl``: at each ``eval.every`` step a line ``{"step", "kind": "heldout", "heldout_loss",
  "per_sigma", "sigmas"}`` (:class:`~maskdit.eval.heldout.HeldOutLoss` of the EMA model) and,
  with ``eval.metrics_during_training``, an ``"eval"`` line of the spec's metrics (except at the
  last step when the final evaluation scores it);
- ``eval_metrics.png``: the held-out loss and the metrics against step.

Each path is checked to be the run's own (no symlink, no hard link) before it is written; the
metrics lines are appended through :func:`~maskdit.io.files.open_inside`, which checks the same.
"""

from __future__ import annotations

from pathlib import Path

import torch

from maskdit.app.evaluation import METRICS_FILE, evaluate_denoiser, plot_evaluations
from maskdit.app.experiment import Experiment
from maskdit.config.errors import InputError
from maskdit.eval.evaluator import Evaluator
from maskdit.eval.generation import generate_batches
from maskdit.eval.heldout import HeldOutLoss
from maskdit.io.files import check_inside, make_folder
from maskdit.io.images import save_class_grid
from maskdit.io.jsonl import append_metrics, read_jsonl
from maskdit.train.callbacks import Callbacks, Every
from maskdit.train.loop import Trainer

SAMPLES_DIR = "samples"
SAMPLE_GRID, EVAL_GRID = f"{SAMPLES_DIR}/step-{{step:08d}}.png", f"{SAMPLES_DIR}/eval-{{step:08d}}.png"


def write_class_grid(model: torch.nn.Module, experiment: Experiment, path: Path, *,
                     device: str | torch.device, run_dir: Path | None = None) -> Path:
    """``eval.grid_per_class`` samples per class, one row per class, from ``model`` with the
    experiment's sampler and seed (so every grid of a run shows the same noise). With
    ``run_dir``, ``path`` and its folder are checked to be the run's own first."""
    if run_dir is not None:
        check_inside(run_dir, path)
    spec = experiment.spec
    classes, per_class = max(spec.model.num_classes, 1), max(spec.eval.grid_per_class, 1)
    shape = (spec.model.in_channels, spec.model.input_size, spec.model.input_size)
    batches = list(generate_batches(model, experiment.sampler, num_samples=classes * per_class,
                                    batch_size=spec.eval.batch_size, shape=shape, num_classes=spec.model.num_classes,
                                    seed=spec.seed, device=device))
    images = torch.cat([b[0] for b in batches]).clamp(-1, 1)
    labels = torch.cat([b[1] for b in batches]) if batches[0][1] is not None else torch.zeros(len(images), dtype=torch.long)
    if run_dir is not None:
        make_folder(run_dir, path.parent)
    else:
        path.parent.mkdir(exist_ok=True)
    return save_class_grid(images, labels, path, num_classes=classes, per_class=per_class)


class SampleGrids:
    """``hook(step, ema_model)``: writes samples/step-XXXXXXXX.png."""

    def __init__(self, experiment: Experiment, run_dir: Path, *, device: str | torch.device) -> None:
        self.experiment, self.run_dir, self.device = experiment, run_dir, device

    def __call__(self, step: int, model: torch.nn.Module) -> None:
        write_class_grid(model, self.experiment, self.run_dir / SAMPLE_GRID.format(step=step), device=self.device,
                         run_dir=self.run_dir)


class Evaluation:
    """``hook(step, ema_model)``: the evaluation of an ``eval.every`` step (see the module's outputs).

    ``final_step``: the step the run's final evaluation scores (None: there is none), where the
    metrics are not computed twice. InputError (naming ``eval.every``) when the held-out loss
    cannot be computed for the spec."""

    def __init__(self, experiment: Experiment, run_dir: Path, *, device: str | torch.device,
                 final_step: int | None) -> None:
        spec = experiment.spec
        try:
            self.heldout = HeldOutLoss(spec, batch_size=spec.eval.batch_size)
        except ValueError as err:
            raise InputError(f"eval.every: {err}") from None
        self.experiment, self.run_dir, self.device, self.final_step = experiment, run_dir, device, final_step
        self.every = spec.eval.every
        self.evaluator: Evaluator | None = None  # loaded at the first evaluation that computes metrics

    def __call__(self, step: int, model: torch.nn.Module) -> None:
        spec = self.experiment.spec
        loss, per_sigma = self.heldout(model)
        append_metrics(self.run_dir / METRICS_FILE, {"step": step, "kind": "heldout", "heldout_loss": loss,
                                                     "per_sigma": per_sigma, "sigmas": self.heldout.sigmas})
        if spec.eval.grid_per_class:
            write_class_grid(model, self.experiment, self.run_dir / EVAL_GRID.format(step=step), device=self.device,
                             run_dir=self.run_dir)
        if spec.eval.metrics_during_training and step != self.final_step:
            if self.evaluator is None:
                self.evaluator = self.experiment.evaluator(device=self.device)
            record = evaluate_denoiser(model, self.experiment, step=step, evaluator=self.evaluator, device=self.device)
            append_metrics(self.run_dir / METRICS_FILE, record)
        plot_evaluations(self.run_dir)

    def logged(self, step: int) -> bool:
        """Whether metrics.jsonl already holds the held-out line of ``step``."""
        return any(r.get("kind") == "heldout" and r.get("step") == step for r in read_jsonl(self.run_dir / METRICS_FILE))

    def after_resume(self, trainer: Trainer) -> None:
        """Evaluate the step a run resumed at when it was due and its line is missing (the run
        stopped between the checkpoint and the evaluation), so each due step is logged once.
        Every rank calls it (FSDP2 gathers the EMA shards); rank 0 evaluates."""
        step = trainer.state.step
        if step == 0 or step % self.every or self.logged(step):
            return
        averaged = trainer.main_ema_model()
        if averaged is not None:
            self(step, averaged)


def training_callbacks(experiment: Experiment, run_dir: Path, *, device: str | torch.device,
                       final_step: int | None) -> tuple[Callbacks, Evaluation | None]:
    """The run's Trainer callbacks, and its :class:`Evaluation` (None without ``eval.every``)."""
    spec = experiment.spec
    hooks = []
    if spec.train.sample_every:
        hooks.append(Every(spec.train.sample_every, SampleGrids(experiment, run_dir, device=device)))
    evaluation = None
    if spec.eval.every:
        evaluation = Evaluation(experiment, run_dir, device=device, final_step=final_step)
        hooks.append(Every(spec.eval.every, evaluation))
    return Callbacks(on_evaluation=hooks), evaluation
