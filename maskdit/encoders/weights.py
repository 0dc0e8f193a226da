"""Encoder weights from safetensors files only (no pickle, no code from the file), checked key by
key against the network before anything is copied, and the packaged assets' SHA-256 check."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from maskdit.config.errors import CheckpointError, listed, printable
from maskdit.io.files import file_sha256


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file on the CPU; a CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no encoder weights file at {printable(path)}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{printable(path)}: not a readable safetensors file ({printable(err)})") from None


def check_sha256(path: str | os.PathLike, expected: str, *, rebuild: str) -> None:
    """Refuse a packaged asset whose bytes are not the ones shipped (a damaged or replaced file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the packaged encoder weights {printable(path)} are missing: reinstall maskdit, "
                              f"or rebuild them with `{rebuild}`")
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(f"{printable(path)}: SHA-256 {actual} is not the packaged {expected}: the file was "
                              f"changed; reinstall maskdit, or rebuild it with `{rebuild}` and update the hash")


def check_keys(network: nn.Module, state: dict[str, torch.Tensor], *, source: str | os.PathLike) -> None:
    """A CheckpointError naming ``source`` and the keys at fault unless ``state`` has exactly the
    network's keys (shapes are checked by :func:`load_weights`)."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = ([f"missing key(s) {listed(missing)}"] if missing else []) + (
            [f"unexpected key(s) {listed(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{printable(source)}: not weights of this encoder: {'; '.join(parts)}")


def load_weights(network: nn.Module, state: dict[str, torch.Tensor], *, source: str | os.PathLike) -> None:
    """Copy ``state`` into ``network`` (floats cast to the network's dtype) once every key matches
    by name and shape; otherwise a CheckpointError naming ``source`` and the keys at fault."""
    check_keys(network, state, source=source)
    expected = network.state_dict()
    shaped = [f"{key} is {tuple(state[key].shape)}, the encoder's is {tuple(value.shape)}"
              for key, value in expected.items() if state[key].shape != value.shape]
    if shaped:
        raise CheckpointError(f"{printable(source)}: not weights of this encoder: {listed(shaped, limit=3)}")
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(state[key].to(value.dtype))  # state_dict() shares storage with the parameters
