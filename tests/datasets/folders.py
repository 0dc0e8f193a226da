"""Small generated image folders and a tiny randomly initialised AutoencoderKL (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# image sizes (height, width): portrait, landscape, square, and large enough for ADM's box halving
SIZES = ((20, 24), (31, 18), (16, 16), (40, 70), (25, 33))


def make_image_folder(root: Path, *, classes=("cat", "dog"), per_class: int = 5, seed: int = 0,
                      corrupt: tuple[str, ...] = ()) -> Path:
    """root/<class>/<k>.png random RGB images of assorted sizes; ``corrupt`` names extra broken files
    ('garbage': not an image at all, 'truncated': a PNG cut in half), placed in the last class."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            height, width = SIZES[k % len(SIZES)]
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    last = root / classes[-1]
    for kind in corrupt:
        if kind == "garbage":
            (last / "zz_garbage.png").write_bytes(b"this is not an image")
        elif kind == "truncated":
            whole = (root / classes[0] / "0.png").read_bytes()
            (last / "zz_truncated.png").write_bytes(whole[: len(whole) // 2])
        else:
            raise ValueError(kind)
    return root


def make_tiny_vae(folder: Path, *, seed: int = 0, scaling_factor: float | None = None) -> Path:
    """A 2-block AutoencoderKL (downsampling 2, 4 latent channels, ~44k parameters) saved to ``folder``."""
    import torch
    from diffusers import AutoencoderKL

    extra = {} if scaling_factor is None else {"scaling_factor": scaling_factor}
    with torch.random.fork_rng():  # diffusers initialises from the global RNG; keep the suite's untouched
        torch.manual_seed(seed)
        vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                            sample_size=16, **extra)
    vae.save_pretrained(str(folder))
    return folder
