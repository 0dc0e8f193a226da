"""Build the backbone and its preconditioning wrapper from a ModelSpec, through the registries."""

from __future__ import annotations

import torch

from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.model import MaskDiT
from maskdit.core.registries import BLOCKS, LABEL_EMBEDDERS
from maskdit.core.specs import ModelSpec


def build_model(
    spec: ModelSpec,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> MaskDiT:
    """The backbone named by ``spec`` (block and label-embedder plugins looked up by name).

    Initial weights come from ``generator`` only; without one a fixed seed (0) is used, so two
    builds of the same spec are identical. ``device='meta'`` allocates nothing.
    """
    if generator is None and torch.device("cpu" if device is None else device).type != "meta":
        generator = torch.Generator(device="cpu").manual_seed(0)
    label_embedder = LABEL_EMBEDDERS.build(spec.label_embedder)
    return MaskDiT(spec, block=BLOCKS.build(spec.block), label_embedder=label_embedder, device=device, generator=generator)


def build_denoiser(
    spec: ModelSpec,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Denoiser | DDPMDenoiser:
    """Backbone + preconditioning: EDM's (``precond='edm'``) or DDPM epsilon-prediction (``'ddpm'``)."""
    net = build_model(spec, device=device, generator=generator)
    return wrap(net, spec)


def wrap(net: MaskDiT, spec: ModelSpec) -> Denoiser | DDPMDenoiser:
    """The preconditioning wrapper that ``spec.precond`` names around an existing backbone."""
    if spec.precond == "edm":
        return Denoiser(net, spec)
    return DDPMDenoiser(net, spec).to(next(net.parameters()).device)
