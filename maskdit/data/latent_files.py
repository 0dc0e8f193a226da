"""Files of sampled latents in, images out: what ``python -m maskdit.latents decode`` reads and writes.

Input (``.npz``, ``.pt``/``.pth`` or ``.safetensors``): float latents as the diffusion model made
them (already multiplied by the VAE scale factor), [N, C, h, w] (channels-last [N, h, w, C] is
recognised too), under the key ``latents``, ``samples`` or ``arr_0``; optional int labels under
``labels`` or ``arr_1``. A ``.pt`` file may also be a bare tensor; it is loaded with
``weights_only=True`` (no code is unpickled).

Output: an ADM-style ``.npz`` (``arr_0`` uint8 [N, H, W, 3], ``arr_1`` labels when given) and a
PNG grid.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from maskdit.io.files import atomic_write

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
        from safetensors.torch import load_file

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


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [N, C, H, W] -> uint8 [N, H, W, C], rounding (x + 1) * 127.5 as ADM does."""
    pixels = images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()  # [N, C, H, W] -> [N, H, W, C]


def write_adm_npz(path: str | os.PathLike, images: torch.Tensor | np.ndarray, labels: torch.Tensor | None = None) -> Path:
    """Images as ADM's evaluation batch: arr_0 uint8 NHWC (+ arr_1 labels). ``images`` is float
    [N, 3, H, W] in [-1, 1], or already uint8 [N, H, W, 3] (see :func:`to_uint8_nhwc`)."""
    pixels = images if isinstance(images, np.ndarray) else to_uint8_nhwc(images)
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ValueError(f"expected uint8 [N, H, W, C] pixels, got {pixels.dtype} {pixels.shape}")
    arrays = {"arr_0": pixels}
    if labels is not None:
        arrays["arr_1"] = labels.numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(path, write)


def write_png_grid(path: str | os.PathLike, images: torch.Tensor) -> Path:
    """Images [N, 3, H, W] in [-1, 1] as a near-square PNG grid."""
    columns = math.ceil(math.sqrt(len(images)))
    pixels = images.clamp(-1, 1).add(1).div(2)  # [-1, 1] -> [0, 1]
    return atomic_write(path, lambda tmp: save_image(pixels, tmp, nrow=columns, padding=2, format="png"))
