"""``python -m maskdit.latents encode|decode``: image folders to VAE latent shards, latent samples to images.

    python -m maskdit.latents encode --vae VAE_DIR --data IMAGE_DIR --out LATENT_DIR \\
        [--resolution 256] [--batch-size 32] [--flip] [--keep-images] [--shard-size 10000] \\
        [--dtype float32] [--skip-corrupt] [--workers 0] [--device cpu]
    python -m maskdit.latents decode --vae VAE_DIR SAMPLES.npz|.pt|.safetensors --out OUT_DIR \\
        [--scale S] [--batch-size 32] [--grid 64] [--device cpu]

VAE_DIR is a LOCAL diffusers AutoencoderKL folder (``save_pretrained`` layout; nothing is
downloaded). ``encode`` is resumable (rerun the same command) and, under
``torchrun --nproc_per_node N -m maskdit.latents encode ...``, splits the shards across ranks.
``decode`` writes OUT_DIR/samples.npz (ADM's uint8 batch) and OUT_DIR/grid.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maskdit.app import cli
from maskdit.data.encode import encode_shards, plan_encoding, write_manifest
from maskdit.data.latent_files import load_latent_samples
from maskdit.data.shards import ShardError
from maskdit.data.vae import iter_decoded, load_vae, scaling_factor, vae_config
from maskdit.io.images import save_rgb_grid, to_uint8_nhwc, write_adm_npz
from maskdit.train.distributed import DistContext, barrier, init_distributed, shutdown


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.latents", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    enc = commands.add_parser("encode", help="encode an image folder into latent shards")
    enc.add_argument("--vae", required=True, type=Path, help="local diffusers AutoencoderKL folder")
    enc.add_argument("--data", required=True, type=Path, help="image folder: DATA/<class>/<image>")
    enc.add_argument("--out", required=True, type=Path, help="latent folder to write (shards + manifest.json)")
    enc.add_argument("--resolution", type=int, default=256, help="ADM centre-crop side in pixels (default 256)")
    enc.add_argument("--batch-size", type=int, default=32, help="images per VAE forward pass (default 32)")
    enc.add_argument("--flip", action="store_true", help="also store the mirrored images' latents")
    enc.add_argument("--keep-images", action="store_true",
                     help="also store the uint8 crops (3*R*R bytes each), for alignment (repa) on latents")
    enc.add_argument("--shard-size", type=int, default=10_000, help="source images per shard (default 10000)")
    enc.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                     help="storage dtype of mean and logvar (default float32; float16 halves the disk)")
    enc.add_argument("--skip-corrupt", action="store_true", help="leave out unreadable images (listed in the manifest)")
    enc.add_argument("--workers", type=int, default=0, help="image-decoding worker processes (default 0)")
    enc.add_argument("--device", default=None, help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    dec = commands.add_parser("decode", help="decode latent samples into images")
    dec.add_argument("samples", type=Path, help="latent samples: .npz / .pt / .safetensors, [N, C, h, w] floats")
    dec.add_argument("--vae", required=True, type=Path, help="local diffusers AutoencoderKL folder")
    dec.add_argument("--out", required=True, type=Path, help="folder for samples.npz and grid.png")
    dec.add_argument("--scale", type=cli.finite_float, default=None, help="latent scale factor (default: the VAE config's)")
    dec.add_argument("--batch-size", type=int, default=32, help="latents per VAE forward pass (default 32)")
    dec.add_argument("--grid", type=int, default=64, help="images in grid.png (default 64; 0 = no grid)")
    dec.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    cli.add_plugin_argument(enc)
    cli.add_plugin_argument(dec)
    args = parser.parse_args(argv)
    for name in ("batch_size", "shard_size", "resolution"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if getattr(args, "workers", 0) < 0 or getattr(args, "grid", 0) < 0:
        parser.error("--workers and --grid must be >= 0")
    return args


def _device(requested: str | None) -> str:
    if requested is not None:
        return requested
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def encode(args: argparse.Namespace) -> int:
    device = _device(args.device)
    ctx = init_distributed(device, field="--device")  # a process group when torchrun started several ranks
    try:
        return _encode(args, device, ctx)
    finally:
        shutdown(ctx)


def _encode(args: argparse.Namespace, device: str, ctx: DistContext) -> int:
    rank, world = ctx.rank, ctx.world_size
    say = print if rank == 0 else (lambda *a, **k: None)
    vae = load_vae(args.vae, device=device)
    plan = plan_encoding(vae, args.data, vae_path=str(args.vae), resolution=args.resolution, flip=args.flip,
                         shard_size=args.shard_size, dtype=args.dtype, keep_images=args.keep_images)
    total = len(plan.ranges)
    c, h, w = plan.latent_shape
    say(f"encoding {len(plan.samples)} images of {len(plan.classes)} classes at {args.resolution}px into {total} "
        f"shard(s) of {c}x{h}x{w} latents{' (+ mirrors)' if plan.flip else ''}"
        f"{' (+ the crops)' if plan.keep_images else ''}, {world} rank(s)", flush=True)
    started = time.perf_counter()

    def report(record, reused) -> None:
        note = "kept (verified)" if reused else f"{time.perf_counter() - started:.0f}s"
        skipped = f", {len(record.skipped)} skipped" if record.skipped else ""
        print(f"[rank {rank}] {record.file}: {record.count} latents{skipped} - {note}", flush=True)

    encode_shards(vae, plan, args.out, rank=rank, world_size=world, batch_size=args.batch_size,
                  workers=args.workers, skip_corrupt=args.skip_corrupt, on_shard=report)
    barrier(ctx)
    if rank == 0:
        manifest = write_manifest(plan, args.out)
        say(f"wrote {args.out / 'manifest.json'}: {manifest.count} latents, scale {manifest.scale:g}, "
            f"{len(manifest.skipped)} image(s) skipped")
        for path, reason in manifest.skipped[:10]:
            say(f"  skipped {path}: {reason}")
    barrier(ctx)
    return 0


def decode(args: argparse.Namespace) -> int:
    vae = load_vae(args.vae, device=_device(args.device))
    scale = args.scale if args.scale is not None else scaling_factor(vae)
    z, labels = load_latent_samples(args.samples, channels=int(vae_config(vae)["latent_channels"]))
    print(f"decoding {len(z)} latents {tuple(z.shape[1:])} with scale {scale:g}", flush=True)
    pixels, shown = [], []  # 8-bit chunks only: the float images never sit in memory all at once
    for chunk in iter_decoded(vae, z, scale=scale, batch_size=args.batch_size):
        pixels.append(to_uint8_nhwc(chunk))
        if sum(len(c) for c in shown) < args.grid:
            shown.append(chunk[: args.grid - sum(len(c) for c in shown)])
    arr = np.concatenate(pixels)
    npz = write_adm_npz(args.out / "samples.npz", arr, labels)
    print(f"wrote {npz} (arr_0: uint8 {tuple(arr.shape)} NHWC" + (", arr_1: labels)" if labels is not None else ")"))
    if args.grid:
        grid = save_rgb_grid(args.out / "grid.png", torch.cat(shown))
        print(f"wrote {grid}")
    return 0


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    try:
        return encode(args) if args.command == "encode" else decode(args)
    except ShardError as err:  # a damaged or foreign latent folder
        return cli.report(str(err), code=cli.EXIT_FAILED)
    except (FileNotFoundError, ImportError, ValueError) as err:  # wrong paths, missing diffusers, bad files
        return cli.report(str(err))
    except (OSError, RuntimeError) as err:  # unreadable images (named), I/O and device failures
        return cli.report(str(err), code=cli.EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
