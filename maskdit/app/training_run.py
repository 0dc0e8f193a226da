"""A training run: an experiment trained into a run folder, evaluated as it goes and at the end.

Outputs under ``run_dir``: spec.json, checkpoints/, metrics.jsonl (training lines, the held-out
lines of ``eval.every`` and the final evaluation's line), loss.png, samples.png (one row per
class), eval.json, and what the hooks of :mod:`maskdit.app.training_hooks` write (sample grids
under samples/, eval_metrics.png). Under torchrun every rank trains and rank 0 alone writes
these files and evaluates. Before anything is written, each of them (and ``.lock``) is checked to
be the run's own: a symlink or hard link planted in the folder is refused naming it, so nothing
outside the run folder is ever written or deleted through it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskdit.app.evaluation import check_outputs, evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.training_hooks import SAMPLES_DIR, training_callbacks
from maskdit.io import checkpoint as ckpt
from maskdit.io.files import atomic_write, check_inside
from maskdit.io.runlock import RunLock
from maskdit.train.distributed import DistContext
from maskdit.train.loop import ResumeInfo, TrainState


SPEC_FILE = "spec.json"


def check_run_files(run_dir: Path) -> None:
    """The files and folders this module writes in ``run_dir`` (the trainer checks its own) must
    be the run's: UnsafePathError naming a symlink, a hard link or a file of the wrong kind."""
    check_inside(run_dir, run_dir / SPEC_FILE)
    check_inside(run_dir, run_dir / SAMPLES_DIR, folder=True)
    check_outputs(run_dir)


@dataclass
class TrainedRun:
    """Where a run lives, its final training state, and its final evaluation (None: not evaluated,
    or not rank 0)."""

    run_dir: Path
    state: TrainState
    eval: dict[str, Any] | None


def train_run(experiment: Experiment, run_dir: str | Path, *, resume: bool = False, progress: bool = False,
              evaluate: bool = True, dist: DistContext | None = None,
              on_resume: Callable[[ResumeInfo], None] | None = None) -> TrainedRun:
    """Train ``experiment`` into ``run_dir`` (resuming from its newest valid checkpoint when
    ``resume``; without it, a folder that holds checkpoints is refused with FileExistsError), with
    a sample grid every ``train.sample_every`` steps and an evaluation every ``eval.every`` steps;
    then, when ``evaluate`` and ``eval.num_samples`` > 0, evaluate the EMA model.

    ``dist``: this process's place in a torchrun launch (default: a single process). Every rank
    builds the same initial network (seeded) and trains; rank 0 holds the run folder's lock
    (:class:`~maskdit.io.runlock.RunLock`: a second writer refuses), writes the outputs and
    evaluates (the others return ``eval=None``). ``on_resume(info)`` is told, on rank 0, where
    training starts: the checkpoint and step resumed, the checkpoints passed over and why, or a
    fresh start. ``progress`` shows progress bars."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"train_run takes an Experiment (maskdit.Experiment(spec)), got {type(experiment).__name__}")
    spec, run_dir = experiment.spec, Path(run_dir)
    dist = dist if dist is not None else DistContext()
    device = dist.device(spec.train.device)  # under torchrun: this rank's GPU
    final = evaluate and spec.eval.num_samples > 0
    # every rank builds the hooks before anything is written, so a spec they cannot serve fails
    # on all of them alike and leaves no run folder behind
    callbacks, evaluation = training_callbacks(experiment, run_dir, device=device,
                                               final_step=spec.train.total_steps if final else None)
    with RunLock(run_dir) if dist.is_main else nullcontext():
        if dist.is_main:
            check_run_files(run_dir)
        trainer = experiment.trainer(run_dir, progress=progress, dist=dist, callbacks=callbacks)
        trainer.check_outputs()
        if not resume and ckpt.list_checkpoints(run_dir / "checkpoints"):
            raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume to continue or choose another name")
        info = trainer.resume() if resume else ResumeInfo(None, 0, ())
        if on_resume is not None and dist.is_main:
            on_resume(info)
        if dist.is_main:
            atomic_write(run_dir / SPEC_FILE,
                         lambda tmp: tmp.write_text(spec.model_dump_json(indent=2), encoding="utf-8"), root=run_dir)
        if evaluation is not None:
            evaluation.after_resume(trainer)
        state = trainer.fit()
        record = None
        if final:
            averaged = trainer.main_ema_model()  # every rank calls it: FSDP2 gathers the shards
            if averaged is not None:
                with tqdm(total=spec.eval.num_samples, disable=not progress, unit="img", desc="evaluating") as bar:
                    record = evaluate_denoiser(averaged, experiment, step=state.step, out_dir=run_dir, device=device,
                                               on_batch=bar.update)
    return TrainedRun(run_dir=run_dir, state=state, eval=record)
