"""Run metrics: JSON lines appended per log step, and a loss-curve PNG drawn from them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the rest is still useful
    return records


def plot_losses(metrics_path: Path, out_path: Path) -> Path | None:
    """Loss (and each term) against step, log scale; None when there is nothing to plot."""
    records = [r for r in read_jsonl(metrics_path) if "loss" in r and math.isfinite(r["loss"])]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], label="total", linewidth=2)
    for term in sorted({k for r in records for k in r.get("parts", {})}):
        points = [(r["step"], r["parts"][term]) for r in records if term in r.get("parts", {})]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=term, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
