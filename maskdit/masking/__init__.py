"""Token masking: the Mask, the strategies that draw one, and the ratio schedules they consult."""

from __future__ import annotations

from maskdit.masking import specs
from maskdit.masking.mask import Mask
from maskdit.masking.schedules import ConstantRatio, CosineRatio, SigmaRatio, UniformRatio
from maskdit.masking.strategies import (
    BlockMasking,
    GridMasking,
    MaskingStrategy,
    NoMasking,
    RandomMasking,
    num_kept,
)
from maskdit.registry import Registry

RATIO_SCHEDULES: Registry = Registry("mask-ratio schedule")
RATIO_SCHEDULES.register("constant", ConstantRatio.from_spec)
RATIO_SCHEDULES.register("uniform", UniformRatio.from_spec)
RATIO_SCHEDULES.register("cosine", CosineRatio.from_spec)
RATIO_SCHEDULES.register("sigma", SigmaRatio.from_spec)


def build_ratio_schedule(ratio: specs.RatioSpec):
    """A number means a constant ratio; a schedule spec is built through the registry."""
    if isinstance(ratio, (int, float)):
        return ConstantRatio(float(ratio))
    return RATIO_SCHEDULES.build(ratio)


MASKING: Registry[MaskingStrategy] = Registry("masking strategy")
MASKING.register("random", lambda spec: RandomMasking(build_ratio_schedule(spec.ratio)))
MASKING.register(
    "block",
    lambda spec: BlockMasking(
        build_ratio_schedule(spec.ratio), min_block=spec.min_block, max_block=spec.max_block, min_aspect=spec.min_aspect
    ),
)
MASKING.register("grid", lambda spec: GridMasking(build_ratio_schedule(spec.ratio), cell=spec.cell))
MASKING.register("none", lambda spec: NoMasking())


def build_masking(spec: specs.MaskingSpec) -> MaskingStrategy:
    return MASKING.build(spec)


__all__ = [
    "Mask",
    "MaskingStrategy",
    "RandomMasking",
    "BlockMasking",
    "GridMasking",
    "NoMasking",
    "ConstantRatio",
    "UniformRatio",
    "CosineRatio",
    "SigmaRatio",
    "num_kept",
    "MASKING",
    "RATIO_SCHEDULES",
    "build_masking",
    "build_ratio_schedule",
    "specs",
]
