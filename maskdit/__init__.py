"""maskdit: masked training of diffusion transformers (MaskDiT) as pluggable PyTorch parts."""

from maskdit.masking import (
    MASKING,
    RATIO_SCHEDULES,
    BlockMasking,
    GridMasking,
    Mask,
    NoMasking,
    RandomMasking,
    build_masking,
)
from maskdit.registry import Registry, RegistryError
from maskdit.spec import ExperimentSpec, load_spec

__version__ = "0.1.0"

__all__ = [
    "ExperimentSpec",
    "load_spec",
    "Registry",
    "RegistryError",
    "Mask",
    "RandomMasking",
    "BlockMasking",
    "GridMasking",
    "NoMasking",
    "MASKING",
    "RATIO_SCHEDULES",
    "build_masking",
]
