"""maskdit: masked training of diffusion transformers (MaskDiT) as pluggable PyTorch parts.

The most used building blocks are re-exported here; each subpackage has the full set.
"""

import importlib
from typing import TYPE_CHECKING, Any

from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, load_spec, read_spec, validate_spec
from maskdit.app.run_loading import load_run, open_run
from maskdit.config.errors import InputError
from maskdit.config.registry import Registry, RegistryError
from maskdit.core import (
    DDPMDenoiser,
    Denoiser,
    MaskDiT,
    build_denoiser,
    build_model,
    count_parameters,
    flops_per_forward,
)
from maskdit.encoders import ENCODERS, FrozenEncoder, build_encoder
from maskdit.interop import (
    export_reference_dit,
    export_reference_maskdit,
    export_reference_sit,
    load_native,
    load_reference_dit,
    load_reference_maskdit,
    load_reference_sit,
    save_native,
)
from maskdit.losses import Objective, build_objective, maskdit_objective
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
from maskdit.samplers import (
    build_sampler,
    cfg,
    get_sigmas_karras,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)
from maskdit.train import posthoc_ema

if TYPE_CHECKING:  # static analysers and IDEs see the real name
    from maskdit.app.evaluation import evaluate_denoiser

__version__ = "0.1.0"

# names imported on first use (PEP 562): their modules pull in scipy, matplotlib and torchvision
_LAZY = {"evaluate_denoiser": "maskdit.app.evaluation"}

__all__ = [
    "Experiment",
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
    "MaskDiT",
    "Denoiser",
    "DDPMDenoiser",
    "build_model",
    "build_denoiser",
    "count_parameters",
    "flops_per_forward",
    "load_reference_maskdit",
    "load_reference_dit",
    "export_reference_maskdit",
    "export_reference_dit",
    "load_reference_sit",
    "export_reference_sit",
    "save_native",
    "load_native",
    "maskdit_objective",
    "build_objective",
    "Objective",
    "load_run",
    "build_sampler",
    "cfg",
    "get_sigmas_karras",
    "sample_euler",
    "sample_heun",
    "sample_ddpm",
    "sample_ddim",
    "sample_dpmpp_2m",
    "read_spec",
    "validate_spec",
    "open_run",
    "evaluate_denoiser",
    "InputError",
    "posthoc_ema",
    "ENCODERS",
    "FrozenEncoder",
    "build_encoder",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskdit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
