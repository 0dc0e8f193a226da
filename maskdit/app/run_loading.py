"""``load_run``: a ready denoiser (and its experiment spec) from whatever a run left behind.

The one loader of "a path -> a denoiser": the library's ``load_run``, ``python -m maskdit.sample``,
``evaluate`` and ``export`` all read models here. Accepted: a run folder (its newest checkpoint),
a ``checkpoints/`` folder, one checkpoint folder (``step-XXXXXXXX``), a native export
(``model.safetensors`` + ``model.json``), a diffusers ``DiTTransformer2DModel`` folder, or a
reference MaskDiT / DiT checkpoint file (torch or safetensors; the architecture fields its shapes
do not fix come from ``architecture``). Weights with NaN or inf are refused everywhere, so a
corrupt model never samples an all-black grid.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError

from maskdit.app.cli import shell_command
from maskdit.config.errors import printable
from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.config.errors import CheckpointError
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.factory import build_model, wrap
from maskdit.interop.diffusers import is_diffusers_folder, load_diffusers
from maskdit.interop.native import load_native
from maskdit.interop.reference import load_reference_dit, load_reference_maskdit
from maskdit.interop.sit import load_reference_sit
from maskdit.interop.strict import load_strict
from maskdit.losses.heads import split_heads
from maskdit.io.checkpoint import STATE, latest_checkpoint, load_checkpoint, read_state
from maskdit.io.weight_files import read_checkpoint

Weights = Literal["ema", "model"]
#: how to read a path: "train" what this library writes (a run, checkpoint or diffusers folder; a
#: file: a native export), "reference" a reference checkpoint whose keys say MaskDiT, DiT or REPA's SiT
#: (SiT's train.py files by their args.path_type; its bare state dicts have DiT's keys: name them "reference-sit").
Format = Literal["auto", "train", "native", "reference", "reference-maskdit", "reference-dit", "reference-sit"]


@dataclass(frozen=True)
class LoadedRun:
    """A loaded model: the denoiser (eval mode), the experiment spec (None for a bare model file),
    the training step (None when unknown), the checkpoint or file read, and the run folder."""

    denoiser: Denoiser | DDPMDenoiser
    spec: ExperimentSpec | None
    step: int | None
    source: Path
    run_dir: Path


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or the newest checkpoint of a run folder / checkpoints folder."""
    if (path / STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: not a maskdit checkpoint, run folder, native export or diffusers folder")


def detect_format(path: Path) -> Format:
    """What ``path`` holds, from its kind and name alone: a folder "train", a ``.safetensors`` file
    "native", another file "reference". A missing path raises CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        return "train"
    return "native" if path.suffix == ".safetensors" else "reference"


def open_run(path: str | Path, weights: Weights = "ema", *, device: str | torch.device = "cpu",
             format: Format = "auto", architecture: Mapping[str, Any] | None = None) -> LoadedRun:
    """Load ``path`` (see the module docstring) with the ``weights`` of a training or reference
    checkpoint (``'ema'`` samples best; exports hold one set). ``format`` says how to read it
    (default: :func:`detect_format`); ``architecture`` holds ModelSpec fields (or ``preset``) for
    a reference checkpoint. Raises CheckpointError naming the file."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    elif format != "native" and not path.exists():  # a native export names its missing file itself
        raise CheckpointError(f"{path}: no such file or folder")
    if format.startswith("reference"):
        denoiser = _open_reference(path, format, weights, architecture or {})
        return LoadedRun(denoiser.to(device).eval(), None, None, path, path.parent)
    if format == "native" or path.is_file() or path.suffix == ".safetensors":
        return LoadedRun(load_native(path).to(device).eval(), None, None, path, path.parent)
    if is_diffusers_folder(path):
        return LoadedRun(load_diffusers(path).to(device).eval(), None, None, path, path)
    return _open_checkpoint(resolve_checkpoint(path), weights, device)


def missing_plugins(run_dir: str | Path) -> list[str]:
    """The plugin modules the newest checkpoint of a run folder records that this process has not
    imported ([] when there is no readable checkpoint): what reading its spec back needs."""
    newest = latest_checkpoint(Path(run_dir) / "checkpoints")
    try:
        recorded = read_state(newest).get("plugins", []) if newest is not None else []
    except CheckpointError:
        return []
    return [module for module in recorded if module not in sys.modules]


def plugin_advice(modules: list[str]) -> str:
    """The sentence naming the --plugin options a run's spec needs ('' when none are missing)."""
    if not modules:
        return ""
    # the names come from a file: quoted as the shell needs and escaped for the terminal
    named = ", ".join(printable(module) for module in modules)
    return f"the run used plugins from {named}: pass {shell_command([w for m in modules for w in ('--plugin', m)])}"


def load_run(path: str | Path, weights: Weights = "ema", *, device: str | torch.device = "cpu"
             ) -> tuple[Denoiser | DDPMDenoiser, ExperimentSpec | None]:
    """``(denoiser, spec)`` from a run folder, checkpoint folder, native export, diffusers folder
    or reference MaskDiT / DiT checkpoint file (its architecture inferred from the shapes).

    The denoiser is in eval mode on ``device``; ``spec`` is the run's ExperimentSpec (None for an
    export, which holds only the model: its spec is ``denoiser.spec``). ``weights`` picks the EMA
    (default, what the paper samples with) or the raw weights of a checkpoint."""
    loaded = open_run(path, weights, device=device)
    return loaded.denoiser, loaded.spec


def _open_reference(path: Path, format: Format, weights: Weights, architecture: Mapping[str, Any]
                    ) -> Denoiser | DDPMDenoiser:
    """A reference checkpoint file; "reference" reads MaskDiT's when every key has its "model." prefix."""
    checkpoint = read_checkpoint(path)
    if format == "reference":
        state = next((checkpoint[k] for k in ("ema", "model") if isinstance(checkpoint.get(k), dict)), checkpoint)
        if state and all(str(k).startswith("model.") for k in state):
            format = "reference-maskdit"
        else:  # REPA's SiT carries its projectors, SiT's train.py its args.path_type; bare SiT files look like DiT's
            args = checkpoint.get("args")
            sit_args = (args.get("path_type") if isinstance(args, Mapping) else getattr(args, "path_type", None))
            sit = sit_args is not None or any(str(k).startswith("projectors.") for k in state)
            format = "reference-sit" if sit else "reference-dit"
    loader = {"reference-maskdit": load_reference_maskdit, "reference-sit": load_reference_sit}.get(
        format, load_reference_dit)
    try:
        return loader(checkpoint, which=weights, **architecture)
    except (ValueError, TypeError) as err:  # the loader names the in-memory "checkpoint"; say which file
        raise CheckpointError(f"{path}: {err}") from None


def _open_checkpoint(folder: Path, weights: Weights, device: str | torch.device) -> LoadedRun:
    checkpoint = load_checkpoint(folder)
    data = checkpoint.state.get("spec")
    if not isinstance(data, dict):
        raise CheckpointError(f"{folder}: the checkpoint holds no experiment spec")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as err:
        advice = plugin_advice([m for m in checkpoint.state.get("plugins", []) if m not in sys.modules])
        raise CheckpointError(f"{folder}: its saved spec is invalid ({err.error_count()} problem(s), first: "
                              f"{err.errors(include_url=False)[0]['msg']})" + (f"; {advice}" if advice else "")) from None
    tensors = checkpoint.tensors.get(weights)
    if not tensors:
        raise CheckpointError(f"{folder}: no {weights!r} weights in the checkpoint (groups: {sorted(checkpoint.tensors)})")
    tensors, _ = split_heads(tensors)  # training heads (repa's projector) are not part of the model
    tensors = {name.removeprefix("net."): value for name, value in tensors.items()}  # EMA of the wrapper
    net = build_model(spec.model, device="meta")
    load_strict(net, tensors, source=f"{folder} ({weights} weights)")
    run_dir = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return LoadedRun(wrap(net, spec.model).to(device).eval(), spec, checkpoint.step, folder, run_dir)
