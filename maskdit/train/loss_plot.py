"""The run's loss curve: loss.png drawn from the training lines of metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

from maskdit.io.files import atomic_write
from maskdit.io.jsonl import read_jsonl


def _finite(value: object) -> bool:
    """A plottable value: a number, not null (a skipped step's loss), NaN or inf."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plot_losses(metrics_path: Path, out_path: Path) -> Path | None:
    """Loss (and each term) against step, log scale, written atomically; None when there is nothing to plot."""
    records = [r for r in read_jsonl(metrics_path) if _finite(r.get("loss"))]
    if not records:
        return None
    import matplotlib  # deferred: matplotlib takes ~0.3 s to import, only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], label="total", linewidth=2)
    for term in sorted({k for r in records for k in r.get("parts", {})}):
        points = [(r["step"], r["parts"][term]) for r in records if _finite(r.get("parts", {}).get(term))]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=term, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(out_path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return Path(out_path)
