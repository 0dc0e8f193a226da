"""File I/O: checkpoint folders, weight files, JSON lines, images, the run lock, atomic writes."""

from __future__ import annotations

from maskdit.io.checkpoint import latest_checkpoint
from maskdit.io.files import atomic_write

__all__ = ["atomic_write", "latest_checkpoint"]
