"""The run's loss curve: loss.png drawn from the training lines of metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

from maskdit.io.jsonl import read_jsonl


def plot_losses(metrics_path: Path, out_path: Path) -> Path | None:
    """Loss (and each term) against step, log scale; None when there is nothing to plot."""
    records = [r for r in read_jsonl(metrics_path) if "loss" in r and math.isfinite(r["loss"])]
    if not records:
        return None
    import matplotlib  # deferred: matplotlib takes ~0.3 s to import, only plots need it

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
