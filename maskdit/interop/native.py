"""Our own format: the backbone's tensors in safetensors plus a JSON sidecar holding the ModelSpec.

``model.safetensors`` + ``model.json``; the spec (including the preconditioning) is enough to
rebuild the Denoiser, so no code is ever pickled. The training engine builds its checkpoints
(optimiser, step, RNG states) on top of these two functions.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError, listed, printable
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.factory import build_model, wrap
from maskdit.core.specs import ModelSpec
from maskdit.interop.strict import detached_copy, load_strict, non_finite

FORMAT = "maskdit-native"
VERSION = 1


def native_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, sidecar) for ``path``; a missing suffix becomes ``.safetensors``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    return path, path.with_suffix(".json")


def save_native(denoiser: Denoiser | DDPMDenoiser, path: str | Path) -> Path:
    """Write the backbone's weights and spec; returns the ``.safetensors`` path. Weights holding NaN
    or inf are refused, naming them (they would only be refused again when loaded)."""
    tensors, sidecar = native_paths(path)
    state = detached_copy(denoiser.net.state_dict())
    bad = non_finite(state)
    if bad:
        raise CheckpointError(f"{printable(tensors)}: not written: non-finite weights (NaN or inf) in "
                              f"{listed(bad, limit=5)}")
    tensors.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tensors), metadata={"format": FORMAT})
    sidecar.write_text(
        json.dumps({"format": FORMAT, "version": VERSION, "model": denoiser.spec.model_dump(mode="json")}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    return tensors


def read_native_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored next to a native checkpoint."""
    _, sidecar = native_paths(path)
    try:
        document = jsonio.load_file(sidecar, max_bytes=jsonio.SPEC_MAX_BYTES)
    except OSError as err:
        raise CheckpointError(f"{sidecar}: cannot read the spec sidecar: {err.strerror or err}") from None
    except jsonio.JSONInputError as err:
        raise CheckpointError(f"{err} (the spec sidecar)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "model" not in document:
        raise CheckpointError(f"{sidecar}: not a {FORMAT} sidecar (needs 'format' and 'model')")
    if document.get("version") != VERSION:
        raise CheckpointError(f"{printable(sidecar)}: format version {jsonio.short(document.get('version'))}, "
                              f"this library reads {VERSION}")
    try:
        return ModelSpec.model_validate(document["model"])
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise CheckpointError(f"{printable(sidecar)}: model.{printable('.'.join(map(str, first['loc'])))}: "
                              f"{printable(first['msg'])}") from None


def load_native(path: str | Path) -> Denoiser | DDPMDenoiser:
    """Rebuild the denoiser saved by :func:`save_native` (weights load bit-exactly, on the CPU)."""
    tensors, _ = native_paths(path)
    spec = read_native_spec(path)
    if not tensors.is_file():
        raise CheckpointError(f"no weights file at {tensors}")
    try:
        state = load_file(str(tensors), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{tensors}: not a readable safetensors file ({jsonio.short(str(err))})") from None
    net = build_model(spec, device="meta")
    load_strict(net, state, source=str(tensors))
    return wrap(net, spec)
