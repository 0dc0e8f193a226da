"""Loading users' plugins, only ever by explicit action: ``--plugin MODULE`` on a command line,
or the ``maskdit.plugins`` entry-point group of an installed package.

A plugin module registers spec classes when imported (``@maskdit.config.registry.register(kind)``); an
entry point names such a module (``[project.entry-points."maskdit.plugins"] mine = "mypkg.plugins"``).
A spec file never triggers an import: it can only name plugins that are already registered.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence

from maskdit.config.errors import InputError

ENTRY_POINT_GROUP = "maskdit.plugins"


class PluginLoadError(InputError, ImportError):
    """A plugin module that cannot be imported, or that fails while registering."""


def load_plugins(modules: Sequence[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import the installed packages' plugin entry points (when ``entry_points``), then each of
    ``modules``; returns the module names imported. Importing a module twice is a no-op (Python
    caches modules), so calling this again registers nothing twice.

    Raises PluginLoadError naming the module when one cannot be imported or fails to register."""
    names: list[str] = []
    if entry_points:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            names.append(_import(entry.module, f"entry point {entry.name!r} ({entry.value})"))
    for module in modules:
        if not module or not all(part.isidentifier() for part in module.split(".")):
            raise PluginLoadError(f"--plugin {module!r}: expected a module name such as mypkg.plugins")
        names.append(_import(module, f"--plugin {module}"))
    return names


def _import(module: str, what: str) -> str:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise PluginLoadError(f"{what}: cannot import {module}: {err}") from err
    except Exception as err:  # a plugin module failing while it registers (e.g. a duplicate name)
        raise PluginLoadError(f"{what}: {module} failed while loading: {type(err).__name__}: {err}") from err
    return module
