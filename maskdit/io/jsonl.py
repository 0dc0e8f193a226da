"""JSON-lines files (metrics.jsonl): whole lines appended, cut back on resume, read leniently or strictly."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class MetricsWriteError(OSError):
    """metrics.jsonl could not be written (e.g. the disk is full); the file keeps only whole lines."""


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    append_line(path, json.dumps(record, allow_nan=True))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline, all or nothing: a failed write (a full disk) is cut back to
    the previous end of the file, so no half line is left for the next record to be glued onto.
    One write call per line with O_APPEND, so lines of concurrent appenders do not interleave."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        start = os.fstat(fd).st_size
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
    """The training step a metrics record belongs to (a skipped step logs its 0-based index)."""
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None
    return record["step"] + 1 if record.get("event") == "skipped_nonfinite" else record["step"]


def truncate_jsonl(path: Path, step: int) -> int:
    """Keep the records of steps <= ``step`` (what the checkpoint training resumes from had seen)
    and drop the rest and any cut line, so a resumed run logs every step once. Rewritten
    atomically; returns the number of lines dropped."""
    if not path.exists():
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
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise MetricsWriteError(err.errno, f"could not rewrite {path}: {err.strerror or err}") from None
    return len(lines) - len(kept)


def append_metrics(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one JSON line (non-finite floats are written as null)."""
    clean = {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
             for key, value in record.items()}
    line = json.dumps(clean, sort_keys=False, allow_nan=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, line)  # whole lines only, even when the disk fills up
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
