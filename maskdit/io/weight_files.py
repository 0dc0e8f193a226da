"""Reading checkpoint files safely: safetensors, or torch.load with ``weights_only=True``.

A pickle that needs arbitrary code to load is refused (never unpickled with the full
unpickler); the only class allowed besides tensors and containers is ``argparse.Namespace``,
which training scripts of the reference code store under ``args`` and which runs no code.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError

StateDict = dict[str, torch.Tensor]
Source = str | Path | Mapping[str, Any]


def read_checkpoint(src: Source) -> dict[str, Any]:
    """A path (``.safetensors`` or a torch file) or an in-memory mapping -> a plain dict."""
    if isinstance(src, Mapping):
        return dict(src)
    path = Path(src)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({jsonio.short(str(err))})") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refusing to load: the file is not a plain tensor checkpoint (loading it would need "
            f"to run code from the pickle). Re-save only its state dicts, e.g. "
            f"torch.save({{'ema': ckpt['ema']}}, ...), or convert it to safetensors. Detail: {first}"
        ) from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors or of state dicts, got {type(loaded).__name__}")
    return dict(loaded)


def select_state(checkpoint: Mapping[str, Any], which: str, *, source: str = "checkpoint") -> StateDict:
    """The state dict inside a training checkpoint (``which`` = 'ema' or 'model'), or the checkpoint itself."""
    nested = [key for key in ("ema", "model", "state_dict") if isinstance(checkpoint.get(key), Mapping)]
    if nested:
        if which not in nested:
            raise CheckpointError(f"{source} has no {which!r} weights; it holds {', '.join(nested)} (pass which=...)")
        checkpoint = checkpoint[which]
    bad = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    return dict(checkpoint)


def strip_prefix(state: StateDict, prefix: str, *, required: bool, source: str = "checkpoint") -> StateDict:
    """Remove ``prefix`` from every key; if ``required`` every key must carry it."""
    if all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    if required:
        stray = [key for key in state if not key.startswith(prefix)]
        raise CheckpointError(f"{source}: keys without the expected {prefix!r} prefix: {', '.join(stray[:10])}")
    return state
