"""The training loop: phases (each with the objective it is given), AdamW, warm-up, clipping,
accumulation, autocast, EMA, non-finite step skipping, atomic checkpoints with exact resume,
JSON-lines metrics, a progress bar, and the callbacks (after each step, every N steps with the
EMA model, after each checkpoint).

Under torchrun (a :class:`DistContext` with world size W > 1) the same loop runs data-parallel:
each rank takes its contiguous rows of every global micro-batch, the network is wrapped in DDP
(or sharded with FSDP2), and rank 0 alone writes metrics and checkpoints and runs the every-N
hooks (sample grids, evaluations). The EMA
is updated on every rank from identical (DDP) or sharded (FSDP2) weights, so no rank needs a
broadcast. Checkpoints hold full tensors, so N ranks' checkpoints resume on M ranks.

The loss and its parts are summed on the device over a step's micro-batches and read back (and
averaged over the ranks) once per optimizer step, so accumulation adds no host synchronisation.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from maskdit.config import json_input as jsonio
from maskdit.core.specs import ModelSpec
from maskdit.data.errors import DataError
from maskdit.io import checkpoint as ckpt
from maskdit.io.files import check_inside, clean_temp_files
from maskdit.io.jsonl import append_jsonl, truncate_jsonl
from maskdit.losses.objective import ObjectiveOutput
from maskdit.train import parallel as par
from maskdit.train.batches import BatchStream
from maskdit.train.callbacks import Callbacks, StepResult
from maskdit.train.compile import compile_model
from maskdit.train.distributed import DistContext, check_batch, mean_over_ranks
from maskdit.train.ema import EMA
from maskdit.train.loss_plot import plot_losses
from maskdit.train.objectives import TrainingObjective, objectives_by_phase
from maskdit.train.phases import Phase, learning_rate, phase_at, phases_of
from maskdit.train.specs import TrainSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeInfo:
    """Where :meth:`Trainer.resume` resumed (``path`` None: nothing to resume, a fresh start) and
    the newer checkpoints it passed over, with the reason for each."""

    path: Path | None
    step: int
    rejected: tuple[tuple[Path, str], ...]

    def __bool__(self) -> bool:
        return self.path is not None


#: the keys the trainer writes into a checkpoint's state itself
_STATE_KEYS = frozenset({"step", "phase", "skipped", "ema_updates", "param_groups", "data_batches_seen", "scaler"})


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    skipped: int = 0  # total non-finite steps skipped
    consecutive_skips: int = 0
    history: list[float] = field(default_factory=list)  # loss per step (NaN for skipped), for tests/plots


class Trainer:
    """Runs ``train`` (a train section) on ``model``, each phase on its objective, with its data
    order and generator seeded with ``seed``.

    ``objectives``: phase name -> :class:`TrainingObjective` (every phase of ``train``, by name;
    ``"train"`` when it has no phases), or one objective for every phase. ``run_dir`` receives
    checkpoints/, metrics.jsonl and loss.png. ``run_record`` is JSON that every checkpoint's state
    also holds (the experiment spec under ``"spec"``, so a checkpoint is enough to rebuild the run,
    and the plugin modules it names under ``"plugins"``); resuming refuses a checkpoint whose
    recorded spec has another ``model`` section. ``callbacks`` are told of each step, run every N
    steps with the EMA model, and told of each checkpoint (:class:`~maskdit.train.callbacks.Callbacks`).
    ``dist`` places this process in a torchrun launch (default: a single process).
    """

    def __init__(self, train: TrainSpec, model: nn.Module, dataset: Any,
                 objectives: Mapping[str, TrainingObjective] | TrainingObjective, run_dir: str | Path, *, seed: int,
                 run_record: Mapping[str, Any] | None = None, callbacks: Callbacks | None = None,
                 progress: bool = False, dist: DistContext | None = None) -> None:
        if not isinstance(train, TrainSpec):
            raise TypeError(f"Trainer takes the train section (spec.train), got {type(train).__name__}")
        if callbacks is not None and not isinstance(callbacks, Callbacks):
            raise TypeError(f"callbacks must be a Callbacks, got {type(callbacks).__name__}")
        self.train, self.seed = train, seed
        self.phases = phases_of(self.train)
        self.objectives = objectives_by_phase(objectives, self.phases)
        self.callbacks = callbacks if callbacks is not None else Callbacks()
        self.run_record = dict(run_record or {})
        clash = sorted(set(self.run_record) & _STATE_KEYS)
        if clash:
            raise ValueError(f"run_record keys {clash} would overwrite the trainer's own checkpoint state")
        self.dist = dist if dist is not None else DistContext()
        self.parallel = self.train.parallel
        check_batch(self.train.batch_size, self.train.grad_accumulation, self.dist.world_size)
        self.device = self.dist.device(self.train.device)
        self.model = model.to(self.device)  # the unwrapped network: state dicts always come from it
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.loss_plot = self.run_dir / "loss.png"
        self.progress = progress
        micro = self.train.batch_size // self.train.grad_accumulation  # global micro-batch
        self.stream = BatchStream(dataset, micro, seed=seed)
        self.latent_pixels = self._latent_pixels(dataset)
        self.rows = self.dist.rows(micro) if self.dist.is_distributed else None  # this rank's rows of each micro-batch
        self.shard = {"rows": self.rows, "total": micro} if self.dist.is_distributed else {}
        sharded = par.is_sharded(self.parallel, self.dist)
        self.template = copy.deepcopy(self.model).cpu() if sharded else None  # for full EMA copies under FSDP2
        self.wrapped = par.wrap_model(self.model, self.parallel, self.dist, self.device)
        opt = self.train.optimizer
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.train.lr, betas=opt.betas, eps=opt.eps,
                                           weight_decay=opt.weight_decay)
        self.ema = EMA(self.model, self.train.ema.decay, warmup=self.train.ema.warmup)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.train.precision == "fp16")
        if self.train.compile:
            compile_model(self.model)
        self.forward_model = self.wrapped
        self.state = TrainState()
        self._updating = False  # True while an optimizer update is half applied (see _save_on_interrupt)
        self._rng_at_step = self.generator.get_state()

    # ---- set-up ---------------------------------------------------------------------------
    def check_outputs(self) -> None:
        """Fail before training when checkpoints could not be written (rank 0 writes them), or
        when checkpoints/, metrics.jsonl or loss.png is a link or not what the run writes there
        (:class:`~maskdit.io.files.UnsafePathError`: nothing outside the run folder is touched)."""
        if not self.dist.is_main:
            return
        check_inside(self.run_dir, self.ckpt_dir, folder=True)
        for path in (self.metrics_path, self.loss_plot):
            check_inside(self.run_dir, path)
        tensor_bytes = sum(v.numel() * v.element_size() for v in self.model.state_dict().values())
        ckpt.check_writable(self.run_dir, needed_bytes=4 * tensor_bytes + 2**20)

    def resume(self, path: Path | None = None) -> ResumeInfo:
        """Restore checkpoint ``path``, else the newest valid one. A checkpoint that fails its
        checks (checksum, non-finite weights, hand-edited state, shapes) is passed over for the
        next older one and listed in ``ResumeInfo.rejected``; when there are checkpoints but none
        is valid, CheckpointError lists why. Every rank reads the same files, so the run folder
        must be visible to all of them. The returned info is falsy when nothing was resumed."""
        candidates = [Path(path)] if path is not None else list(reversed(ckpt.list_checkpoints(self.ckpt_dir)))
        rejected: list[tuple[Path, str]] = []
        for candidate in candidates:
            try:
                self._restore(candidate)
            except ckpt.CheckpointError as err:
                if path is not None:
                    raise
                rejected.append((candidate, str(err)))
                log.warning("passing over checkpoint %s: %s", candidate, err)
                continue
            log.info("resumed from %s at step %d", candidate, self.state.step)
            return ResumeInfo(candidate, self.state.step, tuple(rejected))
        if rejected:
            reasons = "; ".join(reason for _, reason in rejected)
            raise ckpt.CheckpointError(f"no valid checkpoint under {self.ckpt_dir}: {reasons}")
        return ResumeInfo(None, 0, ())

    def _restore(self, path: Path) -> None:
        loaded = ckpt.load_checkpoint(path)
        saved_model = (loaded.state.get("spec") or {}).get("model")
        ours = (self.run_record.get("spec") or {}).get("model")
        if saved_model is not None and ours is not None and not _same_model(saved_model, ours):
            raise ckpt.CheckpointError(f"{path} was written for a different model spec; refusing to resume")
        optimizer_tensors = loaded.tensors.get("optimizer", {})
        ckpt.check_optimizer_tensors(optimizer_tensors, self.trainable, source=str(path / ckpt.TENSORS))
        try:
            par.load_model_state(self.model, loaded.tensors.get("model", {}), self.parallel, self.dist)
            self.ema.load_state_dict(par.like_shadow(self.ema.shadow, loaded.tensors.get("ema", {})),
                                     loaded.state.get("ema_updates", 0))
            par.load_optimizer_state(self.model, self.optimizer, optimizer_tensors,
                                     loaded.state["param_groups"], self.parallel, self.dist)
            self.generator.set_state(loaded.tensors["rng"]["generator"])
            if "scaler" in loaded.state:
                self.scaler.load_state_dict(loaded.state["scaler"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise ckpt.CheckpointError(f"{path} does not match this run: {jsonio.short(str(err))}") from None
        self.state = TrainState(step=loaded.state["step"], skipped=loaded.state.get("skipped", 0))

    # ---- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train to ``train.total_steps``. On rank 0 it first removes what a killed save left in
        checkpoints/ and what killed writers left in the run folder and its subfolders (only
        files with maskdit's temporary names), and cuts metrics.jsonl back to the step it starts
        from, so every step is logged once. Ctrl-C (KeyboardInterrupt) between optimizer updates
        writes a checkpoint of the last completed step and re-raises."""
        total = self.train.total_steps
        self.check_outputs()
        if self.dist.is_main:
            for path in ckpt.clean_leftovers(self.ckpt_dir):
                log.warning("removed %s, left by an interrupted save", path)
            for path in clean_temp_files(self.run_dir, subfolders=True, skip=(self.ckpt_dir.name,)):
                log.warning("removed %s, left by an interrupted write", path)
            if truncate_jsonl(self.metrics_path, self.state.step):
                log.info("metrics.jsonl cut back to step %d", self.state.step)
        self.model.train()
        self._updating = False
        self._rng_at_step = self.generator.get_state()
        try:
            self._fit(total)
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise
        return self.state

    def _save_on_interrupt(self) -> None:
        """A checkpoint of the last completed step, if the interrupt fell outside an update."""
        if self._updating or self.state.step == 0 or par.is_sharded(self.parallel, self.dist):
            return  # mid-update the weights are neither step s nor s + 1; FSDP2 would need every rank
        self.optimizer.zero_grad(set_to_none=True)
        self.generator.set_state(self._rng_at_step)  # undo the interrupted step's draws: resume is exact
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None or latest != ckpt.step_dir(self.ckpt_dir, self.state.step):
            self.save()

    def _fit(self, total: int) -> None:
        main = self.dist.is_main
        bar = tqdm(total=total, initial=self.state.step, disable=not (self.progress and main), dynamic_ncols=True,
                   unit="step")
        phase = None
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.state.step < total:
                step = self.state.step
                current = phase_at(self.phases, step)
                if current is not phase:
                    phase = current
                    if main:
                        log.info("phase %s: steps %d..%d", phase.name, phase.start, phase.stop - 1)
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate(self.train, phase, step)
                result = self._step(phase, step)
                for hook in self.callbacks.on_step:
                    hook(result)
                window_images += self.train.batch_size
                bar.update(1)
                if not result.skipped:
                    bar.set_postfix(loss=f"{result.loss:.4f}", phase=phase.name)
                due = result.step % self.train.log_every == 0 or result.step == total
                if main and due and not result.skipped:  # a skipped step has its one record already
                    self._log(result, window_images / max(time.perf_counter() - window_start, 1e-9))
                    window_start, window_images = time.perf_counter(), 0
                self._updating = False  # the step is whole: applied, counted and logged
                if result.step % self.train.checkpoint_every == 0 or result.step == total:
                    path = self.save()
                    for hook in self.callbacks.on_checkpoint if path is not None else ():
                        hook(result.step, path)
                self._evaluate(result.step)
        finally:
            bar.close()  # also on Ctrl-C, before the CLI prints the resume command
        if main:
            plot_losses(self.metrics_path, check_inside(self.run_dir, self.loss_plot))

    def _step(self, phase: Phase, step: int) -> StepResult:
        """One optimizer step, read top to bottom: each micro-batch's batch -> loss -> backward; then,
        once, the means -> clip -> optimizer step -> EMA (or a skip, when anything is non-finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        sums, names, mask_ratio = self._forward_backward(self.objectives[phase.name], step)
        par.sync_head_gradients(self.model, self.parallel, self.dist)
        # rank 0 logs the global means; a non-finite loss on any rank makes all skip
        values = mean_over_ranks(sums, self.dist).tolist()  # the step's one host synchronisation
        loss, parts = values[0], dict(zip(names, values[1:]))
        grad_norm = self._unscale_and_clip() if math.isfinite(loss) else float("nan")
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if skipped:
            self._skip(step)  # raises NonFiniteError after too many in a row
        # from here until _fit has logged the step, an interrupt would leave a half-updated state (or
        # a checkpoint of a step whose metrics line is missing); _fit clears it
        self._updating = True
        if not skipped:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.ema.update(self.model)
        self.state.step += 1
        self._rng_at_step = self.generator.get_state()
        if not skipped:
            self.state.consecutive_skips = 0
            self.state.history.append(loss)
        return StepResult(step=step + 1, phase=phase.name, lr=self.optimizer.param_groups[0]["lr"],
                          loss=float("nan") if skipped else loss, parts={} if skipped else parts,
                          grad_norm=grad_norm, mask_ratio=mask_ratio, skipped=skipped,
                          total_skipped=self.state.skipped)

    def _forward_backward(self, objective: TrainingObjective, step: int) -> tuple[torch.Tensor, list[str], float]:
        """Every micro-batch of step ``step``: batch -> loss -> backward (gradients accumulate).
        Returns the sums of the micro-batches' means on the device (float64 [1 + parts]: the loss,
        then each part), the parts' names, and the share of tokens the last mask dropped."""
        accumulation = self.train.grad_accumulation
        sums, names, mask_ratio = None, [], 0.0
        for micro in range(accumulation):
            with_pixels = self.latent_pixels and _reads_pixels(objective, step)
            batch = self.stream.batch(step * accumulation + micro, rows=self.rows, with_images=with_pixels)
            images, labels = batch[0].to(self.device), batch[1].to(self.device)
            extra = {"pixels": batch[2].to(self.device)} if with_pixels else {}  # a latent batch's clean images
            with par.no_sync(self.wrapped, self.parallel, self.dist, sync=micro == accumulation - 1):
                with self._autocast():
                    result = objective(self.forward_model, images, labels, step=step, generator=self.generator,
                                       **self.shard, **extra)
                if not isinstance(result, ObjectiveOutput):
                    raise TypeError(f"a training objective returns an ObjectiveOutput, got {type(result).__name__}")
                loss = result.total.float().mean()
                self.scaler.scale(loss / accumulation).backward()  # a non-finite loss is skipped by _step
            names = list(result.parts)
            means = torch.stack([loss.detach(), *(value.detach().float().mean() for value in result.parts.values())])
            means = means.double() / accumulation
            sums = means if sums is None else sums + means
            mask_ratio = result.mask.ratio if result.mask is not None else 0.0  # None: every token kept
        return sums, names, mask_ratio

    def _latent_pixels(self, dataset: Any) -> bool:
        """True when some phase's objective reads clean images (``reads_pixels``: REPA) and the
        dataset's samples are not images (a latent dataset, ``stores_images``): each batch then brings
        the source crops too. A latent folder without them fails here, before the first step."""
        if not any(getattr(objective, "reads_pixels", False) for objective in self.objectives.values()):
            return False
        stores = getattr(dataset, "stores_images", None)
        if stores is None:
            return False  # an image dataset: its samples are the clean images
        if not stores:
            require = getattr(dataset, "require_images", None)
            if callable(require):
                require()  # raises, naming the folder and the fix
            raise DataError(f"{type(dataset).__name__} stores no clean images, which the objective's terms read")
        return True

    def _unscale_and_clip(self) -> float:
        """The global gradient norm before clipping (clipped to ``train.grad_clip`` when set)."""
        self.scaler.unscale_(self.optimizer)
        clip = self.train.grad_clip if self.train.grad_clip is not None else float("inf")
        return par.to_float(torch.nn.utils.clip_grad_norm_(self.trainable, clip))

    def _skip(self, step: int) -> None:
        """Drop this step's gradients: weights, EMA and optimizer state stay as they were."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update(self.scaler.get_scale() / 2)
        self.state.skipped += 1
        self.state.consecutive_skips += 1
        self.state.history.append(float("nan"))
        if self.dist.is_main:  # the step's one record (numbered from 1, as every record), whatever log_every says
            log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)", step + 1, self.state.skipped)
            append_jsonl(self.metrics_path, {"step": step + 1, "event": "skipped_nonfinite", "loss": None,
                                             "skipped": self.state.skipped})
        if self.state.consecutive_skips >= self.train.max_consecutive_skips:
            raise NonFiniteError(
                f"{self.state.consecutive_skips} consecutive steps had a non-finite loss or gradient (last at step "
                f"{step + 1}); stopping. The last good checkpoint is in {self.ckpt_dir}. Try a lower lr, grad_clip, "
                "or bf16."
            )

    def _evaluate(self, step: int) -> None:
        """The ``on_evaluation`` hooks due at ``step``, on rank 0, sharing one EMA copy."""
        due = self.callbacks.evaluations_due(step)
        if not due:
            return
        averaged = self.main_ema_model()  # every rank calls it: FSDP2 gathers the shards
        for entry in due if averaged is not None else ():
            entry.hook(step, averaged)

    def _autocast(self):
        if self.train.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.train.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _log(self, result: StepResult, images_per_second: float) -> None:
        record = {"step": result.step, "phase": result.phase, "loss": result.loss, "parts": result.parts,
                  "lr": result.lr, "grad_norm": result.grad_norm, "img_per_s": round(images_per_second, 2),
                  "skipped": result.total_skipped, "mask_ratio": result.mask_ratio}
        append_jsonl(self.metrics_path, record)
        log.info("step %d loss %.5f lr %.3g", result.step, result.loss, result.lr)

    # ---- outputs --------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write a checkpoint of full tensors on rank 0 (its path; None on other ranks). Under
        FSDP2 every rank must call it, since gathering the shards is a collective."""
        if not self.dist.is_main and not par.is_sharded(self.parallel, self.dist):
            return None
        model_tensors = par.full_model_state(self.model, self.parallel, self.dist)
        ema_tensors = par.full_tensors(self.ema.state_dict())
        optimizer_tensors, groups = par.full_optimizer_state(self.model, self.optimizer, self.parallel, self.dist)
        if not self.dist.is_main:
            return None
        tensors = {"model": model_tensors, "ema": ema_tensors, "optimizer": optimizer_tensors,
                   "rng": {"generator": self.generator.get_state()}}
        state = {"step": self.state.step, "phase": phase_at(self.phases, max(self.state.step - 1, 0)).name,
                 "skipped": self.state.skipped, "ema_updates": self.ema.updates, "param_groups": groups,
                 "data_batches_seen": self.state.step * self.train.grad_accumulation, **self.run_record}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return ckpt.save_checkpoint(self.ckpt_dir, self.state.step, tensors, state, keep=self.train.keep_checkpoints)

    def main_ema_model(self) -> nn.Module | None:
        """:meth:`ema_model` on rank 0, None elsewhere; every rank must call it (FSDP2 gathers)."""
        if not self.dist.is_main and self.template is None:
            return None
        averaged = self.ema_model()
        return averaged if self.dist.is_main else None

    def ema_model(self) -> nn.Module:
        """An unwrapped copy of the model holding the EMA weights, in eval mode (under FSDP2 a
        collective: every rank calls it and gets the full model)."""
        if self.template is None:
            averaged = copy.deepcopy(self.model)
            self.ema.copy_to(averaged)
            return averaged.eval()
        full = par.full_tensors(self.ema.state_dict())
        averaged = copy.deepcopy(self.template).to(self.device)
        state = averaged.state_dict()
        with torch.no_grad():
            for name, value in full.items():
                state[name].copy_(value.to(state[name].dtype))
        return averaged.eval()



def _reads_pixels(objective: Any, step: int) -> bool:
    """Whether ``objective`` reads a latent batch's clean images at ``step``: its
    ``reads_pixels_at(step)`` when it has one (REPA off after ``until_step``), else ``reads_pixels``."""
    at = getattr(objective, "reads_pixels_at", None)
    return bool(at(step)) if callable(at) else bool(getattr(objective, "reads_pixels", False))


def _same_model(saved: Any, ours: Any) -> bool:
    """The two model specs (JSON) describe one model: equal as written, or once read as today's
    ModelSpec reads them (a checkpoint from before ``model.process`` names ``precond``)."""
    if saved == ours:
        return True
    try:
        return ModelSpec.model_validate(saved).model_dump(mode="json") == ModelSpec.model_validate(ours).model_dump(mode="json")
    except ValueError:  # pydantic's ValidationError: a spec this code cannot read is not ours
        return False
