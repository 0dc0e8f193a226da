"""Checkpoints in and out: reference MaskDiT / DiT / SiT / REPA layouts and our native safetensors + JSON format."""

from __future__ import annotations

from maskdit.config.errors import CheckpointError
from maskdit.interop.infer import infer_architecture
from maskdit.interop.native import load_native, read_native_spec, save_native
from maskdit.interop.reference import (
    export_reference_dit,
    export_reference_maskdit,
    load_reference_dit,
    load_reference_maskdit,
)
from maskdit.interop.sit import RepaProjectors, export_reference_sit, load_reference_sit, read_repa_projectors
from maskdit.interop.strict import check_state, load_strict
from maskdit.io.weight_files import read_checkpoint

__all__ = [
    "CheckpointError",
    "load_reference_maskdit",
    "load_reference_dit",
    "export_reference_maskdit",
    "export_reference_dit",
    "load_reference_sit",
    "export_reference_sit",
    "read_repa_projectors",
    "RepaProjectors",
    "save_native",
    "load_native",
    "read_native_spec",
    "read_checkpoint",
    "infer_architecture",
    "check_state",
    "load_strict",
]
