"""Where maskdit keeps files it derives (parsed datasets, reference statistics)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MASKDIT_CACHE"


def cache_dir() -> Path:
    """``$MASKDIT_CACHE``, else ``$XDG_CACHE_HOME/maskdit``, else ``~/.cache/maskdit`` (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "maskdit"

