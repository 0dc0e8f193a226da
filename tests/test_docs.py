"""The docs users get: no citations of files outside the repository, and the README's table of
building blocks names the parts a researcher reaches for, each importable as written."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
OUTSIDE = ("REFERENCE" + ".md", "DESIGN" + ".md")  # the project's notes live outside the repository


def test_nothing_cites_files_outside_the_repository():
    files = [p for folder in ("maskdit", "tests", "benchmarks", "examples", "scripts") for p in (ROOT / folder).rglob("*")
             if p.suffix in (".py", ".md", ".json")] + [ROOT / "README.md"]
    citing = [str(p.relative_to(ROOT)) for p in files if any(name in p.read_text(encoding="utf-8", errors="replace") for name in OUTSIDE)]
    assert citing == []


def test_readme_building_blocks_table_lists_the_core_parts_and_they_import():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Building blocks", 1)[1].split("\n## ", 1)[0]
    for name in ("ModelSpec", "LossesSpec", "Objective", "EMA", "load_run", "Experiment", "sigmas[0] * noise"):
        assert name in table, name
    for module, names in re.findall(r"`from (maskdit[\w.]*) import ([\w, ]+)`", table):
        imported = __import__(module, fromlist=["_"])
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"{module}.{name.strip()}"
