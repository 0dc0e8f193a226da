"""The error every dataset raises for data that cannot be used as the spec says; the CLIs print it as one line."""

from __future__ import annotations

from maskdit.config.errors import InputError


class DataError(InputError):
    """Training data that is missing, empty, unreadable or disagrees with the spec; names the file or field."""
