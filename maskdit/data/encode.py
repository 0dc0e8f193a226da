"""Encode an image folder into latent shards: resumable, atomic, split across ranks.

The sorted folder listing is cut into shards of ``shard_size`` source images; shard ``k`` covers
images ``[k * shard_size, (k + 1) * shard_size)``, so its content never depends on how many
processes encode. Rank ``r`` of ``w`` encodes the shards ``k`` with ``k % w == r``
(:func:`shards_for_rank`). Each shard is written atomically, then its record (``.json``: SHA-256,
size, skipped files, settings fingerprint). A rerun keeps every shard whose record exists, whose
fingerprint matches and whose SHA-256 checks out, and encodes the rest; a folder that holds
shards of other settings is refused. Rank 0 writes ``manifest.json`` once all shards exist.
With ``keep_images`` each shard also stores the uint8 crops the VAE encoded (for REPA's encoder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from maskdit.data.imagefolder import CorruptImageError, list_image_folder, prepare_image
from maskdit.data.shards import (
    DTYPES,
    FLIPPED,
    IMAGES,
    MANIFEST,
    MOMENTS,
    LatentManifest,
    ShardError,
    ShardRecord,
    SourceRecord,
    VaeRecord,
    read_manifest,
    read_record,
    shard_name,
)
from maskdit.data.vae import downsampling, encode_posterior, scaling_factor, vae_config, vae_config_sha256
from maskdit.io.files import atomic_write, file_sha256
from maskdit.io.images import to_uint8

log = logging.getLogger(__name__)


def shard_ranges(num_images: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard over ``num_images`` source images."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [(start, min(start + shard_size, num_images)) for start in range(0, num_images, shard_size)]


def shards_for_rank(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` encodes: k with k % world_size == rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
    return list(range(rank, num_shards, world_size))


@dataclass(frozen=True)
class EncodePlan:
    """What an encoding run will write; every rank computes the same plan."""

    data: Path
    samples: tuple[tuple[str, int], ...]
    classes: tuple[str, ...]
    vae: VaeRecord
    source: SourceRecord
    latent_shape: tuple[int, int, int]
    dtype: str
    flip: bool
    shard_size: int
    key: str
    keep_images: bool = False

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return shard_ranges(len(self.samples), self.shard_size)


def plan_encoding(vae, data: str | os.PathLike, *, vae_path: str, resolution: int = 256, flip: bool = False,
                  shard_size: int = 10_000, dtype: str = "float32", keep_images: bool = False) -> EncodePlan:
    """List ``data`` and fix every setting (and their fingerprint) before anything is encoded.
    ``keep_images``: also store each source crop as uint8 [3, R, R] (3 bytes a pixel per image)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    factor = downsampling(vae)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not divisible by the VAE's downsampling factor {factor}")
    samples, classes = list_image_folder(data)
    root = Path(data).resolve()
    listing = "".join(f"{Path(path).resolve().relative_to(root).as_posix()}\t{label}\n" for path, label in samples)
    source = SourceRecord(path=str(root), resolution=resolution, num_images=len(samples),
                          listing_sha256=hashlib.sha256(listing.encode()).hexdigest())
    record = VaeRecord(path=str(Path(vae_path).resolve()), config_sha256=vae_config_sha256(vae),
                       scaling_factor=scaling_factor(vae))
    shape = (int(vae_config(vae)["latent_channels"]), resolution // factor, resolution // factor)
    settings = {"vae": record.config_sha256, "scale": record.scaling_factor, "listing": source.listing_sha256,
                "resolution": resolution, "flip": flip, "shard_size": shard_size, "dtype": dtype}
    if keep_images:  # only when on, so the keys of folders encoded before the option existed stay the same
        settings["images"] = True
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return EncodePlan(Path(data), tuple(samples), tuple(classes), record, source, shape, dtype, flip, shard_size, key,
                      keep_images)


class _ShardImages(Dataset):
    """Source images ``start..stop-1``, cropped; an unreadable one yields its error instead."""

    def __init__(self, plan: EncodePlan, start: int, stop: int) -> None:
        self.plan, self.start, self.stop = plan, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int):
        index = self.start + i
        path, label = self.plan.samples[index]
        try:
            return prepare_image(path, self.plan.source.resolution), label, index, None
        except CorruptImageError as err:
            return None, label, index, (path, str(err.__cause__ or err))


def _collate(items):
    return items  # the loop below separates images from errors


def _reusable(folder: Path, k: int, plan: EncodePlan) -> ShardRecord | None:
    """The record of shard k when it is finished, of this plan, and intact; else None."""
    path = folder / shard_name(k)
    record = read_record(path.with_suffix(".json"))
    if record is None or not path.is_file():
        return None
    if record.key != plan.key:
        raise ShardError(f"{path} was encoded with other settings (key {record.key}, now {plan.key}); "
                         f"use a new --out folder or delete the old shards")
    start, stop = plan.ranges[k]
    if (record.start, record.stop) != (start, stop):
        return None
    if path.stat().st_size != record.bytes or file_sha256(path) != record.sha256:
        log.warning("%s does not match its record (interrupted or corrupt); encoding it again", path)
        return None
    return record


def encode_shard(vae, plan: EncodePlan, folder: Path, k: int, *, batch_size: int = 32, workers: int = 0,
                 skip_corrupt: bool = False) -> ShardRecord:
    """Encode shard ``k`` of ``plan`` into ``folder`` and write it with its record (both atomically)."""
    start, stop = plan.ranges[k]
    loader = DataLoader(_ShardImages(plan, start, stop), batch_size=batch_size, num_workers=workers,
                        collate_fn=_collate)
    parts: dict[str, list[torch.Tensor]] = {"mean": [], "logvar": [], "mean_flip": [], "logvar_flip": []}
    side = plan.source.resolution
    # the crops are the shard's bulk (3 R^2 bytes an image): filled in place, never held twice
    crops = torch.empty((stop - start if plan.keep_images else 0, 3, side, side), dtype=torch.uint8)
    labels, indices, skipped = [], [], []
    store = DTYPES[plan.dtype]
    for batch in loader:
        for image, label, index, error in batch:
            if error is not None and not skip_corrupt:
                raise CorruptImageError(f"cannot read image {error[0]}: {error[1]}")
            if error is not None:
                skipped.append(error)
        good = [(image, label, index) for image, label, index, error in batch if error is None]
        if not good:
            continue
        images = torch.stack([image for image, _, _ in good])  # B x [3, R, R] -> [B, 3, R, R]
        if plan.keep_images:  # back to the crop's 8-bit pixels (exact: they came from them)
            crops[len(labels):len(labels) + len(good)] = to_uint8(images)
        if plan.flip:
            images = torch.cat([images, images.flip(-1)])  # [B, ...] -> [2B, ...]: originals, then mirrors
        mean, logvar = encode_posterior(vae, images)
        n = len(good)
        parts["mean"].append(mean[:n].to(store).cpu())
        parts["logvar"].append(logvar[:n].to(store).cpu())
        if plan.flip:
            parts["mean_flip"].append(mean[n:].to(store).cpu())
            parts["logvar_flip"].append(logvar[n:].to(store).cpu())
        labels.extend(label for _, label, _ in good)
        indices.extend(index for _, _, index in good)
    empty = torch.empty((0, *plan.latent_shape), dtype=store)
    tensors = {name: torch.cat(chunks).contiguous() if chunks else empty for name, chunks in parts.items()
               if name in MOMENTS or (plan.flip and name in FLIPPED)}
    if plan.keep_images:
        tensors[IMAGES] = crops[:len(labels)]  # skipped images leave the tail unused: a contiguous view
    tensors["label"] = torch.tensor(labels, dtype=torch.int64)
    tensors["index"] = torch.tensor(indices, dtype=torch.int64)
    for name in ("mean", "logvar"):
        if tuple(tensors[name].shape[1:]) != plan.latent_shape:
            raise ValueError(f"the VAE gave latents {tuple(tensors[name].shape[1:])}, expected {plan.latent_shape}")
    path = folder / shard_name(k)
    # one metadata entry: safetensors stores a hash map, so several keys would make the bytes vary run to run
    metadata = {"maskdit": json.dumps({"key": plan.key, "start": start, "stop": stop}, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    record = ShardRecord(file=path.name, start=start, stop=stop, count=len(labels), bytes=path.stat().st_size,
                         sha256=file_sha256(path), skipped=tuple(skipped), key=plan.key)
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(record.model_dump_json(indent=1)))
    return record


def encode_shards(vae, plan: EncodePlan, out: str | os.PathLike, *, rank: int = 0, world_size: int = 1,
                  batch_size: int = 32, workers: int = 0, skip_corrupt: bool = False,
                  on_shard: Callable[[ShardRecord, bool], None] | None = None) -> list[ShardRecord]:
    """Encode this rank's shards that are not finished yet; ``on_shard(record, reused)`` after each."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).is_file():
        existing = read_manifest(folder)
        if existing.key != plan.key:
            raise ShardError(f"{folder / MANIFEST} describes an encoding with other settings (key {existing.key}, "
                             f"now {plan.key}); use a new --out folder")
    records = []
    for k in shards_for_rank(len(plan.ranges), rank, world_size):
        record = _reusable(folder, k, plan)
        reused = record is not None
        if record is None:
            record = encode_shard(vae, plan, folder, k, batch_size=batch_size, workers=workers,
                                  skip_corrupt=skip_corrupt)
        records.append(record)
        if on_shard is not None:
            on_shard(record, reused)
    return records


def write_manifest(plan: EncodePlan, out: str | os.PathLike) -> LatentManifest:
    """Collect every shard's record (all ranks must be done) into ``manifest.json``, atomically."""
    folder = Path(out)
    records = []
    for k, (start, stop) in enumerate(plan.ranges):
        path = folder / shard_name(k)
        record = read_record(path.with_suffix(".json"))
        if record is None or record.key != plan.key or (record.start, record.stop) != (start, stop):
            raise ShardError(f"shard {path} is not finished; run the encoding again to complete it")
        if not path.is_file() or path.stat().st_size != record.bytes:
            raise ShardError(f"shard {path} does not match its record (missing or truncated)")
        records.append(record)
    manifest = LatentManifest(vae=plan.vae, scale=plan.vae.scaling_factor, source=plan.source, classes=plan.classes,
                              latent_shape=plan.latent_shape, dtype=plan.dtype, flip=plan.flip,
                              shard_size=plan.shard_size, images=plan.keep_images, key=plan.key,
                              count=sum(r.count for r in records),
                              shards=tuple(records))
    atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(manifest.model_dump_json(indent=1)))
    return manifest
