"""Specs of the masking strategies and of the mask-ratio schedules they consult.

Each spec class is a plugin (``@register("masking")`` / ``@register("ratio")``): its ``build``
makes the strategy (or schedule), and the unions below are derived from the registrations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from maskdit.config.registry import one_of, register
from maskdit.config.spec_model import SpecModel
from maskdit.masking.path_drop import PathDrop
from maskdit.masking.ratio_schedules import ConstantRatio, CosineRatio, SigmaRatio, UniformRatio
from maskdit.masking.strategies import BlockMasking, GridMasking, MaskingStrategy, NoMasking, RandomMasking

#: A mask ratio: the fraction of patch tokens dropped. 1 would leave the encoder nothing.
Ratio = Annotated[float, Field(ge=0.0, lt=1.0, description="fraction of tokens dropped, 0 <= r < 1")]


@register("ratio")
class ConstantRatioSpec(SpecModel):
    name: Literal["constant"] = "constant"
    ratio: Ratio = Field(0.5, description="the mask ratio used at every step")

    @property
    def max_ratio(self) -> float:
        return self.ratio

    def build(self, **context: Any) -> ConstantRatio:
        return ConstantRatio(self.ratio)


@register("ratio")
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

    @property
    def max_ratio(self) -> float:
        return self.high

    def build(self, **context: Any) -> UniformRatio:
        return UniformRatio(self.low, self.high)


@register("ratio")
class CosineRatioSpec(SpecModel):
    """r moves from ``start`` to ``end`` along a half cosine over ``total_steps`` training steps."""

    name: Literal["cosine"] = "cosine"
    start: Ratio = Field(description="ratio at step 0")
    end: Ratio = Field(description="ratio at step total_steps and after")
    total_steps: int = Field(ge=1, description="number of training steps the ramp takes")

    @property
    def max_ratio(self) -> float:
        return max(self.start, self.end)

    def build(self, **context: Any) -> CosineRatio:
        return CosineRatio(self.start, self.end, self.total_steps)


@register("ratio")
class SigmaRatioSpec(SpecModel):
    """Noise-adaptive masking: each sample's r interpolated in log-sigma from r_min (low noise) to
    r_max (high noise); the batch runs as ``groups`` sigma groups, each with its own kept count."""

    name: Literal["sigma"] = "sigma"
    groups: int = Field(4, ge=1, le=4096, description="sigma groups per batch, each with one kept count "
                                                     "(more: closer to each sample's own ratio, more calls)")
    r_min: Ratio = Field(description="ratio at or below sigma_min")
    r_max: Ratio = Field(description="ratio at or above sigma_max")
    sigma_min: float = Field(0.002, gt=0, description="noise level where the ramp starts")
    sigma_max: float = Field(80.0, gt=0, description="noise level where the ramp ends")

    @model_validator(mode="after")
    def _ordered(self) -> SigmaRatioSpec:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self

    @property
    def max_ratio(self) -> float:
        return max(self.r_min, self.r_max)

    def build(self, **context: Any) -> SigmaRatio:
        return SigmaRatio(self.r_min, self.r_max, self.sigma_min, self.sigma_max, groups=self.groups)


#: a registered ratio schedule (a JSON object naming it)
RatioScheduleSpec = one_of("ratio")

#: A plain number is shorthand for a constant ratio; a JSON object is a ratio schedule.
RatioSpec = one_of("ratio", number=Ratio)


def max_ratio(ratio: Any) -> float:
    """The largest ratio a ratio spec can ever produce (used to check a token stays visible)."""
    if isinstance(ratio, (int, float)):
        return float(ratio)
    return float(ratio.max_ratio)


def build_ratio_schedule(ratio: Any):
    """A number means a constant ratio; a schedule spec builds itself."""
    if isinstance(ratio, (int, float)):
        return ConstantRatio(float(ratio))
    return ratio.build()


class MaskingSpecBase(SpecModel):
    """What every built-in masking spec has: ``path_drop``. A masking plugin that subclasses this
    gets it too, by returning ``self.with_path_drop(strategy)`` from its ``build``."""

    path_drop: float = Field(0.0, ge=0.0, le=1.0, description=(
        "SPRINT's path drop: each sample, with this probability, keeps no token, so the model's whole sparse span "
        "is replaced by the routing's fill (needs model.routing.end); trains the weak branch of sampler.path_drop "
        "guidance (SPRINT: 0.1, in fine-tuning too). 0 = off"))

    def with_path_drop(self, strategy: Any) -> Any:
        """``strategy`` wrapped with path drop, or itself when ``path_drop`` is 0 (bit for bit)."""
        return PathDrop(strategy, self.path_drop) if self.path_drop > 0 else strategy


def masking_path_drop(spec: Any) -> float:
    """The path-drop probability of a masking spec (0 for a strategy without the field)."""
    return float(getattr(spec, "path_drop", 0.0) or 0.0)


@register("masking")
class RandomMaskingSpec(MaskingSpecBase):
    """Per-sample uniform random drop, MAE / reference MaskDiT style."""

    name: Literal["random"] = "random"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")

    def build(self, **context: Any) -> MaskingStrategy | PathDrop:
        return self.with_path_drop(RandomMasking(build_ratio_schedule(self.ratio)))


@register("masking")
class BlockMaskingSpec(MaskingSpecBase):
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

    def build(self, **context: Any) -> MaskingStrategy | PathDrop:
        return self.with_path_drop(BlockMasking(build_ratio_schedule(self.ratio), min_block=self.min_block,
                                                max_block=self.max_block, min_aspect=self.min_aspect))


@register("masking")
class GridMaskingSpec(MaskingSpecBase):
    """A regular pattern with a random offset: inside every cell x cell block, tokens are kept in a
    fixed dithering order (e.g. ratio 0.75 with cell 2 keeps one token of every 2x2 cell)."""

    name: Literal["grid"] = "grid"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")
    cell: Literal[2, 4, 8] = Field(2, description="side of the square cell the pattern repeats over")

    def build(self, **context: Any) -> MaskingStrategy | PathDrop:
        return self.with_path_drop(GridMasking(build_ratio_schedule(self.ratio), cell=self.cell))


@register("masking")
class NoMaskingSpec(MaskingSpecBase):
    """Keep every token (plain DiT training, or the unmasking-tuning phase; with ``path_drop``,
    SPRINT's fine-tuning, whose dropped samples keep none)."""

    name: Literal["none"] = "none"

    @property
    def max_ratio(self) -> float:
        return 0.0

    def build(self, **context: Any) -> MaskingStrategy | PathDrop:
        return self.with_path_drop(NoMasking())


#: a registered masking strategy (a JSON object naming it)
MaskingSpec = one_of("masking")


def masking_max_ratio(spec: Any) -> float:
    """The largest ratio a masking spec can drop: its ``max_ratio`` if it has one, else that of
    its ``ratio`` field, else 0 (a strategy without a ratio is assumed to keep every token)."""
    if hasattr(spec, "max_ratio"):
        return float(spec.max_ratio)
    ratio = getattr(spec, "ratio", None)
    return 0.0 if ratio is None else max_ratio(ratio)
