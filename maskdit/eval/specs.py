"""The eval section: how many samples, which metrics, how often."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maskdit.spec_base import SpecModel


class EvalSpec(SpecModel):
    num_samples: int = Field(1000, ge=0, description="samples drawn per evaluation (0 = no evaluation)")
    batch_size: int = Field(100, ge=1, description="samples per sampling batch")
    every: int | None = Field(None, ge=1, description="steps between evaluations during training (None: at the end)")
    metrics: tuple[Literal["fid", "class_accuracy", "precision_recall"], ...] = Field(
        ("fid", "class_accuracy"), description="metrics to compute"
    )
