"""JSON-lines files (metrics.jsonl): whole lines appended, cut back on resume, read leniently or strictly.

Every line is strict JSON: a non-finite float (NaN, inf) is written as ``null``, at any depth, so
any JSON reader can read the file. An append never glues onto a line cut by a crash: a last line
without its newline is ended when it is a whole record, and dropped when it is a cut one (the
lines before it stay as they were). The file is written in place only through
:func:`~maskdit.io.files.open_inside` (no symlink, no hard link).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maskdit.io.files import atomic_write, check_inside, open_inside

log = logging.getLogger(__name__)
TAIL_CHUNK = 1 << 16  # bytes read at a time, backwards, looking for the last newline


class MetricsWriteError(OSError):
    """metrics.jsonl could not be written (e.g. the disk is full); the file keeps only whole lines."""


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth, replaced by None (JSON's null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def json_line(record: Mapping[str, Any]) -> str:
    """``record`` as one line of strict JSON (non-finite floats as null)."""
    return json.dumps(finite_json(record), allow_nan=False)


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    append_line(path, json_line(record))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline, all or nothing: a failed write (a full disk) is cut back to
    the previous end of the file, so no half line is left for the next record to be glued onto.
    A last line the file already holds without its newline (a crash mid-write) is ended or
    dropped first (see the module). One write call per line with O_APPEND, so lines of
    concurrent appenders do not interleave. A symlink or hard link at ``path`` is refused
    (:class:`~maskdit.io.files.UnsafePathError`)."""
    data = (line + "\n").encode("utf-8")
    fd = open_inside(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        start = _end_last_line(fd, path)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as err:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise MetricsWriteError(err.errno, f"could not append to {path}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def _end_last_line(fd: int, path: str | os.PathLike) -> int:
    """Make the file end at a line end: a last line without its newline gets one when it is a
    whole JSON record, and is cut off when it is not. Returns the file's size afterwards."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start, tail = size, b""
    while start > 0 and b"\n" not in tail:
        step = min(TAIL_CHUNK, start)
        start -= step
        tail = os.pread(fd, step, start) + tail
    cut = start + tail.rfind(b"\n") + 1  # 0 when the file holds no newline at all
    try:
        json.loads(tail[tail.rfind(b"\n") + 1:].decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond the parser
        os.ftruncate(fd, cut)
        log.warning("%s: dropped a line cut by an earlier crash (%d bytes)", path, size - cut)
        return cut
    os.write(fd, b"\n")
    return size + 1


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the rest is still useful
    return records


def _last_step(record: Any) -> int | None:
    """The training step a metrics record belongs to. A skipped step's record carries its step
    and ``"loss": null``; files of older versions logged it by its 0-based index and no loss."""
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None
    old_skip = record.get("event") == "skipped_nonfinite" and "loss" not in record
    return record["step"] + 1 if old_skip else record["step"]


def truncate_jsonl(path: Path, step: int) -> int:
    """Keep the records of steps <= ``step`` (what the checkpoint training resumes from had seen)
    and drop the rest and any cut line, so a resumed run logs every step once. Rewritten
    atomically; returns the number of lines dropped."""
    if not check_inside(path.parent, path).exists():
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        last = _last_step(record)
        if last is None or last <= step:  # records of no training step (e.g. a stepless evaluation) stay
            kept.append(line)
    if len(kept) == len(lines):
        return 0
    try:
        atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8"),
                     root=path.parent)
    except OSError as err:
        raise MetricsWriteError(err.errno, f"could not rewrite {path}: {err.strerror or err}") from None
    return len(lines) - len(kept)


def append_metrics(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one JSON line (non-finite floats, at any depth, are written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, json_line(record))  # whole lines only, even when the disk fills up
    return path


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics file (a missing file has none); a malformed line raises naming it."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        records.append(record)
    return records
