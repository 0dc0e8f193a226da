"""SiT (Ma et al. 2024) and REPA (Yu et al. 2025) checkpoints in and out, as flow-matching denoisers.

Both codes build DiT's network under DiT's module names, which are ours: SiT's layout is DiT's (no
decoder, a label table of num_classes + 1 rows whose last is the null label), so conversion is by
name and the architecture is read off the shapes (:mod:`maskdit.interop.infer`). What differs:

- SiT feeds the network its own time as is, t in [0, 1], t = 1 at the data (x_t = t x + (1 - t) eps),
  and reads the velocity x - eps. Its train.py builds the model with ``learn_sigma`` (2C outputs whose
  second half SiT's forward drops, as our wrapper does).
- REPA's SiT is fed REPA's time (t = 1 at the noise, x_t = (1 - t) x + t eps, velocity eps - x), has
  no learned variance, and holds ``projectors.<k>.{0,2,4}``: MLPs from the tokens after block
  ``encoder_depth`` to each frozen encoder's features, used only by REPA's alignment loss. The loader
  sets them aside (and logs it); :func:`read_repa_projectors` returns them. REPA's ``--legacy``
  checkpoints call the blocks after ``encoder_depth`` ``decoder_blocks.<j>``: renumbered as REPA does.
- Refused, naming the key or argument: qk-norm weights (REPA's ``--qk-norm`` is timm's LayerNorm with
  eps 1e-5, ours has 1e-6), a path other than the linear one (SiT's GVP / VP, REPA's cosine), an
  output other than the velocity (SiT's score / noise).

Files are bare state dicts (SiT's released SiT-XL-2-256x256.pt, REPA's last.pt) or train.py's dicts
``{"model", "ema", "opt", "args"}``, whose ``args`` (an argparse.Namespace, read without running any
code) give the head count (``args.model``, e.g. 'SiT-XL/2'), the path, the output and ``encoder_depth``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from maskdit.config.errors import CheckpointError, listed, printable
from maskdit.core.factory import build_model, wrap
from maskdit.core.flow_denoiser import FlowDenoiser
from maskdit.core.model import MaskDiT
from maskdit.core.presets import MODEL_PRESETS
from maskdit.interop.reference import source_name, spec_from_state
from maskdit.interop.strict import check_keys, check_state, detached_copy, load_strict, non_finite
from maskdit.io.weight_files import Source, StateDict, read_checkpoint, select_state, strip_prefix

log = logging.getLogger(__name__)

Layout = Literal["auto", "sit", "repa"]
PROJECTORS = "projectors."
#: what each code's training args say for a velocity network on the linear interpolant
LINEAR_VELOCITY = MappingProxyType({"sit": (("path_type", "Linear"), ("prediction", "velocity")),
                                    "repa": (("path_type", "linear"), ("prediction", "v"))})
#: every key of SiT's network (REPA's adds projectors.*)
SIT_KEY = re.compile(r"pos_embed|(x_embedder\.proj|t_embedder\.mlp\.[02]|y_embedder\.embedding_table"
                     r"|final_layer\.(linear|adaLN_modulation\.1)"
                     r"|blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12]|adaLN_modulation\.1))\.(weight|bias)")
_DECODER = ("decoder_blocks.", "decoder_layer.", "mask_token", "decoder_pos_embed")


@dataclass(frozen=True)
class RepaProjectors:
    """REPA's projection heads, set aside from the denoiser. Head k: Linear(hidden_size ->
    projector_dim), SiLU, Linear(projector_dim -> projector_dim), SiLU, Linear(projector_dim ->
    z_dims[k]), on every token after block ``encoder_depth`` (None where the file does not say)."""

    state: StateDict  # "<k>.<0|2|4>.<weight|bias>", the keys of REPA's ``projectors`` ModuleList
    z_dims: tuple[int, ...]
    projector_dim: int
    hidden_size: int
    encoder_depth: int | None


def load_reference_sit(src: Source, *, which: str = "ema", layout: Layout = "auto", **overrides: Any) -> FlowDenoiser:
    """A SiT or REPA checkpoint as a :class:`FlowDenoiser` that computes what their code computes.

    ``layout``: 'sit' (SiT's time), 'repa' (REPA's time; projectors set aside) or 'auto': 'repa'
    when the file has ``projectors.*`` keys. ``which`` picks the EMA or raw weights of a training
    checkpoint. ``overrides`` are ModelSpec fields (``num_heads=16`` or ``preset='SiT-XL/2'`` where
    the file's ``args`` do not name the model); the process is the layout's. A file of meta tensors
    gives a model on the meta device (shapes only).
    """
    fixed = [name for name in ("process", "precond", "sigma_data") if name in overrides]
    if fixed:
        raise TypeError(f"load_reference_sit: {', '.join(fixed)} is set by the layout (SiT's or REPA's time): "
                        "pass layout='sit' or layout='repa'")
    if layout not in ("auto", "sit", "repa"):
        raise ValueError(f"layout must be 'auto', 'sit' or 'repa', got {layout!r}")
    source = source_name(src)
    checkpoint = read_checkpoint(src)
    args = checkpoint.get("args")
    state = strip_prefix(select_state(checkpoint, which, source=source), "module.", required=False)
    if layout == "auto":
        layout = "repa" if any(key.startswith(PROJECTORS) for key in state) else "sit"
    _check_args(args, layout, source)
    projectors = None
    if layout == "repa":  # under 'sit' projector keys stay in, and the strict check names them
        state, projectors = _split_projectors(state, _arg(args, "encoder_depth"), source)
        state = _renumber_legacy(state, _arg(args, "encoder_depth"), source)
    qk_norm = sorted(key for key in state if re.search(r"\.attn\.[qk]_norm\.", key))
    if qk_norm:
        raise CheckpointError(f"{source}: {printable(qk_norm[0])}: a qk-norm model (REPA's --qk-norm) normalises with "
                              "timm's LayerNorm, eps 1e-5, ours with eps 1e-6: it would not reproduce REPA's outputs")
    # stray MaskDiT decoder keys are left for the strict check to name, not read as a decoder
    shaped = {key: value for key, value in state.items() if not key.startswith(_DECODER)}
    process = {"name": "flow", "convention": layout, "prediction": "v"}  # each code's network runs in its own time
    base = {"process": process, "label_embedder": "table", "decoder_depth": 0}
    spec = spec_from_state(shaped, {**_heads_from_args(args, overrides), **overrides}, base=base,
                           default_label_embedder="table", source=source)
    if layout == "repa" and spec.learn_sigma:
        raise CheckpointError(f"{source}: final_layer.linear.weight has learned-variance outputs; REPA's SiT has none "
                              "(load a SiT checkpoint with layout='sit')")
    net = build_model(spec, device="meta")
    _load_weights(net, state, source)
    if projectors is not None:
        _check_fit(projectors, spec.hidden_size, spec.depth, source)
        log.info("%s: set aside REPA's %d projector head(s) (z_dims %s, width %d, after block %s); "
                 "read_repa_projectors returns them", source, len(projectors.z_dims), list(projectors.z_dims),
                 projectors.projector_dim, projectors.encoder_depth)
    return wrap(net, spec)


def read_repa_projectors(src: Source, *, which: str = "ema", encoder_depth: int | None = None) -> RepaProjectors:
    """The projector heads of a REPA checkpoint (path or an already read mapping), checked key by key.

    ``encoder_depth`` (the block whose output they read) comes from the file's ``args`` unless given."""
    source = source_name(src)
    checkpoint = read_checkpoint(src)
    state = strip_prefix(select_state(checkpoint, which, source=source), "module.", required=False)
    depth = encoder_depth if encoder_depth is not None else _arg(checkpoint.get("args"), "encoder_depth")
    _, projectors = _split_projectors(state, depth, source)
    if projectors is None:
        raise CheckpointError(f"{source}: no REPA projectors in it (no 'projectors.*' keys)")
    return projectors


def export_reference_sit(denoiser: FlowDenoiser, *, projectors: RepaProjectors | None = None) -> StateDict:
    """The state dict in SiT's layout (our keys, no prefix), independent copies; with ``projectors``,
    REPA's (adds ``projectors.*``; the model must run in REPA's time). :func:`load_reference_sit`
    reads it back bit-exactly (with layout='repa' for a REPA-time model exported without projectors)."""
    if not isinstance(denoiser, FlowDenoiser):
        raise TypeError(f"SiT and REPA networks are velocity fields on the linear interpolant (a FlowDenoiser); got "
                        f"{type(denoiser).__name__} (export an EDM model with export_reference_maskdit, "
                        "a DDPM one with export_reference_dit)")
    spec, state = denoiser.spec, detached_copy(denoiser.net.state_dict())
    stray = [key for key in state if not SIT_KEY.fullmatch(key)]  # a decoder, qk-norm, routing, a plugin's
    problems = [f"keys SiT's network has no place for: {listed(stray)}"] if stray else []
    if denoiser.prediction != "v":
        problems.append(f"prediction {denoiser.prediction!r} (SiT's and REPA's networks predict the velocity)")
    if spec.label_embedder != "table" or not spec.num_classes:
        problems.append(f"label_embedder {spec.label_embedder!r} with {spec.num_classes} classes (SiT's is a "
                        "table with a null row)")
    if denoiser.convention == "repa" and spec.learn_sigma:
        problems.append("learn_sigma on a model in REPA's time (REPA's SiT has no learned variance)")
    if projectors is not None and denoiser.convention != "repa":
        problems.append("REPA projectors on a model in SiT's time (REPA's code runs its network in REPA's time)")
    if projectors is not None and projectors.hidden_size != spec.hidden_size:
        problems.append(f"projectors read width {projectors.hidden_size}, the model has {spec.hidden_size}")
    if problems:
        raise ValueError("SiT's layout cannot express this model: " + "; ".join(problems))
    if projectors is not None:
        state.update({PROJECTORS + key: value for key, value in detached_copy(projectors.state).items()})
    return state


def _load_weights(net: MaskDiT, state: StateDict, source: str) -> None:
    if state and all(value.is_meta for value in state.values()):  # shapes only: the model stays on meta
        check_state(net, state, source=source)
        net.load_state_dict(state, strict=True, assign=True)
    else:
        load_strict(net, state, source=source)


def _arg(args: Any, name: str) -> Any:
    """A training argument from the file's ``args`` (argparse.Namespace or dict), None if absent."""
    return args.get(name) if isinstance(args, Mapping) else getattr(args, name, None)


def _check_args(args: Any, layout: str, source: str) -> None:
    for name, wanted in LINEAR_VELOCITY[layout]:
        value = _arg(args, name)
        if value is not None and value != wanted:
            raise CheckpointError(f"{source}: args.{name} is {printable(repr(value))[:60]}; a {layout.upper()} flow "
                                  f"model here has {name} {wanted!r} (linear interpolant, velocity output)")


def _heads_from_args(args: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """SiT's and REPA's model names ('SiT-XL/2') are our presets': they give the head count."""
    name = _arg(args, "model")
    if "num_heads" in overrides or "preset" in overrides or not isinstance(name, str) or name not in MODEL_PRESETS:
        return {}
    return {"num_heads": MODEL_PRESETS[name]["num_heads"]}


def _split_projectors(state: StateDict, encoder_depth: Any, source: str) -> tuple[StateDict, RepaProjectors | None]:
    """(the network's keys, the projector heads checked key by key) of a REPA state dict."""
    found = {key: value for key, value in state.items() if key.startswith(PROJECTORS)}
    if not found:
        return state, None
    rest = {key: value for key, value in state.items() if not key.startswith(PROJECTORS)}
    first = found.get(PROJECTORS + "0.0.weight")
    if first is None or first.ndim != 2:
        raise CheckpointError(f"{source}: projectors.0.0.weight is missing or not a matrix: cannot read the width")
    width, hidden = first.shape
    indices = {int(m.group(1)) for key in found if (m := re.match(r"projectors\.(\d+)\.", key))}
    count = max(indices, default=0) + 1  # keys off this pattern are named as unexpected below
    expected, z_dims = {}, []
    for k in range(count):
        head = f"{PROJECTORS}{k}."
        last = found.get(head + "4.weight")
        if last is None or last.ndim != 2:
            raise CheckpointError(f"{source}: {head}4.weight is missing or not a matrix: cannot read head {k}'s "
                                  "feature width")
        z_dims.append(last.shape[0])
        expected.update({head + "0.weight": (width, hidden), head + "0.bias": (width,),
                         head + "2.weight": (width, width), head + "2.bias": (width,),
                         head + "4.weight": (last.shape[0], width), head + "4.bias": (last.shape[0],)})
    check_keys(expected, found, source=f"{source} (REPA projectors)")
    bad = non_finite(found)
    if bad:
        raise CheckpointError(f"{source}: non-finite weights (NaN or inf) in {listed(bad, limit=5)}")
    if encoder_depth is not None and (isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int)
                                      or encoder_depth < 1):
        raise CheckpointError(f"{source}: args.encoder_depth must be a block count >= 1, got "
                              f"{printable(repr(encoder_depth))[:60]}")
    heads = {key[len(PROJECTORS):]: value for key, value in found.items()}
    return rest, RepaProjectors(heads, tuple(z_dims), width, hidden, encoder_depth)


def _check_fit(projectors: RepaProjectors, hidden: int, depth: int, source: str) -> None:
    if projectors.hidden_size != hidden:
        raise CheckpointError(f"{source}: projectors.0.0.weight reads width {projectors.hidden_size}; "
                              f"the network's is {hidden}")
    if projectors.encoder_depth is not None and projectors.encoder_depth > depth:
        raise CheckpointError(f"{source}: args.encoder_depth {projectors.encoder_depth} exceeds the {depth} blocks")


def _renumber_legacy(state: StateDict, encoder_depth: Any, source: str) -> StateDict:
    """REPA's --legacy layout: ``decoder_blocks.<j>`` is block ``j + encoder_depth``."""
    legacy = [key for key in state if key.startswith("decoder_blocks.")]
    if not legacy:
        return state
    first = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    if encoder_depth is not None and encoder_depth != first:
        raise CheckpointError(f"{source}: REPA's legacy layout with {first} blocks.* before decoder_blocks.*, "
                              f"but args.encoder_depth is {printable(repr(encoder_depth))[:60]}")
    out = {key: value for key, value in state.items() if not key.startswith("decoder_blocks.")}
    for key in legacy:
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            raise CheckpointError(f"{source}: unexpected key {printable(key)} (REPA's legacy decoder_blocks.<j>.*)")
        out[f"blocks.{int(parts[1]) + first}.{parts[2]}"] = state[key]
    return out
