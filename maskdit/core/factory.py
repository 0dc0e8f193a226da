"""Build the backbone and its preconditioning wrapper from a ModelSpec, through the registries.

Initial weights are seeded explicitly: from the ``generator`` given, else from ``seed`` (default
0). The global RNG (``torch.manual_seed``) is never read, so a build is the same wherever it runs.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch

from maskdit.config.spec_model import SEED_MAX
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.flow_denoiser import FlowDenoiser
from maskdit.core.model import MaskDiT
from maskdit.core.registries import BLOCKS, LABEL_EMBEDDERS
from maskdit.core.specs import ModelSpec


def build_model(
    spec: ModelSpec | Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> MaskDiT:
    """The backbone named by ``spec`` (a ModelSpec, or a dict of its fields, validated).

    Initial weights come from ``generator``, else from a CPU generator seeded with ``seed``
    (default 0), so two builds of the same spec are identical; ``torch.manual_seed`` has no
    effect. ``device='meta'`` allocates nothing. Block and label-embedder plugins are looked up
    by name, and every parameter and buffer they leave unwritten is an error naming it.
    """
    spec = model_spec(spec)
    if generator is not None and seed is not None:
        raise ValueError("pass generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator is None and torch.device("cpu" if device is None else device).type != "meta":
        generator = torch.Generator(device="cpu").manual_seed(_checked_seed(seed))
    label_embedder = LABEL_EMBEDDERS.build(spec.label_embedder)
    return MaskDiT(spec, block=BLOCKS.build(spec.block), label_embedder=label_embedder, device=device, generator=generator)


def build_denoiser(
    spec: ModelSpec | Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Denoiser | DDPMDenoiser | FlowDenoiser:
    """Backbone + the wrapper of ``spec.process``: EDM preconditioning, DDPM epsilon, or flow matching.

    ``spec``: a ModelSpec or a dict of its fields. Initial weights come from ``generator``, else
    from ``seed`` (default 0); the global RNG is not used (see :func:`build_model`)."""
    spec = model_spec(spec)
    net = build_model(spec, device=device, generator=generator, seed=seed)
    return wrap(net, spec)


def model_spec(spec: Any) -> ModelSpec:
    """``spec`` as a ModelSpec: a dict is validated into one (pydantic's ValidationError names the
    field); anything else is a TypeError."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Mapping):
        return ModelSpec.model_validate(dict(spec))
    raise TypeError(f"expected a ModelSpec (or a dict of its fields), got {type(spec).__name__}")


def _checked_seed(seed: int | None) -> int:
    if seed is None:
        return 0
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an int in 0..{SEED_MAX} (torch's generators keep 32 bits), got {seed!r}")
    return int(seed)


def wrap(net: MaskDiT, spec: ModelSpec) -> Denoiser | DDPMDenoiser | FlowDenoiser:
    """The wrapper that ``spec.process`` builds around an existing backbone (EDM preconditioning,
    DDPM epsilon, flow matching, or a process plugin's own)."""
    return spec.process.build(net=net, spec=spec)
