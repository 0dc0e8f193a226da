"""Every study under benchmarks/ imports maskdit only through its public API (names that
``maskdit`` or one of its library subpackages exports), imports no other study, and edits no
sys.path; environment variables are set on the command line, not before the imports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.benchmarks.scripts import BENCHMARKS

PRIVATE = ("maskdit.app", "maskdit.config")  # the application and the kernel: reached via maskdit's own exports
STUDIES = sorted(path for path in BENCHMARKS.rglob("*.py") if path.parent != BENCHMARKS)  # the folders' files
MODULE_FILES = {path.stem: path.parent for path in BENCHMARKS.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) of every import statement in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def test_there_are_studies_to_check():
    assert {p.parent.name for p in STUDIES} >= {"train_step", "samplers", "guidance", "quality_vs_compute",
                                                "demo_recipes", "evaluation"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_a_study_uses_maskdits_public_api_and_no_other_study(path):
    for module, names, line in imports(path):
        where = f"{path.relative_to(BENCHMARKS)}:{line}"
        top = module.split(".")[0]
        if top == "maskdit":
            parts = module.split(".")
            assert len(parts) <= 2 and not module.startswith(PRIVATE), f"{where}: {module} is not a public package"
            package = importlib.import_module(module)
            assert (Path(package.__file__).name == "__init__.py"), f"{where}: {module} is a module, not a package"
            for name in names:
                assert name in getattr(package, "__all__", ()), f"{where}: {module} does not export {name}"
        elif top in MODULE_FILES:
            assert MODULE_FILES[top] == path.parent, f"{where}: imports {top} of another study"


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_a_study_leaves_sys_path_and_import_order_alone(path):
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    touched = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "path"
               and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    assert touched == [], f"{path.name}: sys.path at lines {touched}"
    assert "E402" not in text, f"{path.name}: imports after code"
