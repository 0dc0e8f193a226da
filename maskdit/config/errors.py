"""InputError: what the user gave (a spec, an override, an option, a file) is wrong.

The library raises it, or a subclass (bad JSON, bad data, a damaged checkpoint, a launch that
does not fit the spec, a plugin that will not load), with one readable line per problem; every
command prints those lines and exits with code 2. A pydantic validation error becomes one
``field.path: problem (got value)`` line per problem, in the user's own field names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

MAX_QUOTE = 200  # characters of a bad value an error line quotes
_LONG_QUOTE = re.compile(r"'([^']{200,})'")  # a bad value a validator quoted in full


def short(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def printable(text: object, limit: int = MAX_QUOTE) -> str:
    """``str(text)`` as it is when every character prints, else its ``repr`` (quoted, control and
    other non-printing characters escaped: ``\\n``, ``\\x1b``, ``\\u202e``), cut to about ``limit``
    characters: a name read from a file (a tensor key, a plugin name, a path) can neither move the
    cursor, forge a second ``error:`` line, nor flood the terminal."""
    text = str(text)
    shown = text if text.isprintable() else repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def escaped(text: str) -> str:
    """``text`` with each non-printing character as its backslash escape and nothing else changed
    (no quotes added): for words that another quoting, such as a shell's, wraps afterwards."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def listed(items: Iterable[object], *, limit: int = 10) -> str:
    """The first ``limit`` of ``items`` (each through :func:`printable`), comma-separated, then how
    many more there are ("a, b, c ... and 19,990 more"), so a list read from a file stays one line."""
    items = list(items)
    shown = ", ".join(printable(item) for item in items[:limit])
    return shown if len(items) <= limit else f"{shown} ... and {len(items) - limit:,} more"


class InputError(ValueError):
    """Bad input, one problem per line: ``InputError("a", "b")`` or a message with newlines."""

    def __init__(self, *lines: object) -> None:
        super().__init__("\n".join(str(line) for line in lines))

    @property
    def lines(self) -> list[str]:
        """The problems, one per line (read from the message, so subclasses with their own
        ``__init__``, such as an OSError's, have them too)."""
        return [line for line in str(self).splitlines() if line.strip()] or [type(self).__name__]

    @classmethod
    def from_validation(cls, err: ValidationError, data: Any = None, *, prefix: str = "") -> InputError:
        """One line per problem of ``err`` (raised validating ``data``), paths under ``prefix``."""
        return cls(*validation_lines(err, data, prefix=prefix))



class CheckpointError(InputError, RuntimeError):
    """A checkpoint or weights file that cannot be written, read, or does not fit the model; the
    message names the file and why. An InputError (reading a damaged file is bad input: exit 2), and
    a RuntimeError as a failed checkpoint write of a training run has always been (its command: 1)."""

def validation_lines(err: ValidationError, data: Any = None, *, prefix: str = "") -> list[str]:
    """One 'path: problem (got value)' line per pydantic error; paths are the user's field names
    (``prefix``: where ``data`` sits in a larger document, e.g. 'sampler')."""
    lines = []
    for problem in err.errors(include_url=False):
        path = printable(".".join(part for part in (prefix, user_path(problem["loc"], data)) if part) or "spec")
        if problem["type"] == "union_tag_not_found" and "()" in problem["ctx"]["discriminator"]:
            message = "expected a number or an object with a 'name' field"  # a callable discriminator
        elif problem["type"] == "union_tag_not_found":
            message = f"needs a '{problem['ctx']['discriminator'].strip(chr(39))}' field naming the plugin"
        elif problem["type"] == "union_tag_invalid":
            message = (f"unknown name {short(problem['ctx']['tag'])}; valid names: {problem['ctx']['expected_tags']} "
                       "(a plugin's name needs its module: --plugin MODULE)")
        else:
            message = _LONG_QUOTE.sub(lambda m: short(m.group(1)), problem["msg"].removeprefix("Value error, "))
            owner = _owner(problem["loc"], data) if problem["type"] == "extra_forbidden" else None
            if isinstance(owner, dict) and isinstance(owner.get("name"), str):
                # e.g. masking.ratio on {"name": "none"}: the field belongs to another kind of plugin
                where, field = path.rsplit(".", 1)
                message += (f": the {owner['name']!r} {where} has no field {field!r} (a field of another kind "
                            f"needs the whole object: {where}={{\"name\": ..., ...}})")
        given = problem.get("input")
        shown = "" if problem["type"] in ("missing", "model_type") or isinstance(given, (dict, list)) else f" (got {short(given)})"
        lines.append(f"{path}: {message}{shown}")
    return list(dict.fromkeys(lines))  # a union can report one problem twice


def user_path(loc: tuple, data: Any) -> str:
    """Drop the parts of a pydantic error location that are not in the user's document
    (union tags such as 'heun' or 'number'), keeping a missing field's own name."""
    parts: list[str] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (isinstance(node, dict) and index == len(loc) - 1 and part != node.get("name")):
            continue
        parts.append(str(part))
    return ".".join(parts)


def _owner(loc: tuple, data: Any) -> Any:
    """The object of ``data`` that holds the field at ``loc`` (union tags skipped), or None."""
    node = data
    for part in loc[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
    return None if node is data else node  # the document's own top-level name is not a plugin's
