"""The VAE that maps images to latents and back: a LOCAL diffusers AutoencoderKL folder.

diffusers is optional: it is imported only here, on first use, with an actionable error when
missing. Weights are never downloaded (``local_files_only``). Images are [-1, 1]; latents handed
to the diffusion model are the posterior sample times the config's ``scaling_factor``
(0.18215 for Stable Diffusion's kl-f8 VAE, Rombach et al. 2022).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

DEFAULT_SCALE = 0.18215


def load_vae(path: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """The AutoencoderKL saved (``save_pretrained``) in the local folder ``path``, frozen, in eval mode."""
    try:
        from diffusers import AutoencoderKL  # deferred: diffusers is optional and heavy
    except ImportError:
        raise ImportError("latent encoding and decoding need diffusers: pip install diffusers") from None
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a local diffusers VAE folder (no config.json); download it once "
                                f"elsewhere and copy the folder, e.g. stabilityai/sd-vae-ft-mse")
    vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=False)
    return vae.eval().requires_grad_(False).to(device)


def vae_config(vae) -> dict:
    """The VAE's public config (keys starting with '_' such as the load path left out)."""
    return {key: value for key, value in dict(vae.config).items() if not key.startswith("_")}


def vae_config_sha256(vae) -> str:
    text = json.dumps(vae_config(vae), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def scaling_factor(vae) -> float:
    """The config's ``scaling_factor``, else 0.18215."""
    value = vae_config(vae).get("scaling_factor")
    return float(value) if value is not None else DEFAULT_SCALE


def downsampling(vae) -> int:
    """Pixels per latent side: 2 ** (number of encoder blocks - 1) (8 for kl-f8)."""
    return 2 ** (len(vae_config(vae)["block_out_channels"]) - 1)


@torch.no_grad()
def encode_posterior(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [B, 3, H, W] in [-1, 1] -> posterior (mean, logvar), float32 [B, C, H/f, W/f] each.

    diffusers clamps the log-variance to [-30, 20], as the original LDM code does."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    return posterior.mean.float().contiguous(), posterior.logvar.float().contiguous()


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor, *, scale: float, batch_size: int = 32) -> torch.Tensor:
    """Scaled latents [N, C, h, w] (as the diffusion model sees them) -> images float32 [N, 3, H, W]
    in [-1, 1] on the CPU, decoded ``batch_size`` at a time."""
    return torch.cat(list(iter_decoded(vae, z, scale=scale, batch_size=batch_size)))


def iter_decoded(vae, z: torch.Tensor, *, scale: float, batch_size: int = 32) -> Iterator[torch.Tensor]:
    """Like :func:`decode_latents`, one chunk [<=batch_size, 3, H, W] at a time, so a caller can
    convert each to 8 bits before the next (50k float images at 256 px would need ~40 GB)."""
    if z.ndim != 4:
        raise ValueError(f"expected latents [N, C, h, w], got {tuple(z.shape)}")
    channels = vae_config(vae)["latent_channels"]
    if z.shape[1] != channels:
        raise ValueError(f"the VAE takes {channels}-channel latents, got {z.shape[1]} channels {tuple(z.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for chunk in z.split(batch_size):
        decoded = vae.decode(chunk.to(vae.device, vae.dtype) / scale).sample
        yield decoded.float().clamp(-1, 1).cpu()
