"""The train section: optimisation, EMA, phases, checkpointing, robustness, logging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from maskdit.config.spec_model import SpecModel
from maskdit.losses.specs import LossTermSpec
from maskdit.masking.specs import MaskingSpec


class AdamWSpec(SpecModel):
    name: Literal["adamw"] = "adamw"
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (beta1, beta2)")
    eps: float = Field(1e-8, gt=0, le=1, description="AdamW epsilon")
    weight_decay: float = Field(0.0, ge=0, le=1, description="decoupled weight decay (reference: 0)")

    @model_validator(mode="after")
    def _betas_in_range(self) -> AdamWSpec:
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self


class EMASpec(SpecModel):
    decay: float = Field(0.9999, ge=0, lt=1, description="EMA decay per optimizer step (reference: 0.9999)")
    warmup: bool = Field(False, description="use min(decay, (1 + n) / (10 + n)) so early EMA follows the weights")


class LRDecaySpec(SpecModel):
    """A learning-rate decay over the end of a phase: with ``fraction`` 1 the whole phase decays
    (linear or cosine annealing); with a smaller one the lr stays flat and then cools down over
    the phase's last ``fraction`` of steps (warm-up-stable-decay)."""

    shape: Literal["linear", "cosine"] = Field("linear", description="how the lr falls: linearly or as a half cosine")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the phase's steps (its last ones) that decay")
    final: float = Field(0.0, ge=0, le=1, description="lr at the phase's last step, as a fraction of the phase's lr")


class PhaseSpec(SpecModel):
    """One stage of training; unset fields fall back to the experiment's sections."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="phase name, shown in logs")
    steps: int = Field(ge=1, description="optimizer steps in this phase")
    masking: MaskingSpec | None = Field(None, description="masking for this phase (None: the experiment's)")
    loss_terms: tuple[LossTermSpec, ...] | None = Field(
        None, min_length=1, description="loss terms for this phase (None: the experiment's)"
    )
    lr: float | None = Field(None, gt=0, le=1, description="learning rate for this phase (None: train.lr)")
    lr_decay: LRDecaySpec | None = Field(None, description="lr decay over the end of this phase (None: train.lr_decay)")


class TrainSpec(SpecModel):
    steps: int | None = Field(None, ge=0, description="total optimizer steps (with phases: their sum, may be omitted)")
    phases: tuple[PhaseSpec, ...] = Field((), description="training phases in order (empty: one phase)")
    batch_size: int = Field(64, ge=1, le=65536, description="global batch size per optimizer step")
    grad_accumulation: int = Field(1, ge=1, le=1024, description="micro-batches per optimizer step")
    lr: float = Field(1e-4, gt=0, le=1, description="learning rate after warm-up")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps (reference: 0)")
    lr_decay: LRDecaySpec | None = Field(
        None, description="lr decay over the end of each phase that sets none of its own (None: constant, the reference)"
    )
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm (None: no clipping)")
    optimizer: AdamWSpec = Field(AdamWSpec(), description="optimizer")
    ema: EMASpec = Field(EMASpec(), description="exponential moving average of the weights")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast precision (fp16: CUDA only)")
    compile: bool = Field(False, description="torch.compile each transformer block (opt-in; regional, state dict unchanged)")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="torch device")
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="data parallelism under torchrun: DDP (replicated) or FSDP2 (sharded weights and optimizer)"
    )
    log_every: int = Field(50, ge=1, description="steps between metric lines")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="how many recent checkpoints to keep")
    sample_every: int | None = Field(None, ge=1, description="steps between sample grids (None: only at the end)")
    max_consecutive_skips: int = Field(10, ge=1, description="stop after this many non-finite steps in a row")

    @model_validator(mode="after")
    def _steps_agree(self) -> TrainSpec:
        if self.phases:
            total = sum(phase.steps for phase in self.phases)
            if self.steps is not None and self.steps != total:
                raise ValueError(f"steps ({self.steps}) differs from the sum of the phases' steps ({total})")
            names = [phase.name for phase in self.phases]
            if len(set(names)) != len(names):
                raise ValueError(f"phase names must be unique, got {names}")
        elif self.steps is None:
            raise ValueError("give either steps or phases")
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accumulation {self.grad_accumulation}"
            )
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("fp16 needs a CUDA device (it uses a gradient scaler); use bf16 on CPU")
        if self.precision == "fp16" and self.parallel == "fsdp":
            raise ValueError("fp16 is not supported with parallel 'fsdp' (its gradient scaler is not shard-aware); "
                             "use bf16")
        return self

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases) if self.phases else int(self.steps)
