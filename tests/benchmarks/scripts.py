"""What the benchmark-script tests share: loading a script by path, and a tiny model of the default preset."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# --set overrides that shrink the default preset's MaskDiT to a model that samples in milliseconds
TINY_MODEL = ["model.depth=1", "model.hidden_size=32", "model.num_heads=1", "model.patch_size=8",
              "model.decoder_depth=1", "model.decoder_hidden_size=32", "model.decoder_num_heads=1",
              "eval.batch_size=16"]


def load_script(name: str) -> ModuleType:
    """benchmarks/<name>.py imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
