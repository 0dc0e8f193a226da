"""What the benchmark tests share: loading a study's modules (or a script) by path, running a study's
script as its docstring does, and a tiny model of the default preset."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
GOLDEN = Path(__file__).resolve().parent / "golden"
# --set overrides that shrink the default preset's MaskDiT to a model that samples in milliseconds
TINY_MODEL = ["model.depth=1", "model.hidden_size=32", "model.num_heads=1", "model.patch_size=8",
              "model.decoder_depth=1", "model.decoder_hidden_size=32", "model.decoder_num_heads=1",
              "eval.batch_size=16"]


def load_script(name: str) -> ModuleType:
    """benchmarks/<name>.py imported as a module (a single-file script outside a study folder)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_study(study: str, *names: str) -> dict[str, ModuleType]:
    """The modules ``names`` of benchmarks/<study>/, loaded in that order (each after the ones it
    imports). A script finds its siblings because Python puts its folder on sys.path; here each
    sibling is found in sys.modules under its bare name while the next ones load, then taken out
    again, so no study's modules stay visible to another's and sys.path is left alone."""
    clashing = [name for name in names if name in sys.modules]
    if clashing:
        raise RuntimeError(f"benchmarks/{study}: module names {clashing} are taken in this process")
    modules: dict[str, ModuleType] = {}
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / study / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            modules[name] = module
    finally:
        for name in names:
            sys.modules.pop(name, None)
    return modules


def run_script(study: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<study>/<script>.py ARGS`` from the repository root, as the docstrings say."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(BENCHMARKS / study / f"{script}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


def golden(name: str) -> str:
    """The committed copy of a study's report as it printed before the studies moved (2026-12-06)."""
    return (GOLDEN / f"{name}.txt").read_text(encoding="utf-8")
