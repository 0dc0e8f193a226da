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

import numpy as np
import torch
from safetensors.torch import load_file

LATENT_KEYS = ("latents", "samples", "arr_0")
LABEL_KEYS = ("labels", "arr_1")


def _pick(arrays: dict, keys: tuple[str, ...], path: Path, *, required: bool):
    for key in keys:
        if key in arrays:
            return arrays[key]
    if required:
        raise ValueError(f"{path} holds {sorted(arrays)}; expected latents under one of {list(keys)}")
    return None


def load_latent_samples(path: str | os.PathLike, *, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(latents float32 [N, C, h, w], labels int64 [N] or None) from ``path``; C must equal ``channels``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: torch.from_numpy(data[key]) for key in data.files}
    elif suffix in (".pt", ".pth"):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(loaded, torch.Tensor):
            arrays = {"latents": loaded}
        else:
            arrays = dict(loaded) if isinstance(loaded, dict) else {}
    elif suffix == ".safetensors":
        arrays = load_file(path)
    else:
        raise ValueError(f"{path}: unknown sample file type {suffix!r} (use .npz, .pt or .safetensors)")
    z = torch.as_tensor(_pick(arrays, LATENT_KEYS, path, required=True))
    labels = _pick(arrays, LABEL_KEYS, path, required=False)
    if not z.is_floating_point():
        raise ValueError(f"{path}: latents must be floating point, got {z.dtype} (uint8 arrays are images, not latents)")
    if z.ndim != 4:
        raise ValueError(f"{path}: latents must be [N, C, h, w], got {tuple(z.shape)}")
    if z.shape[1] != channels and z.shape[-1] == channels:
        z = z.permute(0, 3, 1, 2)  # [N, h, w, C] -> [N, C, h, w]
    if z.shape[1] != channels:
        raise ValueError(f"{path}: the VAE takes {channels}-channel latents, got {tuple(z.shape)}")
    if labels is not None:
        labels = torch.as_tensor(labels).long().flatten()
        if len(labels) != len(z):
            raise ValueError(f"{path}: {len(labels)} labels for {len(z)} latents")
    return z.float().contiguous(), labels
