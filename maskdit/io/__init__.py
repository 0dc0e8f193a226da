"""File I/O: checkpoint folders, weight files, JSON lines, images, the run lock, atomic writes."""

from __future__ import annotations

from maskdit.data.cache import atomic_write
from maskdit.io.checkpoint import latest_checkpoint

__all__ = ["atomic_write", "latest_checkpoint"]
