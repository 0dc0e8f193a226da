"""maskdit.testing as a package: a library package (no application imports), its optional
dependencies named when missing, its test modules collected once by the project's own run."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "maskdit" / "testing"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_checks_never_import_the_application():
    """Not maskdit.app, nor the top-level maskdit package (which re-exports the application)."""
    bad = {f"{path.name}: {module}" for path in PACKAGE.glob("*.py") for module in _imports(path)
           if module == "maskdit" or module.startswith("maskdit.app")}
    assert bad == set()


def test_without_hypothesis_the_error_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name == "maskdit.testing" or name.startswith("maskdit.testing.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # what a missing package looks like to import
    expected = r"maskdit.testing needs pytest and hypothesis .*pip install 'maskdit\[testing\]'"
    with pytest.raises(ImportError, match=expected):
        importlib.import_module("maskdit.testing")


def test_the_testing_extra_is_declared_and_make_test_installs_it():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["project"]["optional-dependencies"]
    assert {"pytest>=7", "hypothesis>=6"} <= set(extras["testing"]) <= set(extras["dev"])
    assert "pip install -e '.[dev]'" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_shipped_tests_are_collected_once_by_the_projects_run():
    """testpaths keeps pytest out of maskdit/ (no second copy); every shipped test function is
    imported by exactly one module under tests/, so each runs once."""
    tomllib = pytest.importorskip("tomllib")
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"]
    shipped = {(path.stem, node.name) for path in PACKAGE.glob("test_*.py")
               for node in ast.parse(path.read_text(encoding="utf-8")).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    assert {module for module, _ in shipped} == {"test_masking", "test_losses", "test_samplers", "test_network",
                                                 "test_process", "test_encoders"}
    imported = [(node.module.rsplit(".", 1)[1], alias.name) for path in (ROOT / "tests").rglob("test_*.py")
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("maskdit.testing.test_")
                for alias in node.names]
    assert sorted(imported) == sorted(shipped)
