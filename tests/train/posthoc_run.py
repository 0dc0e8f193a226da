"""A tiny training run that keeps a raw-weight snapshot at every step (for the post-hoc EMA tests)."""

from __future__ import annotations

import json
from pathlib import Path

from maskdit.app.commands.build import main as build

STEPS = 12
TINY_RUN = {
    "name": "snap",
    "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 32, "num_heads": 2,
              "decoder_depth": 1, "decoder_hidden_size": 32, "decoder_num_heads": 2, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5},
    "sampler": {"name": "heun", "steps": 2},
    "train": {"phases": [{"name": "masked", "steps": STEPS}], "batch_size": 16, "lr": 3e-3, "log_every": 4,
              "checkpoint_every": 1, "keep_checkpoints": 100, "ema": {"decay": 0.9, "warmup": True}},
    "eval": {"num_samples": 0, "batch_size": 20, "grid_per_class": 0},
}


def train_tiny_run(root: Path) -> Path:
    """Train TINY_RUN under ``root``; returns its run folder (one checkpoint per step)."""
    spec = root / "snap.json"
    spec.write_text(json.dumps(TINY_RUN), encoding="utf-8")
    if build([str(spec), "--runs", str(root)]) != 0:
        raise RuntimeError("the tiny snapshot run did not train")
    return root / "snap"
