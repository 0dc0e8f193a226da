"""Reading ``.npz`` archives with every size checked before anything is allocated or inflated.

An npz is a zip of ``.npy`` members, each a small header (dtype, shape) and the raw data. Neither
part can be trusted: a header may claim 40000x40000 images over a few bytes of data, and a
deflated member may inflate a thousandfold. So a member is accepted only when its header is a
plain numeric array whose data size (shape x item size) matches, to the byte, what the zip
directory says the member holds (so a forged header is never believed), and whole arrays are read
only under a byte limit, large members that inflate far beyond what real arrays do (the compression
ratio) refused as bombs. Streams read piece by piece (:func:`describe`) bound each piece instead.
Every failure is an :class:`InputError` naming the file and the array.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from maskdit.config.errors import InputError, printable

MAX_RATIO = 100  # real float or image arrays deflate a few times at most; zeros reach ~1000:1
RATIO_FLOOR = 64 << 20  # below this many inflated bytes a ratio says nothing worth refusing
CHUNK = 16 << 20  # bytes inflated at a time into the array


class NpzError(InputError):
    """An npz that is missing, not a zip, or whose members are malformed or larger than allowed."""


@dataclass(frozen=True)
class NpyMember:
    """What the header of one array of an npz declares, checked against the zip directory."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    nbytes: int  # data bytes: prod(shape) * itemsize


def npz_keys(path: str | os.PathLike) -> list[str]:
    """The array names of the npz at ``path`` (NpzError when it is missing or not a zip)."""
    with _archive(Path(path)) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]


def read_npy_header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the start of an ``.npy`` stream (numpy's own header limit
    applies); ``where`` names the array in the error."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
    except (ValueError, TypeError, SyntaxError, EOFError) as err:
        raise NpzError(f"{where}: not a valid .npy header ({printable(err)})") from None
    if not all(isinstance(side, int) and side >= 0 for side in shape):
        raise NpzError(f"{where}: not a valid .npy header (shape {printable(shape)})")
    return tuple(int(side) for side in shape), bool(fortran), np.dtype(dtype)


def describe(path: str | os.PathLike, key: str, *, max_bytes: int | None = None) -> NpyMember:
    """The checked header of array ``key`` of ``path``: a numeric dtype, data that fills the member
    exactly, at most ``max_bytes`` of it (None: no limit, for arrays read piece by piece)."""
    path = Path(path)
    with _archive(path) as archive:
        return _describe(archive, path, key, max_bytes)


def load_npz(path: str | os.PathLike, *, max_bytes: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (default: all) of ``path``, after checking every header: together at
    most ``max_bytes`` of data, each the size its member holds, none inflating suspiciously."""
    path = Path(path)
    with _archive(path) as archive:
        names = [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]
        wanted = names if keys is None else [key for key in keys if key in names]
        members = [_describe(archive, path, key, max_bytes) for key in wanted]
        for member in members:
            _check_ratio(archive, path, member.key)
        total = sum(member.nbytes for member in members)
        if total > max_bytes:
            raise NpzError(f"{printable(path)}: its arrays declare {total:,} bytes together, more than the "
                           f"{max_bytes:,} this reader accepts")
        return {member.key: _read(archive, path, member) for member in members}


def _archive(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise NpzError(f"{printable(path)}: no such file")
    if not path.is_file():  # a FIFO would block the open forever
        raise NpzError(f"{printable(path)}: not a regular file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise NpzError(f"{printable(path)}: not a readable .npz file ({printable(err)})") from None


def _describe(archive: zipfile.ZipFile, path: Path, key: str, max_bytes: int | None) -> NpyMember:
    where = f"{printable(path)}: {printable(key)}"
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise NpzError(f"{printable(path)}: no array {printable(key)}") from None
    try:
        with archive.open(info) as handle:
            shape, fortran, dtype = read_npy_header(handle, where)
            header_bytes = handle.tell()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as err:
        raise NpzError(f"{where}: unreadable member ({printable(err)})") from None
    if dtype.kind not in "biufc":  # objects would need pickle; strings, records, dates are no array we read
        raise NpzError(f"{where}: dtype {printable(dtype)} is not a plain numeric array")
    nbytes = math.prod(shape) * dtype.itemsize
    if header_bytes + nbytes != info.file_size:
        raise NpzError(f"{where}: its header declares shape {shape} of {dtype} ({nbytes:,} bytes) but the member "
                       f"holds {max(info.file_size - header_bytes, 0):,} bytes of data: a forged or damaged file")
    if max_bytes is not None and nbytes > max_bytes:
        raise NpzError(f"{where}: shape {shape} of {dtype} is {nbytes:,} bytes, more than the {max_bytes:,} "
                       "this reader accepts")
    return NpyMember(key, shape, dtype, fortran, nbytes)


def _check_ratio(archive: zipfile.ZipFile, path: Path, key: str) -> None:
    """Refuse a large member that inflates far more than real arrays do (for arrays read whole; a
    stream read piece by piece, such as a batch of all-black images, may legitimately be all zeros)."""
    info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > RATIO_FLOOR \
            and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise NpzError(f"{printable(path)}: {printable(key)}: {info.compress_size:,} compressed bytes would inflate "
                       f"to {info.file_size:,} (over {MAX_RATIO}:1): refusing what looks like a zip bomb")


def _read(archive: zipfile.ZipFile, path: Path, member: NpyMember) -> np.ndarray:
    where = f"{printable(path)}: {printable(member.key)}"
    array = np.empty(member.shape, dtype=member.dtype, order="F" if member.fortran else "C")
    buffer = memoryview(array.reshape(-1, order="A").view(np.uint8))  # the array's own bytes, in file order
    got = 0
    try:
        with archive.open(f"{member.key}.npy") as handle:
            read_npy_header(handle, where)
            while got < member.nbytes:
                chunk = handle.read(min(CHUNK, member.nbytes - got))
                if not chunk:
                    break
                buffer[got:got + len(chunk)] = chunk
                got += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise NpzError(f"{where}: unreadable data ({printable(err)})") from None
    if got != member.nbytes:
        raise NpzError(f"{where}: the data ends after {got:,} of {member.nbytes:,} bytes (truncated file?)")
    return array
