"""One small generic registry used by every plugin kind (masking, schedules, blocks, losses, ...).

Each entry maps a name to a factory that builds the plugin from its validated spec. Entries
are added explicitly in each subpackage's ``__init__`` (never as an import side effect of an
unrelated module), registering a name twice raises, and an unknown name lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown plugin name, or a name registered twice."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> factory table for one kind of plugin.

    >>> shapes = Registry[str]("shape")
    >>> shapes.register("square", lambda spec: "square")  # doctest: +ELLIPSIS
    <function <lambda> at ...>
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Add ``factory`` under ``name``; usable directly or as a decorator."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")

        def add(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            if not callable(fn):
                raise RegistryError(f"{self.kind} {name!r}: factory must be callable, got {fn!r}")
            self._entries[name] = fn
            return fn

        return add if factory is None else add(factory)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names()) or '(none)'}"
            ) from None

    def build(self, spec: Any, **kwargs: Any) -> T:
        """Build the plugin named by ``spec.name`` from its spec."""
        return self.get(spec.name)(spec, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
