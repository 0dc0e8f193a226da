"""``load_run``: a ready denoiser (and its experiment spec) from whatever a run left behind.

Accepted: a run folder (its newest checkpoint), a ``checkpoints/`` folder, one checkpoint
folder (``step-XXXXXXXX``), a native export (``model.safetensors`` + ``model.json``), or a
diffusers ``DiTTransformer2DModel`` folder. Weights with NaN or inf are refused everywhere, so a
corrupt model never samples an all-black grid.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import ValidationError

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.factory import build_model, wrap
from maskdit.interop.strict import load_strict
from maskdit.io.weight_files import CheckpointError

Weights = Literal["ema", "model"]


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
    from maskdit.io.checkpoint import STATE, latest_checkpoint

    if (path / STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: not a maskdit checkpoint, run folder, native export or diffusers folder")


def open_run(path: str | Path, weights: Weights = "ema", *, device: str | torch.device = "cpu") -> LoadedRun:
    """Load ``path`` (see the module docstring) with the ``weights`` of a training checkpoint
    (``'ema'`` samples best; exports hold one set). Raises CheckpointError naming the file."""
    from maskdit.interop.diffusers import is_diffusers_folder, load_diffusers
    from maskdit.interop.native import load_native

    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file() or path.suffix == ".safetensors":
        denoiser = load_native(path)
        return LoadedRun(denoiser.to(device).eval(), None, None, path, path.parent)
    if is_diffusers_folder(path):
        denoiser = load_diffusers(path)
        return LoadedRun(denoiser.to(device).eval(), None, None, path, path)
    return _open_checkpoint(resolve_checkpoint(path), weights, device)


def missing_plugins(run_dir: str | Path) -> list[str]:
    """The plugin modules the newest checkpoint of a run folder records that this process has not
    imported ([] when there is no readable checkpoint): what reading its spec back needs."""
    from maskdit.io.checkpoint import CheckpointError as TrainCheckpointError
    from maskdit.io.checkpoint import latest_checkpoint, read_state

    newest = latest_checkpoint(Path(run_dir) / "checkpoints")
    try:
        recorded = read_state(newest).get("plugins", []) if newest is not None else []
    except TrainCheckpointError:
        return []
    return [module for module in recorded if module not in sys.modules]


def plugin_advice(modules: list[str]) -> str:
    """The sentence naming the --plugin options a run's spec needs ('' when none are missing)."""
    if not modules:
        return ""
    return f"the run used plugins from {', '.join(modules)}: pass {' '.join(f'--plugin {m}' for m in modules)}"


def load_run(path: str | Path, weights: Weights = "ema", *, device: str | torch.device = "cpu"
             ) -> tuple[Denoiser | DDPMDenoiser, ExperimentSpec | None]:
    """``(denoiser, spec)`` from a run folder, checkpoint folder, native export or diffusers folder.

    The denoiser is in eval mode on ``device``; ``spec`` is the run's ExperimentSpec (None for an
    export, which holds only the model: its spec is ``denoiser.spec``). ``weights`` picks the EMA
    (default, what the paper samples with) or the raw weights of a training checkpoint."""
    loaded = open_run(path, weights, device=device)
    return loaded.denoiser, loaded.spec


def _open_checkpoint(folder: Path, weights: Weights, device) -> LoadedRun:
    from maskdit.io.checkpoint import CheckpointError as TrainCheckpointError
    from maskdit.io.checkpoint import load_checkpoint

    try:
        checkpoint = load_checkpoint(folder)
    except TrainCheckpointError as err:
        raise CheckpointError(str(err)) from None
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
    tensors = {name.removeprefix("net."): value for name, value in tensors.items()}  # EMA of the wrapper
    net = build_model(spec.model, device="meta")
    load_strict(net, tensors, source=f"{folder} ({weights} weights)")
    run_dir = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return LoadedRun(wrap(net, spec.model).to(device).eval(), spec, checkpoint.step, folder, run_dir)
