"""One evaluation of a denoiser as an experiment spec describes it: sample, score, write outputs.

Used by ``python -m maskdit.evaluate`` and by a training run after (or during) training. Outputs
in ``out_dir``: ``samples.png`` (one row per class), ``eval.json`` (this evaluation), a line
appended to ``metrics.jsonl``, and ``eval_metrics.png`` (the metrics and the held-out loss
against step) once the file holds several evaluations. Each is checked first to be the folder's
own file (no symlink, no hard link: :func:`~maskdit.io.files.check_inside`), before any sampling.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from maskdit.app.experiment import Experiment
from maskdit.eval.evaluator import Evaluator
from maskdit.eval.generation import generate_batches
from maskdit.eval.plots import DEFAULT_KEYS, plot_metrics
from maskdit.io.files import atomic_write, check_inside
from maskdit.io.images import save_class_grid
from maskdit.io.jsonl import append_metrics, finite_json, read_metrics

METRICS_FILE, EVAL_FILE, GRID_FILE, PLOT_FILE = "metrics.jsonl", "eval.json", "samples.png", "eval_metrics.png"
#: the records eval_metrics.png draws (metrics.jsonl's "kind"), and the values, one panel each
PLOTTED_KINDS, PLOTTED_KEYS = ("eval", "heldout"), ("heldout_loss", *DEFAULT_KEYS)


def evaluate_denoiser(
    denoiser: torch.nn.Module,
    experiment: Experiment,
    *,
    step: int | None = None,
    out_dir: str | Path | None = None,
    evaluator: Evaluator | None = None,
    device: str | torch.device = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Sample ``spec.eval.num_samples`` images with the experiment's sampler and compute the
    experiment's metrics (``spec`` = ``experiment.spec``).

    Samples are clipped to [-1, 1] before scoring, as writing them as 8-bit images would; the
    record's ``clipped_fraction`` says how many values that touched.

    ``experiment`` is a :class:`~maskdit.app.experiment.Experiment`; ``evaluator`` (default: the
    experiment's, loaded on ``device``) may be one shared by several evaluations. Class accuracy
    is dropped (with a logged note) for an unconditional model. ``on_batch(n)`` is told how many
    samples each batch added (for a progress bar). Returns the metrics record that was written.
    """
    if not callable(getattr(experiment, "evaluator", None)):
        raise TypeError(f"evaluate_denoiser takes an Experiment (maskdit.Experiment(spec)), "
                        f"got {type(experiment).__name__}")
    spec = experiment.spec
    eval_spec, model_spec = spec.eval, spec.model
    if eval_spec.num_samples < 1:
        raise ValueError("eval.num_samples is 0: nothing to evaluate")
    if out_dir is not None:
        check_outputs(Path(out_dir))  # before an hour of sampling, not after
    if evaluator is None:
        evaluator = experiment.evaluator(device=device)
    accumulator = evaluator.accumulator(experiment.metrics)
    sampler = experiment.sampler
    shape = (model_spec.in_channels, model_spec.input_size, model_spec.input_size)
    per_class = eval_spec.grid_per_class
    kept_images, kept_labels = [], []
    clipped = 0
    was_training = denoiser.training
    denoiser.eval()
    start = time.perf_counter()
    try:
        for images, labels in generate_batches(denoiser, sampler, num_samples=eval_spec.num_samples,
                                               batch_size=eval_spec.batch_size, shape=shape,
                                               num_classes=model_spec.num_classes, seed=spec.seed, device=device):
            clipped += int((images.abs() > 1).sum())
            images = images.clamp(-1, 1)  # what writing samples as 8-bit images does (ADM, EDM)
            accumulator.update(images, labels)
            if per_class and sum(len(x) for x in kept_images) < per_class * max(model_spec.num_classes, 1):
                kept_images.append(images)
                kept_labels.append(labels if labels is not None else torch.zeros(len(images), dtype=torch.long))
            if on_batch is not None:
                on_batch(len(images))
    finally:
        denoiser.train(was_training)
    record: dict[str, Any] = {"step": step, "kind": "eval", **accumulator.result(),
                              "clipped_fraction": clipped / (eval_spec.num_samples * math.prod(shape)),
                              "seconds": round(time.perf_counter() - start, 2),
                              "sampler": f"{spec.sampler.name}/{spec.sampler.steps}",
                              "reference": evaluator.reference.name if evaluator.reference is not None else None}
    if out_dir is not None:
        write_outputs(record, Path(out_dir), kept_images, kept_labels,
                      num_classes=max(model_spec.num_classes, 1), per_class=per_class)
    return record


def check_outputs(out_dir: Path) -> None:
    """Refuse (UnsafePathError naming it) an output of ``out_dir`` that is a symlink, a hard link
    or not a regular file: writing it would reach outside the folder."""
    for name in (GRID_FILE, EVAL_FILE, METRICS_FILE, PLOT_FILE):
        check_inside(out_dir, out_dir / name)


def write_outputs(record: dict[str, Any], out_dir: Path, images: list[torch.Tensor], labels: list[torch.Tensor],
                  *, num_classes: int, per_class: int) -> dict[str, Path]:
    """samples.png, eval.json, the metrics line (strict JSON, never glued onto a cut line), and
    the plot when there are several evaluations."""
    out_dir.mkdir(parents=True, exist_ok=True)
    check_outputs(out_dir)
    written = {}
    if per_class and images:
        written["grid"] = save_class_grid(torch.cat(images), torch.cat(labels), out_dir / GRID_FILE,
                                          num_classes=num_classes, per_class=per_class)
    written["eval"] = atomic_write(out_dir / EVAL_FILE, lambda tmp: tmp.write_text(
        json.dumps(finite_json(record), indent=1, allow_nan=False) + "\n", encoding="utf-8"), root=out_dir)
    written["metrics"] = append_metrics(out_dir / METRICS_FILE, record)
    plot = plot_evaluations(out_dir)
    if plot is not None:
        written["plot"] = plot
    return written


def plot_evaluations(out_dir: Path) -> Path | None:
    """eval_metrics.png from the evaluation and held-out lines of ``out_dir``/metrics.jsonl that
    have a step, once there are two (None before)."""
    records = [r for r in read_metrics(out_dir / METRICS_FILE)
               if r.get("kind") in PLOTTED_KINDS and r.get("step") is not None]
    if len(records) < 2:
        return None
    return plot_metrics(records, check_inside(out_dir, out_dir / PLOT_FILE), keys=PLOTTED_KEYS)
