"""Training objective: loss terms (dsm with EDM / velocity / eps weighting, mae, velocity_cosine, repa), noise-level distributions, label dropout, composition.

``build_objective(spec.losses, masking=..., patch_size=..., num_classes=...)`` turns the spec's
losses section into an ``Objective``; ``maskdit_objective()`` is the paper's (DSM + 0.1 MAE,
lognormal sigma, random masking at r = 0.5, 10% label dropout).
"""

from __future__ import annotations

from typing import Any

from maskdit.config.registry import Registry, registry
from maskdit.losses import specs
from maskdit.losses.dsm import WEIGHTINGS, DSMLoss, edm_weight, eps_weight, velocity_weight
from maskdit.losses.heads import attach_heads, split_heads, training_heads
from maskdit.losses.inputs import LossInputs
from maskdit.losses.label_dropout import drop_labels
from maskdit.losses.mae import MAELoss
from maskdit.losses.objective import LossTerm, Objective, ObjectiveOutput, WeightedTerm
from maskdit.losses.patches import infer_patch_size, patchify, pool_to_tokens
from maskdit.losses.repa import RepaLoss, repa_projector
from maskdit.losses.velocity_cosine import VelocityCosineLoss
from maskdit.masking import build_masking
from maskdit.masking.specs import RandomMaskingSpec
from maskdit.processes.noise import DDPMNoise, LogNormalNoise, LogUniformNoise

#: the registered loss terms: spec.build() -> term(LossInputs) -> [B]
LOSS_TERMS: Registry = registry("loss")

#: the registered noise distributions: spec.build() -> dist(batch_size, *, generator, device, dtype) -> sigma [B]
NOISE_DISTRIBUTIONS: Registry = registry("noise")


def build_noise(spec: specs.NoiseSpec):
    return NOISE_DISTRIBUTIONS.build(spec)


def build_objective(
    spec: specs.LossesSpec,
    *,
    masking: Any = None,
    patch_size: int | None = None,
    num_classes: int | None = None,
    loss_tokens: str = "visible",
    model_depth: int | None = None,
) -> Objective:
    """The Objective of a losses section. ``masking``: a masking strategy, a masking spec, or None
    (no masking); ``patch_size``: the model's (needed to draw masks); ``num_classes``: the
    model's (the null label for label dropout; 0 = unconditional); ``loss_tokens``: what a dsm
    term without its own ``tokens`` covers (the model's ``routing.loss_tokens``)."""
    if masking is not None and not callable(masking):
        masking = build_masking(masking)
    terms = [WeightedTerm(term.name, getattr(term, "weight", 1.0), LOSS_TERMS.build(term, loss_tokens=loss_tokens,
                                                                                   model_depth=model_depth))
             for term in spec.terms]
    dropout = spec.label_dropout if num_classes != 0 else 0.0  # unconditional: nothing to drop
    # None: patch_size / num_classes come from the denoiser at each call (see Objective)
    return Objective(terms, build_noise(spec.noise), masking=masking, patch_size=patch_size,
                     label_dropout=dropout, num_classes=num_classes)


def maskdit_objective(
    *,
    mask_ratio: float = 0.5,
    patch_size: int | None = None,
    num_classes: int | None = None,
    dsm_weight: float = 1.0,
    mae_weight: float = 0.1,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    label_dropout: float = 0.1,
) -> Objective:
    """MaskDiT's objective (Zheng et al. 2024, sec. 3.2, eq. 4): dsm_weight * DSM over visible
    tokens + mae_weight * MAE over masked patches, ln(sigma) ~ N(p_mean, p_std^2) (EDM, Karras et
    al. 2022, sec. 5), random masking at ``mask_ratio``, label dropout (classifier-free guidance,
    Ho & Salimans 2022). Every argument is an override of the paper's value; values are validated
    as a spec would be. ``patch_size`` and ``num_classes`` default to the denoiser's, read when the
    objective is called; given, they must match it (as must ``sigma_data``)."""
    losses = specs.LossesSpec(
        terms=(specs.DSMSpec(weight=dsm_weight, sigma_data=sigma_data), specs.MAESpec(weight=mae_weight)),
        noise=specs.LognormalNoiseSpec(p_mean=p_mean, p_std=p_std),
        label_dropout=label_dropout,
    )
    return build_objective(losses, masking=RandomMaskingSpec(ratio=mask_ratio), patch_size=patch_size,
                           num_classes=num_classes)


__all__ = [
    "DDPMNoise",
    "DSMLoss",
    "LOSS_TERMS",
    "LogNormalNoise",
    "LogUniformNoise",
    "LossInputs",
    "LossTerm",
    "MAELoss",
    "NOISE_DISTRIBUTIONS",
    "Objective",
    "ObjectiveOutput",
    "WeightedTerm",
    "RepaLoss",
    "repa_projector",
    "attach_heads",
    "split_heads",
    "training_heads",
    "build_noise",
    "build_objective",
    "drop_labels",
    "edm_weight",
    "eps_weight",
    "velocity_weight",
    "VelocityCosineLoss",
    "WEIGHTINGS",
    "infer_patch_size",
    "maskdit_objective",
    "patchify",
    "pool_to_tokens",
    "specs",
]
