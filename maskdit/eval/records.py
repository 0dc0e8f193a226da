"""The metrics file of a run: one JSON object per line, appended, never rewritten."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maskdit.io.jsonl import append_line


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
