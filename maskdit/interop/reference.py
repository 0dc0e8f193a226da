"""Reference MaskDiT (Anima-Lab/MaskDiT) and DiT (facebookresearch/DiT) checkpoints in and out.

Our module names mirror theirs, so conversion is a key-prefix mapping: reference MaskDiT keys
are ``model.<ours>`` (its EDM wrapper), DiT keys are ``<ours>``. Loaders infer the architecture
from the shapes (see :mod:`maskdit.interop.infer`); head counts come from ``num_heads`` /
``decoder_num_heads`` or a ``preset`` name. Exports round-trip bit-exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from maskdit.config.errors import CheckpointError
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.factory import build_model, wrap
from maskdit.core.specs import ModelSpec
from maskdit.interop.infer import infer_architecture
from maskdit.interop.strict import detached_copy, load_strict
from maskdit.io.weight_files import Source, StateDict, read_checkpoint, select_state, strip_prefix

MASKDIT_PREFIX = "model."


def load_reference_maskdit(src: Source, *, which: str = "ema", **overrides: Any) -> Denoiser:
    """A reference MaskDiT checkpoint (dict with ``model``/``ema``/``opt``/``args``, keys ``model.*``,
    or a bare state dict) as an EDM :class:`Denoiser` with output-identical behaviour.

    ``which`` picks the EMA (sampling) or raw weights; ``overrides`` are ModelSpec fields, e.g.
    ``num_heads=6, decoder_num_heads=16`` or ``preset='MaskDiT-S/2'``, ``sigma_data=0.5``.
    """
    source = source_name(src)
    state = select_state(read_checkpoint(src), which, source=source)
    state = strip_prefix(strip_prefix(state, "module.", required=False), MASKDIT_PREFIX, required=False)
    return _load(state, overrides, precond="edm", default_label_embedder="onehot", source=source)


def load_reference_dit(src: Source, *, which: str = "ema", **overrides: Any) -> DDPMDenoiser:
    """A DiT checkpoint (bare state dict, or dict with ``model``/``ema``) as a :class:`DDPMDenoiser`:
    its epsilon prediction on DDPM timesteps seen as a sigma-space denoiser for our samplers."""
    source = source_name(src)
    state = select_state(read_checkpoint(src), which, source=source)
    state = strip_prefix(state, "module.", required=False)
    return _load(state, overrides, precond="ddpm", default_label_embedder="table", source=source)


def export_reference_maskdit(denoiser: Denoiser) -> StateDict:
    """The state dict in the reference MaskDiT layout (``model.`` + our keys), independent copies."""
    if not isinstance(denoiser, Denoiser):
        raise TypeError(f"the reference MaskDiT is EDM-preconditioned; got {type(denoiser).__name__}")
    _check_exportable(denoiser.spec, "MaskDiT")
    return {MASKDIT_PREFIX + key: value for key, value in detached_copy(denoiser.net.state_dict()).items()}


def export_reference_dit(denoiser: DDPMDenoiser) -> StateDict:
    """The state dict in DiT's layout (our keys, no prefix), independent copies."""
    if not isinstance(denoiser, DDPMDenoiser):
        raise TypeError(
            f"DiT networks predict epsilon on DDPM timesteps; got {type(denoiser).__name__} "
            "(export an EDM model with export_reference_maskdit)"
        )
    spec = denoiser.spec
    _check_exportable(spec, "DiT")
    if spec.decoder_depth or spec.label_embedder != "table" or spec.num_classes == 0:
        raise ValueError(
            "DiT's layout has no decoder and a label table with a null row: need decoder_depth=0, "
            f"label_embedder='table', num_classes>0 (got {spec.decoder_depth}, {spec.label_embedder!r}, "
            f"{spec.num_classes})"
        )
    return detached_copy(denoiser.net.state_dict())


def _check_exportable(spec: ModelSpec, layout: str) -> None:
    if spec.qk_norm:
        raise ValueError(f"the reference {layout} code has no qk_norm; this model's q_norm/k_norm cannot be exported")


def _load(state: StateDict, overrides: dict[str, Any], *, precond: str, default_label_embedder: str, source: str):
    spec = spec_from_state(state, overrides, base={"precond": precond},
                           default_label_embedder=default_label_embedder, source=source)
    net = build_model(spec, device="meta")
    load_strict(net, state, source=source)
    return wrap(net, spec)


def spec_from_state(state: StateDict, overrides: Mapping[str, Any], *, base: Mapping[str, Any],
                    default_label_embedder: str, source: str) -> ModelSpec:
    """The ModelSpec of a reference-layout ``state``: inferred fields, then ``base`` (the format's own
    settings), then the caller's ``overrides``; head counts must come from ``overrides``."""
    fields = infer_architecture(
        state, default_label_embedder=overrides.get("label_embedder", default_label_embedder), source=source
    )
    needed = ["num_heads"] + (["decoder_num_heads"] if fields["decoder_depth"] else [])
    missing = [name for name in needed if name not in overrides and "preset" not in overrides]
    if missing:
        width = {"num_heads": fields["hidden_size"], "decoder_num_heads": fields.get("decoder_hidden_size")}
        hints = ", ".join(f"{name}=... (width {width[name]})" for name in missing)
        raise CheckpointError(
            f"{source}: head counts are not stored in the weights; pass {hints} or preset='<name>' "
            "(e.g. preset='MaskDiT-S/2')"
        )
    try:
        return ModelSpec(**{**fields, **base, **overrides})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in err.errors())
        raise CheckpointError(f"{source}: the inferred architecture is invalid: {problems}") from None


def source_name(src: Source) -> str:
    """How errors name ``src``: its path, or "in-memory checkpoint"."""
    return "in-memory checkpoint" if isinstance(src, Mapping) else str(src)
