"""The network: embeddings, adaLN-Zero blocks, the MaskDiT encoder-decoder, preconditioning, FLOPs.

Plugins (blocks, label embedders) are registered in :mod:`maskdit.core.registries`.
"""

from __future__ import annotations

from maskdit.core.blocks import Attention, DiTBlock, Mlp
from maskdit.core.compiled import compile_blocks
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.embeddings import PatchEmbed, TimestepEmbedder, sincos_2d
from maskdit.core.factory import build_denoiser, build_model, wrap
from maskdit.core.flow_denoiser import FlowDenoiser
from maskdit.core.flops import FlopBreakdown, flops_per_forward, forward_breakdown, sampling_flops, training_flops
from maskdit.core.init_check import UninitializedWeightsError
from maskdit.core.label_embedders import OneHotLabelEmbedder, TableLabelEmbedder
from maskdit.core.layers import DecoderEntry, FinalLayer
from maskdit.core.model import MaskDiT
from maskdit.core.params import count_parameters
from maskdit.core.presets import MODEL_PRESETS
from maskdit.core.registries import BLOCKS, LABEL_EMBEDDERS
from maskdit.core.specs import ModelSpec

__all__ = [
    "MaskDiT",
    "Denoiser",
    "DDPMDenoiser",
    "FlowDenoiser",
    "ModelSpec",
    "MODEL_PRESETS",
    "BLOCKS",
    "LABEL_EMBEDDERS",
    "build_model",
    "build_denoiser",
    "wrap",
    "compile_blocks",
    "count_parameters",
    "flops_per_forward",
    "forward_breakdown",
    "training_flops",
    "sampling_flops",
    "FlopBreakdown",
    "DiTBlock",
    "Attention",
    "Mlp",
    "PatchEmbed",
    "TimestepEmbedder",
    "TableLabelEmbedder",
    "OneHotLabelEmbedder",
    "DecoderEntry",
    "FinalLayer",
    "sincos_2d",
    "UninitializedWeightsError",
]
