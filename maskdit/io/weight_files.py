"""Reading checkpoint files safely: safetensors, or torch.load with ``weights_only=True``.

A pickle that needs arbitrary code to load is refused (never unpickled with the full
unpickler); the only class allowed besides tensors and containers is ``argparse.Namespace``,
which training scripts of the reference code store under ``args`` and which runs no code.

Sizes are bounded before anything is read: safetensors checks its header against the file, and a
torch (zip) file whose records would inflate far past the file's own size is refused unread (torch
writes its records uncompressed, and inflates a record whole before checking its size). A state
dict must be keyed by names; names from the file are printed escaped and lists of them cut short.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError, listed, printable

MAX_RATIO = 4  # torch.save stores records uncompressed: a file inflating more was not written by torch
RATIO_FLOOR = 64 << 20  # bytes; small archives cannot hurt

StateDict = dict[str, torch.Tensor]
Source = str | Path | Mapping[str, Any]


def read_checkpoint(src: Source) -> dict[str, Any]:
    """A path (``.safetensors`` or a torch file) or an in-memory mapping -> a plain dict."""
    if isinstance(src, Mapping):
        return dict(src)
    path = Path(src)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {printable(path)}")
    if path.suffix == ".safetensors":
        try:  # safetensors checks its header's offsets against the file: memory stays bounded by the file
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{printable(path)}: not a readable safetensors file "
                                  f"({jsonio.short(str(err))})") from None
    loaded = torch_load(path)
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{printable(path)}: expected a dict of tensors or of state dicts, "
                              f"got {type(loaded).__name__}")
    return dict(loaded)


def torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, after checking that the archive does not
    inflate far beyond its size (torch writes its records uncompressed); every failure is a
    CheckpointError naming the file."""
    _check_torch_archive(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError, ValueError, OSError,
            MemoryError, OverflowError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{printable(path)}: refusing to load: the file is not a plain tensor checkpoint (loading it would need "
            f"to run code from the pickle). Re-save only its state dicts, e.g. "
            f"torch.save({{'ema': ckpt['ema']}}, ...), or convert it to safetensors. Detail: {printable(first)}"
        ) from None


def _check_torch_archive(path: Path) -> None:
    """Refuse a zip-format torch file whose members would inflate past MAX_RATIO times its size."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format: torch reads what the file holds
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{printable(path)}: not a readable torch file ({printable(err)})") from None
    inflated = sum(info.file_size for info in infos)
    if inflated > RATIO_FLOOR and inflated > MAX_RATIO * max(path.stat().st_size, 1):
        raise CheckpointError(f"{printable(path)}: its records would inflate to {inflated:,} bytes from a file of "
                              f"{path.stat().st_size:,} (torch stores them uncompressed): refusing a zip bomb")


def select_state(checkpoint: Mapping[str, Any], which: str, *, source: str = "checkpoint") -> StateDict:
    """The state dict inside a training checkpoint (``which`` = 'ema' or 'model'), or the checkpoint itself."""
    nested = [key for key in ("ema", "model", "state_dict") if isinstance(checkpoint.get(key), Mapping)]
    if nested:
        if which not in nested:
            raise CheckpointError(f"{source} has no {which!r} weights; it holds {', '.join(nested)} (pass which=...)")
        checkpoint = checkpoint[which]
    source = printable(source)
    keys = [key for key in checkpoint if not isinstance(key, str)]
    if keys:  # a state dict is keyed by parameter names; an int key would fail later, far from the file
        raise CheckpointError(f"{source}: state dict keys must be parameter names (strings), found "
                              f"{listed(repr(key) for key in keys)}")
    bad = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {listed(bad)}")
    return dict(checkpoint)


def strip_prefix(state: StateDict, prefix: str, *, required: bool, source: str = "checkpoint") -> StateDict:
    """Remove ``prefix`` from every key; if ``required`` every key must carry it."""
    if all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    if required:
        stray = [key for key in state if not key.startswith(prefix)]
        raise CheckpointError(f"{printable(source)}: keys without the expected {prefix!r} prefix: {listed(stray)}")
    return state
