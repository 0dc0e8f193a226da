"""The train section: optimisation, EMA, checkpointing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maskdit.spec_base import SpecModel


class TrainSpec(SpecModel):
    steps: int = Field(1000, ge=0, description="optimizer steps")
    batch_size: int = Field(64, ge=1, le=65536, description="global batch size")
    lr: float = Field(1e-4, gt=0, le=1, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    ema_decay: float = Field(0.9999, ge=0, lt=1, description="EMA decay per step")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast precision")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="torch device")
    log_every: int = Field(50, ge=1, description="steps between metric lines")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
