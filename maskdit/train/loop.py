"""The training loop: phases, AdamW, warm-up, clipping, accumulation, autocast, EMA, non-finite
step skipping, atomic checkpoints with exact resume, JSON-lines metrics and a progress bar."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from maskdit.train import checkpoint as ckpt
from maskdit.train.batches import BatchStream
from maskdit.train.ema import EMA
from maskdit.train.metrics import append_jsonl, plot_losses
from maskdit.train.schedule import Phase, learning_rate, phase_at, phases_of

log = logging.getLogger(__name__)


class StepLoss(Protocol):
    """What the loop trains on: per-sample totals [B] and the unweighted parts, for one batch."""

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 step: int, generator: torch.Generator) -> Any: ...


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    skipped: int = 0  # total non-finite steps skipped
    consecutive_skips: int = 0
    history: list[float] = field(default_factory=list)  # loss per step (NaN for skipped), for tests/plots


class Trainer:
    """Runs ``spec.train`` on ``model`` with the loss that ``loss_for_phase(phase)`` returns.

    ``run_dir`` receives checkpoints/, metrics.jsonl and loss.png. ``on_sample(step, ema_model)``
    is called every ``train.sample_every`` steps and at the end (e.g. to write a sample grid).
    """

    def __init__(self, spec, model: nn.Module, dataset, loss_for_phase: Callable[[Phase], StepLoss], run_dir: Path,
                 *, on_sample: Callable[[int, nn.Module], None] | None = None, progress: bool = False) -> None:
        self.spec, self.train = spec, spec.train
        self.device = torch.device(self.train.device)
        self.model = model.to(self.device)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.loss_for_phase, self.on_sample, self.progress = loss_for_phase, on_sample, progress
        self.phases = phases_of(self.train)
        micro = self.train.batch_size // self.train.grad_accumulation
        self.stream = BatchStream(dataset, micro, seed=spec.seed)
        opt = self.train.optimizer
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.train.lr, betas=opt.betas, eps=opt.eps,
                                           weight_decay=opt.weight_decay)
        self.ema = EMA(self.model, self.train.ema.decay, warmup=self.train.ema.warmup)
        self.generator = torch.Generator(device=self.device).manual_seed(spec.seed)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.train.precision == "fp16")
        self.forward_model = torch.compile(self.model) if self.train.compile else self.model
        self.state = TrainState()

    # ---- set-up ---------------------------------------------------------------------------
    def check_outputs(self) -> None:
        """Fail before training when checkpoints could not be written."""
        tensor_bytes = sum(v.numel() * v.element_size() for v in self.model.state_dict().values())
        ckpt.check_writable(self.run_dir, needed_bytes=4 * tensor_bytes + 2**20)

    def resume(self, path: Path | None = None) -> bool:
        """Restore the newest checkpoint (or ``path``); False when there is none."""
        path = path or ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            return False
        loaded = ckpt.load_checkpoint(path)
        saved_spec = loaded.state.get("spec", {}).get("model")
        if saved_spec is not None and saved_spec != self.spec.model.model_dump(mode="json"):
            raise ckpt.CheckpointError(f"{path} was written for a different model spec; refusing to resume")
        try:
            self.model.load_state_dict(loaded.tensors.get("model", {}), strict=True)
            self.ema.load_state_dict(loaded.tensors.get("ema", {}), loaded.state["ema_updates"])
            ckpt.optimizer_from_tensors(self.optimizer, loaded.tensors.get("optimizer", {}), loaded.state["param_groups"])
            self.generator.set_state(loaded.tensors["rng"]["generator"])
            if "scaler" in loaded.state:
                self.scaler.load_state_dict(loaded.state["scaler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ckpt.CheckpointError(f"{path} does not match this run: {err}") from None
        self.state = TrainState(step=loaded.state["step"], skipped=loaded.state["skipped"])
        log.info("resumed from %s at step %d", path, self.state.step)
        return True

    # ---- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainState:
        total = self.train.total_steps
        self.check_outputs()
        self.model.train()
        bar = tqdm(total=total, initial=self.state.step, disable=not self.progress, dynamic_ncols=True, unit="step")
        phase, loss_fn = None, None
        window_start, window_images = time.perf_counter(), 0
        while self.state.step < total:
            step = self.state.step
            current = phase_at(self.phases, step)
            if current is not phase:
                phase, loss_fn = current, self.loss_for_phase(current)
                log.info("phase %s: steps %d..%d", phase.name, phase.start, phase.stop - 1)
            lr = learning_rate(self.train, phase, step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, parts, grad_norm, extra = self._step(loss_fn, step)
            window_images += self.train.batch_size
            self.state.step += 1
            bar.update(1)
            if math.isfinite(loss):
                bar.set_postfix(loss=f"{loss:.4f}", phase=phase.name)
            if self.state.step % self.train.log_every == 0 or self.state.step == total:
                elapsed = time.perf_counter() - window_start
                self._log(step, phase, loss, parts, lr, grad_norm, extra, window_images / max(elapsed, 1e-9))
                window_start, window_images = time.perf_counter(), 0
            if self.state.step % self.train.checkpoint_every == 0 or self.state.step == total:
                self.save()
            if self.on_sample is not None and self.train.sample_every and self.state.step % self.train.sample_every == 0:
                self.on_sample(self.state.step, self.ema_model())
        bar.close()
        plot_losses(self.metrics_path, self.run_dir / "loss.png")
        return self.state

    def _step(self, loss_fn: StepLoss, step: int) -> tuple[float, dict[str, float], float, dict[str, Any]]:
        self.optimizer.zero_grad(set_to_none=True)
        accumulation = self.train.grad_accumulation
        total, parts_sum, extra, finite = 0.0, {}, {}, True
        for micro in range(accumulation):
            images, labels = self.stream.batch(step * accumulation + micro)
            images, labels = images.to(self.device), labels.to(self.device)
            with self._autocast():
                result = loss_fn(self.forward_model, images, labels, step=step, generator=self.generator)
            loss = result.total.float().mean()
            if not torch.isfinite(loss):
                finite = False
                break
            self.scaler.scale(loss / accumulation).backward()
            total += loss.item() / accumulation
            for name, value in result.parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value.float().mean().item() / accumulation
            if hasattr(result, "mask"):  # the objective's output carries the mask it drew (None: all kept)
                extra["mask_ratio"] = result.mask.ratio if result.mask is not None else 0.0
        grad_norm = float("nan")
        if finite:
            self.scaler.unscale_(self.optimizer)
            clip = self.train.grad_clip if self.train.grad_clip is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, clip))
            finite = math.isfinite(grad_norm)
        if not finite:
            return self._skip(step, total if math.isfinite(total) else float("nan")), {}, grad_norm, extra
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.state.consecutive_skips = 0
        self.state.history.append(total)
        return total, parts_sum, grad_norm, extra

    def _skip(self, step: int, loss: float) -> float:
        """Drop this step's gradients: weights, EMA and optimizer state stay as they were."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.update(self.scaler.get_scale() / 2)
        self.state.skipped += 1
        self.state.consecutive_skips += 1
        self.state.history.append(float("nan"))
        log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)", step, self.state.skipped)
        append_jsonl(self.metrics_path, {"step": step, "event": "skipped_nonfinite", "skipped": self.state.skipped})
        if self.state.consecutive_skips >= self.train.max_consecutive_skips:
            raise NonFiniteError(
                f"{self.state.consecutive_skips} consecutive steps had a non-finite loss or gradient (last at step "
                f"{step}); stopping. The last good checkpoint is in {self.ckpt_dir}. Try a lower lr, grad_clip, or bf16."
            )
        return float("nan")

    def _autocast(self):
        if self.train.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.train.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _log(self, step, phase, loss, parts, lr, grad_norm, extra, images_per_second) -> None:
        record = {"step": step + 1, "phase": phase.name, "loss": loss, "parts": parts, "lr": lr,
                  "grad_norm": grad_norm, "img_per_s": round(images_per_second, 2), "skipped": self.state.skipped,
                  **extra}
        append_jsonl(self.metrics_path, record)
        log.info("step %d loss %.5f lr %.3g", step + 1, loss, lr)

    # ---- outputs --------------------------------------------------------------------------
    def save(self) -> Path:
        optimizer_tensors, groups = ckpt.optimizer_to_tensors(self.optimizer)
        tensors = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": optimizer_tensors,
                   "rng": {"generator": self.generator.get_state()}}
        state = {"step": self.state.step, "phase": phase_at(self.phases, max(self.state.step - 1, 0)).name,
                 "skipped": self.state.skipped, "ema_updates": self.ema.updates, "param_groups": groups,
                 "data_batches_seen": self.state.step * self.train.grad_accumulation,
                 "spec": self.spec.model_dump(mode="json")}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return ckpt.save_checkpoint(self.ckpt_dir, self.state.step, tensors, state, keep=self.train.keep_checkpoints)

    def ema_model(self) -> nn.Module:
        """A copy of the model holding the EMA weights, in eval mode."""
        import copy

        averaged = copy.deepcopy(self.model)
        self.ema.copy_to(averaged)
        return averaged.eval()
