"""Specs of the masking strategies and of the mask-ratio schedules they consult."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from maskdit.spec_base import SpecModel

#: A mask ratio: the fraction of patch tokens dropped. 1 would leave the encoder nothing.
Ratio = Annotated[float, Field(ge=0.0, lt=1.0, description="fraction of tokens dropped, 0 <= r < 1")]


class ConstantRatioSpec(SpecModel):
    name: Literal["constant"] = "constant"
    ratio: Ratio = Field(0.5, description="the mask ratio used at every step")


class UniformRatioSpec(SpecModel):
    """r drawn once per batch from U[low, high] (MDT-style)."""

    name: Literal["uniform"] = "uniform"
    low: Ratio = Field(description="smallest ratio drawn")
    high: Ratio = Field(description="largest ratio drawn")

    @model_validator(mode="after")
    def _ordered(self) -> UniformRatioSpec:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class CosineRatioSpec(SpecModel):
    """r moves from ``start`` to ``end`` along a half cosine over ``total_steps`` training steps."""

    name: Literal["cosine"] = "cosine"
    start: Ratio = Field(description="ratio at step 0")
    end: Ratio = Field(description="ratio at step total_steps and after")
    total_steps: int = Field(ge=1, description="number of training steps the ramp takes")


class SigmaRatioSpec(SpecModel):
    """Noise-adaptive masking: r interpolated in log-sigma from r_min (low noise) to r_max (high noise)."""

    name: Literal["sigma"] = "sigma"
    r_min: Ratio = Field(description="ratio at or below sigma_min")
    r_max: Ratio = Field(description="ratio at or above sigma_max")
    sigma_min: float = Field(0.002, gt=0, description="noise level where the ramp starts")
    sigma_max: float = Field(80.0, gt=0, description="noise level where the ramp ends")

    @model_validator(mode="after")
    def _ordered(self) -> SigmaRatioSpec:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


RatioScheduleSpec = Annotated[
    Union[ConstantRatioSpec, UniformRatioSpec, CosineRatioSpec, SigmaRatioSpec],
    Field(discriminator="name"),
]


def _ratio_kind(value: Any) -> str | None:
    """'number' for a plain ratio, else the schedule's name (so errors name one alternative only)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    if isinstance(value, dict):
        return value.get("name")
    return getattr(value, "name", None)


#: A plain number is shorthand for a constant ratio; a JSON object is a ratio schedule.
RatioSpec = Annotated[
    Union[
        Annotated[Ratio, Tag("number")],
        Annotated[ConstantRatioSpec, Tag("constant")],
        Annotated[UniformRatioSpec, Tag("uniform")],
        Annotated[CosineRatioSpec, Tag("cosine")],
        Annotated[SigmaRatioSpec, Tag("sigma")],
    ],
    Discriminator(_ratio_kind),
]


def max_ratio(ratio: RatioSpec) -> float:
    """The largest ratio a ratio spec can ever produce (used to check a token stays visible)."""
    if isinstance(ratio, (int, float)):
        return float(ratio)
    if isinstance(ratio, ConstantRatioSpec):
        return ratio.ratio
    if isinstance(ratio, UniformRatioSpec):
        return ratio.high
    if isinstance(ratio, CosineRatioSpec):
        return max(ratio.start, ratio.end)
    return max(ratio.r_min, ratio.r_max)


class RandomMaskingSpec(SpecModel):
    """Per-sample uniform random drop, MAE / reference MaskDiT style."""

    name: Literal["random"] = "random"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")


class BlockMaskingSpec(SpecModel):
    """BEiT-style: random rectangles of tokens are dropped until the exact count is reached."""

    name: Literal["block"] = "block"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")
    min_block: int = Field(4, ge=1, description="smallest rectangle area tried, in tokens")
    max_block: int | None = Field(None, ge=1, description="largest rectangle area tried (None: no cap)")
    min_aspect: float = Field(0.3, gt=0, le=1, description="rectangles have aspect in [min_aspect, 1/min_aspect]")

    @model_validator(mode="after")
    def _ordered(self) -> BlockMaskingSpec:
        if self.max_block is not None and self.max_block < self.min_block:
            raise ValueError(f"max_block ({self.max_block}) must be >= min_block ({self.min_block})")
        return self


class GridMaskingSpec(SpecModel):
    """A regular pattern with a random offset: inside every cell x cell block, tokens are kept in a
    fixed dithering order (e.g. ratio 0.75 with cell 2 keeps one token of every 2x2 cell)."""

    name: Literal["grid"] = "grid"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")
    cell: Literal[2, 4, 8] = Field(2, description="side of the square cell the pattern repeats over")


class NoMaskingSpec(SpecModel):
    """Keep every token (plain DiT training, or the unmasking-tuning phase)."""

    name: Literal["none"] = "none"


MaskingSpec = Annotated[
    Union[RandomMaskingSpec, BlockMaskingSpec, GridMaskingSpec, NoMaskingSpec],
    Field(discriminator="name"),
]


def masking_max_ratio(spec: RandomMaskingSpec | BlockMaskingSpec | GridMaskingSpec | NoMaskingSpec) -> float:
    return 0.0 if isinstance(spec, NoMaskingSpec) else max_ratio(spec.ratio)
