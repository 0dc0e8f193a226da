"""Files of sampled latents: what ``python -m maskdit.latents decode`` reads.

Input (``.npz``, ``.pt``/``.pth`` or ``.safetensors``): float latents as the diffusion model made
them (already multiplied by the VAE scale factor), [N, C, h, w] (channels-last [N, h, w, C] is
recognised too), under the key ``latents``, ``samples`` or ``arr_0``; optional int labels under
``labels`` or ``arr_1``. A ``.pt`` file may also be a bare tensor; it is loaded with
``weights_only=True`` (no code is unpickled).

The images decoded from them are written by :mod:`maskdit.io.images` (ADM's ``.npz`` and a grid).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from maskdit.config.errors import InputError, listed, printable
from maskdit.io.npz import load_npz, npz_keys
from maskdit.io.weight_files import torch_load

LATENT_KEYS = ("latents", "samples", "arr_0")
LABEL_KEYS = ("labels", "arr_1")
MAX_BYTES = 16 << 30  # arrays of an .npz read whole: 50k latents of 4x64x64 floats are 3.3 GB


def _pick(arrays: dict, keys: tuple[str, ...], path: Path, *, required: bool, names: list):
    for key in keys:
        if key in arrays:
            return arrays[key]
    if required:
        raise InputError(f"{printable(path)} holds {listed(sorted(map(str, names)))}; expected latents under one "
                         f"of {list(keys)}")
    return None


def load_latent_samples(path: str | os.PathLike, *, channels: int,
                        max_bytes: int = MAX_BYTES) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(latents float32 [N, C, h, w], labels int64 [N] or None) from ``path``; C must equal ``channels``.
    An ``.npz`` is read only after its headers are checked (together at most ``max_bytes``); every
    bad file is an InputError naming it."""
    path = Path(path)
    shown = printable(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{shown}: no such file" if not path.exists() else f"{shown}: not a regular file")
    if suffix == ".npz":
        names = npz_keys(path)
        wanted = [key for key in names if key in LATENT_KEYS + LABEL_KEYS]  # other arrays stay unread
        loaded = load_npz(path, max_bytes=max_bytes, keys=wanted)
        arrays = {key: torch.from_numpy(value) for key, value in loaded.items()}
    elif suffix in (".pt", ".pth"):
        loaded = torch_load(path)
        if isinstance(loaded, torch.Tensor):
            arrays = {"latents": loaded}
        else:
            arrays = dict(loaded) if isinstance(loaded, dict) else {}
        names = list(arrays)
    elif suffix == ".safetensors":
        try:  # safetensors checks the header against the file: memory stays bounded by the file
            arrays = load_file(path)
            names = list(arrays)
        except (SafetensorError, OSError) as err:
            raise InputError(f"{shown}: not a readable safetensors file ({printable(err)})") from None
    else:
        raise InputError(f"{shown}: unknown sample file type {printable(suffix)} (use .npz, .pt or .safetensors)")
    z = _pick(arrays, LATENT_KEYS, path, required=True, names=names)
    labels = _pick(arrays, LABEL_KEYS, path, required=False, names=names)
    if not isinstance(z, torch.Tensor) or not (labels is None or isinstance(labels, torch.Tensor)):
        raise InputError(f"{shown}: latents and labels must be tensors")
    if not z.is_floating_point():
        raise InputError(f"{shown}: latents must be floating point, got {z.dtype} "
                         "(uint8 arrays are images, not latents)")
    if z.ndim != 4:
        raise InputError(f"{shown}: latents must be [N, C, h, w], got {tuple(z.shape)}")
    if z.shape[1] != channels and z.shape[-1] == channels:
        z = z.permute(0, 3, 1, 2)  # [N, h, w, C] -> [N, C, h, w]
    if z.shape[1] != channels:
        raise InputError(f"{shown}: the VAE takes {channels}-channel latents, got {tuple(z.shape)}")
    if labels is not None:
        labels = labels.long().flatten()
        if len(labels) != len(z):
            raise InputError(f"{shown}: {len(labels)} labels for {len(z)} latents")
    return z.float().contiguous(), labels
