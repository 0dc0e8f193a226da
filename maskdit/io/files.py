"""Generic file writing and hashing: atomic replacement, SHA-256 digests, and the checks that keep
every write inside a run folder to the run's own files.

A run folder may come from someone else. A symlink or hard link planted there (``.lock`` ->
``~/.bashrc``, ``checkpoints`` -> a folder of photos) would make a write or a delete land outside
it, so every path maskdit creates, writes, truncates, renames or deletes under a folder it owns
goes through :func:`check_inside` first, and files written in place are opened with
:func:`open_inside` (``O_NOFOLLOW``, then checked on the open descriptor).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from maskdit.config.errors import InputError

#: 0 where the OS has no O_NOFOLLOW (the lstat checks still refuse a symlink there)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: what maskdit's writers leave when killed mid-write: atomic_write's ``.NAME.XXXXXXXX.tmp`` (mkstemp's
#: 8 characters; older versions used the PID: ``.metrics.jsonl.PID.tmp``) and the write probe
TEMP_NAME = re.compile(r"\.(?:.+\.(?:[a-z0-9_]{8}|\d+)\.tmp|write-test-[a-z0-9_]+)")


class UnsafePathError(InputError):
    """A path inside a folder maskdit writes is a symlink, a hard link, or not the kind of file
    maskdit keeps there; the message names it. The command refuses (exit 2) and touches nothing."""


def check_inside(root: str | os.PathLike, path: str | os.PathLike, *, folder: bool = False) -> Path:
    """``path`` if writing (or deleting) it cannot touch anything outside ``root``.

    ``path`` must lie under ``root`` (no ``..``); every part of it below ``root`` that exists must
    be a real folder (not a symlink), and ``path`` itself, if it exists, a real folder (``folder``)
    or a regular file with no other hard link. ``root`` itself is the caller's choice and is not
    checked. Raises :class:`UnsafePathError` naming the offending path."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UnsafePathError(f"{path} is not inside {root}; refusing to write there") from None
    if ".." in parts:
        raise UnsafePathError(f"{path} leaves {root} through '..'; refusing to write there")
    current = root
    for index, part in enumerate(parts):
        current = current / part
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return path  # created by maskdit from here down (or not at all: the write fails on its own)
        last = index == len(parts) - 1
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePathError(f"{current} is a symbolic link; maskdit never follows links inside {root} "
                                  "(remove it, or use another folder)")
        if not last or folder:
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafePathError(f"{current} should be a folder maskdit writes into, but is not one")
        else:
            check_regular(current, info)
    return path


def check_regular(path: Path, info: os.stat_result) -> None:
    """A file maskdit writes in place must be a regular file with one link (a hard link would
    carry the write to the other name, possibly outside the folder)."""
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{path} should be a regular file, but is not one; refusing to write it")
    if info.st_nlink > 1:
        raise UnsafePathError(f"{path} has {info.st_nlink} hard links; writing it would change the other "
                              "names too (copy the file instead of linking it)")


def open_inside(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of a file maskdit writes in place, never through a symlink (``O_NOFOLLOW``),
    checked on the descriptor to be a regular file with one link. Returns the descriptor."""
    try:
        fd = os.open(path, flags | NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP or os.path.islink(path):
            raise UnsafePathError(f"{path} is a symbolic link; maskdit never writes through links") from None
        if err.errno == errno.EISDIR:
            raise UnsafePathError(f"{path} should be a regular file, but is a folder") from None
        raise
    try:
        check_regular(Path(path), os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_folder(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Create folder ``path`` under ``root`` (and its parents), refusing a symlink on the way."""
    path = check_inside(root, path, folder=True)
    path.mkdir(parents=True, exist_ok=True)
    return check_inside(root, path, folder=True)


def clean_temp_files(folder: str | os.PathLike, *, subfolders: bool = False, skip: tuple[str, ...] = ()
                     ) -> list[Path]:
    """Remove the temporary files maskdit's writers leave in ``folder`` when killed mid-write:
    regular files named as :data:`TEMP_NAME` says, nothing else (no folders, no links). With
    ``subfolders``, also in its real subfolders (not links) except those named in ``skip``."""
    folder = Path(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        if TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
        elif subfolders and entry.name not in skip and entry.is_dir(follow_symlinks=False):
            removed += clean_temp_files(entry.path)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, root: str | os.PathLike | None = None
                 ) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place.

    Readers never see a half-written file: concurrent writers race only on the final
    ``os.replace``, and each of them writes a complete file. With ``root`` (the folder maskdit owns,
    e.g. a run folder) ``path`` is first checked with :func:`check_inside`. The temporary file is
    ``.NAME.XXXXXXXX.tmp`` (:data:`TEMP_NAME`), so a killed writer's leftover can be recognised.
    """
    path = Path(path)
    if root is not None:
        check_inside(root, path)
        make_folder(root, path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; what we write is ordinary readable data
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 22) -> str:
    """The hex SHA-256 of a file, read in ``chunk``-byte blocks (large files never sit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
