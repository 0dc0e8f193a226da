"""Token masking: the Mask (and the GroupedMask of per-sample counts), the strategies that draw
one, the ratio schedules they consult, and path drop (a strategy's samples keeping no token)."""

from __future__ import annotations

from maskdit.config.registry import Registry, registry
from maskdit.masking import specs
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask
from maskdit.masking.path_drop import PathDrop, path_dropped
from maskdit.masking.ratio_schedules import ConstantRatio, CosineRatio, SigmaRatio, UniformRatio
from maskdit.masking.specs import build_ratio_schedule
from maskdit.masking.strategies import (
    BlockMasking,
    GridMasking,
    MaskingStrategy,
    NoMasking,
    RandomMasking,
    kept_per_sample,
    num_kept,
)

#: the registered ratio schedules and masking strategies (spec classes; see maskdit.config.registry)
RATIO_SCHEDULES: Registry = registry("ratio")
MASKING: Registry = registry("masking")


def build_masking(spec) -> MaskingStrategy:
    """The strategy a validated masking spec describes."""
    return MASKING.build(spec)


__all__ = [
    "Mask",
    "GroupedMask",
    "MaskingStrategy",
    "RandomMasking",
    "BlockMasking",
    "GridMasking",
    "NoMasking",
    "PathDrop",
    "path_dropped",
    "ConstantRatio",
    "UniformRatio",
    "CosineRatio",
    "SigmaRatio",
    "num_kept",
    "kept_per_sample",
    "MASKING",
    "RATIO_SCHEDULES",
    "build_masking",
    "build_ratio_schedule",
    "specs",
]
