"""The on-disk format of encoded latents: safetensors shards, one JSON record per shard, a manifest.

A latent folder holds::

    shard-00000.safetensors   mean, logvar [n, C, h, w] (+ mean_flip, logvar_flip), label, index [n]
                              (+ image: uint8 [n, 3, R, R], the crops the VAE encoded)
    shard-00000.json          ShardRecord: source range, count, bytes, sha256, skipped files, job key
    ...
    manifest.json             LatentManifest: VAE, scale factor, shapes, classes, every ShardRecord

``image`` (``encode --keep-images``) keeps the source crops for terms that read clean images
while the model trains on latents (REPA's encoder, as REPA's own pipeline stores the images beside
the latents); their mirrors are the crops flipped, so they are not stored twice.
``index`` is each image's position in the sorted image-folder listing. Shards are read through a
copy-on-write memory map, so a large set is paged in on demand and shared by processes through
the OS page cache instead of being copied into every process's memory.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, Field, ValidationError

from maskdit.config import json_input as jsonio
from maskdit.config.errors import printable
from maskdit.config.spec_model import SpecModel
from maskdit.data.errors import DataError
from maskdit.io.files import file_sha256

MANIFEST = "manifest.json"
FORMAT = "maskdit-latents"
MOMENTS = ("mean", "logvar")
FLIPPED = ("mean_flip", "logvar_flip")
IMAGES = "image"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_HEADER_BYTES = 1 << 24  # a shard's header is under a KiB; safetensors itself stops at 100 MB
MAX_DIMS = 8
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
                       "F64": torch.float64, "I32": torch.int32, "U8": torch.uint8}


class ShardError(DataError):
    """A missing, truncated, corrupt or mismatched shard or manifest; the message names the file."""


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


class VaeRecord(SpecModel):
    path: str = Field(description="the local diffusers AutoencoderKL folder the latents came from")
    config_sha256: str = Field(description="SHA-256 of the VAE's config (private '_' keys left out)")
    scaling_factor: float = Field(gt=0, description="the VAE config's scaling_factor (0.18215 for SD kl-f8)")


class SourceRecord(SpecModel):
    path: str = Field(description="the image folder that was encoded")
    resolution: int = Field(ge=1, description="side of the ADM centre crop, in pixels")
    num_images: int = Field(ge=0, description="images listed in the folder")
    listing_sha256: str = Field(description="SHA-256 of the sorted (relative path, label) listing")


def _plain_name(name: str) -> str:
    """A shard's file must be a plain name inside the latent folder (no path, no '..')."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"shard file {name[:200]!r} is not a plain file name inside the latent folder")
    return name


class ShardRecord(SpecModel):
    file: Annotated[str, AfterValidator(_plain_name)] = Field(description="shard file name inside the latent folder")
    start: int = Field(ge=0, description="first source image index this shard covers")
    stop: int = Field(ge=0, description="one past the last source image index it covers")
    count: int = Field(ge=0, description="images stored (stop - start minus skipped ones)")
    bytes: int = Field(ge=0, description="file size")
    sha256: str = Field(description="SHA-256 of the file")
    skipped: tuple[tuple[str, str], ...] = Field((), description="(file, reason) of unreadable images left out")
    key: str = Field(description="fingerprint of the encoding settings; shards of other settings are never mixed")


class LatentManifest(SpecModel):
    format: Literal["maskdit-latents"] = FORMAT
    version: Literal[1] = 1
    vae: VaeRecord
    scale: float = Field(gt=0, description="z = scale * (mean + std * eps)")
    source: SourceRecord
    classes: tuple[str, ...] = Field(description="class folder names; label k is classes[k]")
    latent_shape: tuple[int, int, int] = Field(description="(C, h, w) of one latent")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(description="storage dtype of mean and logvar")
    flip: bool = Field(description="whether the shards also hold the mirrored images' moments")
    images: bool = Field(False, description="whether the shards also hold the source crops (uint8 [n, 3, R, R])")
    shard_size: int = Field(ge=1, description="source images per shard")
    key: str = Field(description="fingerprint of the encoding settings")
    count: int = Field(ge=0, description="latents stored in all shards")
    shards: tuple[ShardRecord, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [item for shard in self.shards for item in shard.skipped]


def read_manifest(folder: str | os.PathLike) -> LatentManifest:
    path = Path(folder) / MANIFEST
    shown = printable(path)  # the folder may come from a spec file
    if not path.is_file():
        raise ShardError(f"{shown} not found: encode the images first with `python -m maskdit.latents encode`")
    try:
        return LatentManifest.model_validate(jsonio.load_file(path, max_bytes=jsonio.STATE_MAX_BYTES))
    except OSError as err:
        raise ShardError(f"cannot read {shown}: {printable(err.strerror or err)}") from None
    except jsonio.JSONInputError as err:
        raise ShardError(f"{err} (not a valid latent manifest)") from None
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        where = printable(".".join(map(str, problem["loc"])) or "manifest")
        raise ShardError(f"{shown} is not a valid latent manifest: {where}: {printable(problem['msg'])}") from None


def read_record(path: str | os.PathLike) -> ShardRecord | None:
    """The shard record at ``path``, or None when it is missing or unreadable."""
    try:
        return ShardRecord.model_validate(jsonio.load_file(path, max_bytes=jsonio.STATE_MAX_BYTES))
    except (OSError, ValidationError, jsonio.JSONInputError):
        return None


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The safetensors JSON header of ``path`` and where its data starts; raises ShardError if the
    file is truncated or its header is malformed. Every entry is checked before anything is mapped:
    a known dtype, a shape of non-negative integers, integer offsets whose span is exactly the
    shape's bytes, and tensors that tile the data with no gap, overlap or trailing bytes."""
    path = Path(path)
    where = f"shard {printable(path)}"
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            if len(head) < 8:
                raise ShardError(f"{where} is truncated ({size} bytes, no header)")
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                raise ShardError(f"{where} is truncated (header of {length} bytes, file of {size})")
            if length > MAX_HEADER_BYTES:
                raise ShardError(f"{where} is corrupt (a header of {length:,} bytes)")
            raw = handle.read(length)
    except OSError as err:
        raise ShardError(f"cannot read {where}: {printable(err)}") from None
    try:
        header = jsonio.loads(raw, source=where)
    except jsonio.JSONInputError:
        raise ShardError(f"{where} is corrupt (unreadable header)") from None
    if not isinstance(header, dict):
        raise ShardError(f"{where} is corrupt (malformed header: not a JSON object)")
    start = 8 + length
    spans = sorted(_span(name, entry, where) for name, entry in header.items() if name != "__metadata__")
    end = 0
    for begin, stop, name in spans:
        if begin != end:
            raise ShardError(f"{where} is corrupt (malformed header: tensor {printable(name)} starts at byte "
                             f"{printable(begin)} of the data, not {end}: tensors overlap or leave a gap)")
        end = stop
    if start + end != size:
        raise ShardError(f"{where} is truncated or padded: its header describes {start + end} bytes, "
                         f"the file has {size}")
    return header, start


def _span(name: str, entry: object, where: str) -> tuple[int, int, str]:
    """(begin, end, name) of one header entry, after checking it describes exactly its bytes."""
    what = f"{where} is corrupt (malformed header: tensor {printable(name)}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ShardError(f"{what} needs exactly dtype, shape and data_offsets)")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _SAFETENSORS_DTYPES:
        raise ShardError(f"{where}: tensor {printable(name)} has unsupported dtype {printable(dtype)}")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_count(side) for side in shape)):
        raise ShardError(f"{what} has shape {printable(shape)}; expected a list of non-negative integers)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(x) for x in offsets)
            and offsets[0] <= offsets[1]):
        raise ShardError(f"{what} has data_offsets {printable(offsets)}; expected [begin, end] integers)")
    needed = math.prod(shape) * _SAFETENSORS_DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != needed:
        raise ShardError(f"{what}: shape {printable(shape)} of {dtype} does not fill its offsets' span of "
                         f"{printable(offsets[1] - offsets[0])} bytes)")
    return offsets[0], offsets[1], name


def _count(value: object) -> bool:
    """A JSON non-negative integer (not a float, not a bool)."""
    return type(value) is int and value >= 0


def open_shard(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of a copy-on-write memory map (nothing copied)."""
    header, start = read_header(path)
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    if len(mapped) != start + max((entry["data_offsets"][1] for name, entry in header.items()
                                   if name != "__metadata__"), default=0):
        raise ShardError(f"shard {printable(path)} changed while it was opened")
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        count = (end - begin) // dtype.itemsize
        if count:
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=start + begin)
        else:
            flat = torch.empty(0, dtype=dtype)
        tensors[name] = flat.view(entry["shape"])  # [numel] -> stored shape (checked by read_header)
    return tensors


def check_shard(folder: Path, record: ShardRecord, manifest: LatentManifest, *, verify: str) -> dict[str, torch.Tensor]:
    """Open one shard of ``manifest`` after checking its size (and SHA-256 when ``verify`` is 'sha256')
    and that its tensors have the manifest's shapes; every failure is a ShardError naming the shard."""
    path = folder / record.file
    shown = printable(path)  # the name comes from the manifest: escape it
    if path.resolve().parent != Path(folder).resolve():  # a link out of the folder is refused too
        raise ShardError(f"shard {shown} listed in {printable(folder / MANIFEST)} lies outside the latent folder")
    if not path.is_file():
        raise ShardError(f"shard {shown} listed in {printable(folder / MANIFEST)} is missing")
    size = path.stat().st_size
    if size != record.bytes:
        raise ShardError(f"shard {shown} has {size} bytes but the manifest records {record.bytes}: "
                         "truncated or replaced")
    if verify == "sha256" and file_sha256(path) != record.sha256:
        raise ShardError(f"shard {shown} fails its SHA-256 check: the file is corrupt; re-encode it (delete it and "
                         f"its .json, then run `python -m maskdit.latents encode` again with the same arguments)")
    tensors = open_shard(path)
    names = MOMENTS + (FLIPPED if manifest.flip else ())
    expected = (record.count, *manifest.latent_shape)
    for name in names:
        if name not in tensors or tuple(tensors[name].shape) != expected or tensors[name].dtype != DTYPES[manifest.dtype]:
            got = (tuple(tensors[name].shape), tensors[name].dtype) if name in tensors else "nothing"
            raise ShardError(f"shard {shown}: {name!r} should be {manifest.dtype} {expected}, found {got}")
    found = tensors.get(IMAGES)
    again = ("encode the image folder again with `python -m maskdit.latents encode --keep-images` into a new "
             "--out folder")
    if manifest.images:
        side = manifest.source.resolution
        if found is None or tuple(found.shape) != (record.count, 3, side, side) or found.dtype != torch.uint8:
            got = (tuple(found.shape), found.dtype) if found is not None else "nothing"
            raise ShardError(f"shard {shown}: {IMAGES!r} should be uint8 {(record.count, 3, side, side)}, found {got}; "
                             f"{again}")
    elif found is not None:  # only an edited manifest leaves the crops unlisted: it no longer describes its shards
        raise ShardError(f"shard {shown} holds {IMAGES!r} (the source crops) but {printable(folder / MANIFEST)} says "
                         f"images: false, so the manifest does not describe its shards; {again}")
    label = tensors.get("label")
    if label is None or tuple(label.shape) != (record.count,) or label.dtype != torch.int64:
        raise ShardError(f"shard {shown}: 'label' should hold {record.count} int64 labels")
    return tensors
