"""``python -m maskdit.fid SAMPLES.npz REFERENCE.npz [--inception-weights PATH] [--batch-size 250] [--json OUT]``.

Inception FID (Heusel et al. 2017) of a sample batch against a reference, the way ADM's
evaluator and pytorch-fid compute it: pool3 features of the FID Inception network, their mean
and covariance, and the Fréchet distance between the two Gaussians.

SAMPLES.npz is an ADM evaluation batch: ``arr_0`` uint8 images [N, H, W, 3] (NHWC; grey
[N, H, W, 1] is accepted), as ``python -m maskdit.latents decode`` and ``python -m maskdit.sample
--npz`` write. REFERENCE.npz is either statistics (``mu`` [D], ``sigma`` [D, D]: ADM's
VIRTUAL_imagenet256_labeled.npz, a pytorch-fid stats file), used as they are, or an image batch
in the same ``arr_0`` layout, whose statistics are computed here. Images are read from the
npz batch by batch (never the whole array at once), so 50k 256x256 samples fit in little memory.

The Inception weights are read from a LOCAL file: ``--inception-weights``, else
``$MASKDIT_INCEPTION_WEIGHTS``, else ``<cache>/pt_inception-2015-12-05-6726825d.pth``; nothing is
downloaded. Prints the FID; ``--json OUT`` also writes it with the counts and paths.
Exit codes: 0 ok, 2 bad input (files, keys, dtypes, shapes, weights), 1 failure while computing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from maskdit.app import cli
from maskdit.config.errors import InputError
from maskdit.eval.stats import FeatureStats, RunningStats, load_stats
from maskdit.io import npz

IMAGE_KEY = "arr_0"
MAX_IMAGE_BYTES = 4096 * 4096 * 3  # one image, uint8 HWC: 4096x4096 RGB (Inception sees 299x299 anyway)

Extractor = Callable[[torch.Tensor], torch.Tensor]
"""images [B, C, H, W] in [-1, 1] -> features [B, D]"""


def npz_keys(path: Path) -> list[str]:
    """The array names in an npz file; raises InputError when it is missing or not an npz."""
    return npz.npz_keys(path)


class NpzImages:
    """``arr_0`` of an npz as uint8 [N, H, W, C] images, read in batches straight from the archive
    (stored or deflated members alike) instead of loading the whole array."""

    def __init__(self, path: Path, *, key: str = IMAGE_KEY) -> None:
        keys = npz_keys(path)
        if key not in keys:
            raise InputError(f"{path}: no {key!r} array (it holds {sorted(keys)}); "
                             f"expected {key} uint8 [N, H, W, 3] images")
        self.path, self.key = path, key
        member = npz.describe(path, key)  # the header must match the member's size: nothing forged is inflated
        self.shape, fortran, self.dtype = member.shape, member.fortran, member.dtype
        where = f"{path}: {key}"
        if fortran:
            raise InputError(f"{where} is stored in Fortran order; save it with np.ascontiguousarray")
        if self.dtype != np.uint8:
            raise InputError(f"{where} must be uint8 images (0..255), got {self.dtype}")
        if len(self.shape) != 4 or self.shape[-1] not in (1, 3):
            hint = " (channels first? use NHWC)" if len(self.shape) == 4 and self.shape[1] in (1, 3) else ""
            raise InputError(f"{where} must be [N, H, W, 3] (NHWC), got shape {self.shape}{hint}")
        if math.prod(self.shape[1:]) > MAX_IMAGE_BYTES:
            raise InputError(f"{where}: images of {self.shape[1]}x{self.shape[2]} pixels are larger than the "
                             f"{MAX_IMAGE_BYTES >> 20} MiB per image this command reads")
        if self.shape[0] < 2:
            raise InputError(f"{where} holds {self.shape[0]} image(s); a covariance needs at least 2")

    def __len__(self) -> int:
        return int(self.shape[0])

    def _open(self):
        archive = zipfile.ZipFile(self.path)
        try:
            handle = archive.open(f"{self.key}.npy")
        finally:
            archive.close()  # the member handle keeps the file open on its own
        return handle

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield uint8 arrays [B, H, W, C] in order, ``batch_size`` images at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        item = int(np.prod(self.shape[1:]))
        with self._open() as handle:
            npz.read_npy_header(handle, f"{self.path}: {self.key}")
            for start in range(0, len(self), batch_size):
                count = min(batch_size, len(self) - start)
                data = handle.read(count * item)
                if len(data) != count * item:
                    raise ValueError(f"{self.path}: {self.key} ends after {start + len(data) // item} of "
                                     f"{len(self)} images (truncated file?)")
                yield np.frombuffer(bytearray(data), dtype=np.uint8).reshape(count, *self.shape[1:])


def to_model_input(batch: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] in [-1, 1] on ``device`` (x / 127.5 - 1)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [B, H, W, C] -> [B, C, H, W]


@torch.no_grad()
def image_statistics(images: NpzImages, extractor: Extractor, *, batch_size: int = 250,
                     device: torch.device | str = "cpu", on_batch: Callable[[int], None] | None = None) -> FeatureStats:
    """Feature mean and covariance of every image in ``images``, streamed through ``extractor``."""
    running = RunningStats()
    for batch in images.batches(batch_size):
        features = extractor(to_model_input(batch, device))
        if features.ndim != 2 or features.shape[0] != batch.shape[0]:
            raise ValueError(f"the extractor must return [B, D] features, got {tuple(features.shape)}")
        running.update(features)
        if on_batch is not None:
            on_batch(batch.shape[0])
    return running.finalize()


def load_extractor(weights: Path | None, device: str) -> tuple[Extractor, int, Path]:
    """(FID Inception on ``device``, its feature dimension, the weights file) from local weights."""
    from maskdit.eval.inception import FIDInception, inception_weights_path  # deferred: torchvision's Inception

    try:
        path = inception_weights_path(weights)
        model = FIDInception.from_file(path)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - an unreadable file fails torch.load / safetensors in many ways
        detail = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: cannot read FID Inception weights ({type(err).__name__}: {detail})") from None
    return model.to(device), model.feature_dim, path


def reference_source(path: Path) -> NpzImages | FeatureStats:
    """The reference's statistics (``mu``/``sigma``) when the file has them, else its images."""
    keys = npz_keys(path)
    if "mu" in keys and "sigma" in keys:
        try:
            return load_stats(path)
        except ValueError as err:
            raise InputError(str(err)) from None
    if IMAGE_KEY in keys:
        return NpzImages(path)
    raise InputError(f"{path}: holds {sorted(keys)}; expected statistics ('mu' [D] and 'sigma' [D, D]) "
                     f"or images ('{IMAGE_KEY}' uint8 [N, H, W, 3])")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description = __doc__.split("\n\n")[1].replace("\n", " ")
    parser = argparse.ArgumentParser(prog="python -m maskdit.fid", description=description)
    parser.add_argument("samples", type=Path, help="ADM sample batch: .npz with arr_0 uint8 [N, H, W, 3]")
    parser.add_argument("reference", type=Path,
                        help="reference .npz: statistics (mu, sigma; e.g. VIRTUAL_imagenet256_labeled.npz) "
                             "or images (arr_0)")
    parser.add_argument("--inception-weights", type=Path, default=None, metavar="PATH",
                        help="local FID Inception weights (.pth / .safetensors); default $MASKDIT_INCEPTION_WEIGHTS, "
                             "then the maskdit cache")
    parser.add_argument("--batch-size", type=int, default=250, help="images per Inception forward pass (default 250)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the result as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_plugin_argument(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    return args


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    samples = NpzImages(args.samples)
    reference = reference_source(args.reference)
    extractor, dim, weights = load_extractor(args.inception_weights, device)
    if isinstance(reference, FeatureStats) and reference.dim != dim:
        raise InputError(f"{args.reference}: statistics of {reference.dim}-d features, but the Inception "
                         f"features are {dim}-d (made with another network?)")
    print(f"FID of {len(samples)} images {samples.shape[1:]} from {args.samples} against {args.reference} "
          f"({'statistics' if isinstance(reference, FeatureStats) else f'{len(reference)} images'}) on {device}",
          flush=True)
    from maskdit.eval.frechet import frechet_distance  # deferred: scipy.linalg (~0.2 s)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sample_stats = _statistics(samples, extractor, args, device, "samples")
            if isinstance(reference, NpzImages):
                reference = _statistics(reference, extractor, args, device, "reference")
            value = frechet_distance(sample_stats, reference)
        except (ValueError, OSError, zipfile.BadZipFile) as err:  # truncated or damaged files, degenerate features
            return cli.report(str(err), code=cli.EXIT_FAILED)
    for warning in dict.fromkeys(str(w.message) for w in caught):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"FID: {value:.4f}")
    if args.json is not None:
        record = {"fid": value, "num_samples": sample_stats.count, "reference_count": reference.count,
                  "feature_dim": sample_stats.dim, "samples": str(args.samples), "reference": str(args.reference),
                  "inception_weights": str(weights), "seconds": round(time.perf_counter() - started, 3)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return cli.EXIT_OK


def _statistics(images: NpzImages, extractor: Extractor, args: argparse.Namespace, device: str,
                what: str) -> FeatureStats:
    with tqdm(total=len(images), unit="img", desc=what, disable=args.no_progress, file=sys.stderr) as bar:
        return image_statistics(images, extractor, batch_size=args.batch_size, device=device, on_batch=bar.update)


if __name__ == "__main__":
    sys.exit(main())
