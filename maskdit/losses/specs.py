"""The losses section: weighted loss terms and the noise-level distribution they train on."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from maskdit.spec_base import SpecModel


class DSMSpec(SpecModel):
    """EDM denoising score matching, averaged over visible tokens."""

    name: Literal["dsm"] = "dsm"
    weight: float = Field(1.0, ge=0, description="weight of this term in the total")


class MAESpec(SpecModel):
    """MAE reconstruction of the masked patches (normalised noisy-input targets)."""

    name: Literal["mae"] = "mae"
    weight: float = Field(0.1, ge=0, description="weight of this term in the total (paper: 0.1)")


LossTermSpec = Annotated[Union[DSMSpec, MAESpec], Field(discriminator="name")]


class LognormalNoiseSpec(SpecModel):
    """ln(sigma) ~ N(p_mean, p_std^2), EDM's training distribution."""

    name: Literal["lognormal"] = "lognormal"
    p_mean: float = Field(-1.2, ge=-20, le=20, description="mean of ln(sigma)")
    p_std: float = Field(1.2, gt=0, le=20, description="standard deviation of ln(sigma)")


NoiseSpec = Annotated[Union[LognormalNoiseSpec], Field(discriminator="name")]


class LossesSpec(SpecModel):
    terms: tuple[LossTermSpec, ...] = Field(
        (DSMSpec(), MAESpec()), min_length=1, description="loss terms, summed with their weights"
    )
    noise: NoiseSpec = Field(LognormalNoiseSpec(), description="distribution of training noise levels")
    label_dropout: float = Field(0.1, ge=0, le=1, description="probability a label is replaced by null (for CFG)")

    @model_validator(mode="after")
    def _unique_terms(self) -> LossesSpec:
        names = [term.name for term in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"each loss term may appear once, got {names}")
        return self
