"""The main job: train the experiment a spec describes, then sample and evaluate its EMA model.

Outputs under ``run_dir``: spec.json, checkpoints/, metrics.jsonl (training lines and the
evaluation line), loss.png, samples.png (one row per class), eval.json. Under torchrun every
rank trains and rank 0 alone writes these files and evaluates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskdit.app.evaluation import evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.io.files import atomic_write
from maskdit.eval.generation import generate_batches
from maskdit.io import checkpoint as ckpt
from maskdit.io.images import save_class_grid
from maskdit.io.runlock import RunLock
from maskdit.train.distributed import DistContext
from maskdit.train.loop import ResumeInfo, TrainState


@dataclass
class JobResult:
    run_dir: Path
    state: TrainState
    eval: dict[str, Any] | None


def sample_grid_writer(experiment: Experiment, run_dir: Path,
                       device: str | torch.device) -> Callable[[int, torch.nn.Module], None]:
    """Writes samples/step-XXXXXXXX.png (one row per class) from the EMA model during training."""
    spec, sampler = experiment.spec, experiment.sampler
    classes = max(spec.model.num_classes, 1)
    per_class = max(spec.eval.grid_per_class, 1)
    shape = (spec.model.in_channels, spec.model.input_size, spec.model.input_size)

    def write(step: int, model: torch.nn.Module) -> None:
        batches = list(generate_batches(model, sampler, num_samples=classes * per_class, batch_size=spec.eval.batch_size,
                                        shape=shape, num_classes=spec.model.num_classes, seed=spec.seed, device=device))
        images = torch.cat([b[0] for b in batches]).clamp(-1, 1)
        labels = torch.cat([b[1] for b in batches]) if batches[0][1] is not None else torch.zeros(len(images), dtype=torch.long)
        (run_dir / "samples").mkdir(exist_ok=True)
        save_class_grid(images, labels, run_dir / "samples" / f"step-{step:08d}.png", num_classes=classes, per_class=per_class)

    return write


def run_experiment(spec: ExperimentSpec | Experiment, run_dir: str | Path, *, resume: bool = False,
                   progress: bool = False, evaluate: bool = True, dist: DistContext | None = None,
                   on_resume: Callable[[ResumeInfo], None] | None = None) -> JobResult:
    """Train (resuming from the newest valid checkpoint when ``resume``), then evaluate the EMA model.

    ``dist``: this process's place in a torchrun launch (default: a single process). Every rank
    builds the same initial network (seeded) and trains; rank 0 holds the run folder's lock
    (:class:`~maskdit.io.runlock.RunLock`: a second writer refuses), writes the outputs and
    evaluates (the others return ``eval=None``). ``on_resume(info)`` is told, on rank 0, where
    training starts: the checkpoint and step resumed, the checkpoints passed over and why, or a
    fresh start."""
    run_dir = Path(run_dir)
    experiment = spec if isinstance(spec, Experiment) else Experiment(spec)
    dist = dist if dist is not None else DistContext()
    lock = RunLock(run_dir).acquire() if dist.is_main else None
    try:
        return _run(experiment, run_dir, resume=resume, progress=progress, evaluate=evaluate, dist=dist,
                    on_resume=on_resume)
    finally:
        if lock is not None:
            lock.release()


def _run(experiment: Experiment, run_dir: Path, *, resume, progress, evaluate, dist: DistContext,
         on_resume) -> JobResult:
    spec = experiment.spec
    device = dist.device(spec.train.device)  # under torchrun: this rank's GPU
    writer = sample_grid_writer(experiment, run_dir, device) if spec.train.sample_every else None
    trainer = experiment.trainer(run_dir, progress=progress, dist=dist, on_sample=writer)
    trainer.check_outputs()
    if not resume and ckpt.list_checkpoints(run_dir / "checkpoints"):
        raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume to continue or choose another name")
    info = trainer.resume() if resume else ResumeInfo(None, 0, ())
    if on_resume is not None and dist.is_main:
        on_resume(info)
    if dist.is_main:
        atomic_write(run_dir / "spec.json", lambda tmp: tmp.write_text(spec.model_dump_json(indent=2), encoding="utf-8"))
    state = trainer.fit()
    record = None
    if evaluate and spec.eval.num_samples > 0:
        averaged = trainer.main_ema_model()  # every rank calls it: FSDP2 gathers the shards
        if averaged is not None:
            with tqdm(total=spec.eval.num_samples, disable=not progress, unit="img", desc="evaluating") as bar:
                record = evaluate_denoiser(averaged, experiment, step=state.step, out_dir=run_dir, device=device,
                                           on_batch=bar.update)
    return JobResult(run_dir=run_dir, state=state, eval=record)
