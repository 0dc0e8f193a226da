"""Before the contract tests are collected: load the plugins of installed packages (their
``maskdit.plugins`` entry points), as every maskdit command does, so they are checked too.
Modules named with pytest's ``-p`` were imported by pytest itself before this."""

from __future__ import annotations

import pytest

from maskdit.config.plugins import PluginLoadError, load_plugins


def pytest_configure(config: pytest.Config) -> None:
    try:
        load_plugins(entry_points=True)
    except PluginLoadError as err:
        raise pytest.UsageError(str(err)) from err
