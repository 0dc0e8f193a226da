"""Reading JSON that users (or crashes) hand us: size-capped, no duplicate keys, no deep nesting.

Python's ``json`` silently keeps the last of two equal keys, recurses until the interpreter's
limit on deeply nested input (a RecursionError, not a JSON error), and reads whatever a path
yields (``/dev/zero`` never ends, a FIFO waits forever for a writer). Here only regular files are
read, up to a size cap, and every failure is a :class:`JSONInputError` naming the source (its
control characters escaped), so the CLIs can print one line.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from maskdit.config.errors import InputError, printable, short  # short: callers quote values as jsonio.short

SPEC_MAX_BYTES = 1 << 20  # a spec is a few KiB; 1 MiB leaves room for long phase lists
STATE_MAX_BYTES = 64 << 20


class JSONInputError(InputError):
    """JSON that cannot be accepted; the message names the source and the problem in one line."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONInputError(f"duplicate key {short(key)}")
        result[key] = value
    return result


def loads(text: str | bytes, *, source: str) -> Any:
    """Parse ``text``; duplicate keys, deep nesting and syntax errors raise JSONInputError naming ``source``."""
    source = printable(source)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except JSONInputError as err:
        raise JSONInputError(f"{source}: {err}") from None
    except json.JSONDecodeError as err:
        raise JSONInputError(f"{source}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise JSONInputError(f"{source}: JSON nested too deeply") from None
    except UnicodeDecodeError as err:
        raise JSONInputError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_capped(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refusing more than ``max_bytes`` (reads at most one
    byte past it). A FIFO, socket or device is refused before a byte is read: opening is
    non-blocking, so a FIFO without a writer cannot hang the command, and the opened file itself
    is checked (not its name, which could be swapped in between)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise JSONInputError(f"{printable(path)}: not a regular file ({_kind(info.st_mode)}); "
                             "give the path of a JSON file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise JSONInputError(f"{printable(path)}: {info.st_size} bytes, larger than {max_bytes // 1024} KiB; "
                                 "not a file this library writes or reads")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise JSONInputError(f"{printable(path)}: larger than {max_bytes // 1024} KiB; not a file this library "
                             "writes or reads")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def load_file(path: str | os.PathLike, *, max_bytes: int) -> Any:
    """Read and parse a JSON file (OSError for a missing or unreadable file, else JSONInputError)."""
    path = Path(path)
    raw = read_capped(path, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JSONInputError(f"{printable(path)}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return loads(text, source=str(path))
