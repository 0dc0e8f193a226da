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


def test_readme_python_example_trains_and_samples():
    """The first Python block of the README, run as written: one epoch of MaskDiT on the digits, then
    a Heun sample of each class."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    samples, loss, optimizer = namespace["digits_0_to_9"], namespace["loss"], namespace["optimizer"]
    assert samples.shape == (10, 1, 32, 32) and bool(samples.isfinite().all())
    assert 0 < loss.item() < 2  # an untrained MaskDiT starts near 2.4 (DSM + 0.1 MAE)
    steps = {int(state["step"]) for state in optimizer.state.values()}
    assert steps == {63}  # 4,000 training digits at batch 64: every parameter stepped once per batch
