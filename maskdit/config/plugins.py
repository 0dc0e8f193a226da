"""Loading users' plugins, only ever by explicit action: ``--plugin MODULE`` on a command line,
or the ``maskdit.plugins`` entry-point group of an installed package.

A plugin module registers spec classes when imported (``@maskdit.config.registry.register(kind)``); an
entry point names such a module (``[project.entry-points."maskdit.plugins"] mine = "mypkg.plugins"``).
A spec file never triggers an import: it can only name plugins that are already registered.

An explicit ``--plugin`` that fails is an error. An installed package's entry point that fails (a
malformed value, a module that will not import) is only reported, once per call, and skipped: a
broken package elsewhere in the environment must not stop every command, ``--schema`` included;
a spec that names one of its plugins still fails, with the usual "unknown name" line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Sequence

from maskdit.config.errors import InputError, printable, short

ENTRY_POINT_GROUP = "maskdit.plugins"


class PluginLoadError(InputError, ImportError):
    """A plugin module that cannot be imported, or that fails while registering."""


class PluginWarning(UserWarning):
    """An installed package's plugin entry point that could not be loaded (and was skipped)."""


def load_plugins(modules: Sequence[str] = (), *, entry_points: bool = True,
                 warn: Callable[[str], None] | None = None) -> list[str]:
    """Import the installed packages' plugin entry points (when ``entry_points``), then each of
    ``modules``; returns the module names imported. Importing a module twice is a no-op (Python
    caches modules), so calling this again registers nothing twice.

    An entry point that cannot be loaded is skipped and reported as one line through ``warn``
    (default: a :class:`PluginWarning`). Raises PluginLoadError naming the module when one of
    ``modules`` cannot be imported or fails to register."""
    names: list[str] = []
    if entry_points:
        for problem in _load_entry_points(names):
            if warn is None:
                warnings.warn(problem, PluginWarning, stacklevel=2)
            else:
                warn(problem)
    for module in modules:
        if not _is_module_name(module):
            raise PluginLoadError(f"--plugin {printable(module)}: expected a module name such as mypkg.plugins")
        names.append(_import(module, f"--plugin {module}"))
    return names


def _load_entry_points(names: list[str]) -> list[str]:
    """Import every entry point's module, appending it to ``names``; returns one line per failure."""
    try:
        entries = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as err:  # noqa: BLE001 - a damaged package's metadata fails in many ways
        return [f"cannot read the installed packages' {ENTRY_POINT_GROUP!r} entry points "
                f"({type(err).__name__}: {printable(err)}); none loaded"]
    problems = []
    for entry in entries:
        what = f"entry point {short(entry.name)} = {short(entry.value)}"
        origin = getattr(entry.dist, "name", None)
        where = f" of the installed package {printable(origin)}" if origin else ""
        match = entry.pattern.match(entry.value)
        module = match.group("module") if match else ""
        try:
            if not _is_module_name(module):
                raise PluginLoadError(f"{what}{where}: not a module name such as mypkg.plugins")
            names.append(_import(module, f"{what}{where}"))
        except PluginLoadError as err:
            problems.append(f"{err}; skipped (its plugins cannot be named in specs)")
    return list(dict.fromkeys(problems))  # a package found twice on the path is reported once


def _is_module_name(module: str) -> bool:
    return bool(module) and all(part.isidentifier() for part in module.split("."))


def _import(module: str, what: str) -> str:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise PluginLoadError(f"{what}: cannot import {module}: {printable(err)}") from err
    except Exception as err:  # a plugin module failing while it registers (e.g. a duplicate name)
        raise PluginLoadError(f"{what}: {module} failed while loading: {type(err).__name__}: {printable(err)}") from err
    return module
