"""A REPA checkpoint's projector as the repa term's training head, so a REPA-trained SiT can be
fine-tuned here with its alignment projector (``load_reference_sit`` loads the network and sets
the projectors aside; this puts one of them back, as ``denoiser.heads['repa']``)."""

from __future__ import annotations

import torch
from torch import nn

from maskdit.config.errors import CheckpointError
from maskdit.interop.sit import RepaProjectors
from maskdit.losses.heads import backbone_of, put_head
from maskdit.losses.repa import RepaLoss, repa_projector


def repa_head(projectors: RepaProjectors, index: int = 0) -> nn.Sequential:
    """Projector ``index`` of a REPA checkpoint (one per encoder REPA aligned to) as a module in
    the layout of :func:`~maskdit.losses.repa.repa_projector`, holding the file's weights."""
    if not 0 <= index < len(projectors.z_dims):
        raise ValueError(f"projector index {index} out of range: the checkpoint has {len(projectors.z_dims)}")
    head = repa_projector(projectors.hidden_size, projectors.projector_dim, projectors.z_dims[index])
    prefix = f"{index}."
    state = {key.removeprefix(prefix): value for key, value in projectors.state.items() if key.startswith(prefix)}
    with torch.no_grad():
        head.load_state_dict(state, strict=True)
    return head


def attach_repa_projectors(denoiser: nn.Module, projectors: RepaProjectors, *, index: int = 0,
                           term: RepaLoss | None = None) -> nn.Module:
    """Give ``denoiser`` (e.g. from ``load_reference_sit``) REPA's projector ``index`` as its
    ``heads['repa']``. With ``term``, check that the term aligns after the block the projector was
    trained on and to an encoder of its output width."""
    backbone = backbone_of(denoiser)
    if projectors.hidden_size != backbone.spec.hidden_size:
        raise CheckpointError(f"the projectors read {projectors.hidden_size}-wide tokens but the model is "
                              f"{backbone.spec.hidden_size} wide")
    head = repa_head(projectors, index)
    if term is not None:
        if term.encoder.width != projectors.z_dims[index]:
            raise ValueError(f"projector {index} maps to {projectors.z_dims[index]} features but the repa term's "
                             f"encoder gives {term.encoder.width}")
        if projectors.encoder_depth is not None and projectors.encoder_depth != term.depth:
            raise ValueError(f"the projectors were trained on the tokens after block {projectors.encoder_depth}, the "
                             f"repa term aligns after block {term.depth}")
        if term.projector_dim != projectors.projector_dim:
            raise ValueError(f"the projectors are {projectors.projector_dim} wide inside, the repa term's "
                             f"projector_dim is {term.projector_dim}")
    put_head(denoiser, RepaLoss.name, head)
    return denoiser
