"""A plot of evaluation metrics over training steps (matplotlib, PNG, no pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from maskdit.io.files import atomic_write

DEFAULT_KEYS = ("fid", "class_accuracy", "precision", "recall")


def plot_metrics(records: Sequence[Mapping[str, Any]], path: str | os.PathLike, *,
                 keys: Sequence[str] = DEFAULT_KEYS, step_key: str = "step") -> Path:
    """One panel per metric in ``keys`` found in ``records`` (dicts with ``step_key``), value against step.

    Records without the step or the metric are skipped (a metrics file mixes training and eval lines).
    """
    series = {}
    for key in keys:
        points = sorted((r[step_key], r[key]) for r in records
                        if isinstance(r.get(step_key), (int, float)) and isinstance(r.get(key), (int, float)))
        if points:
            series[key] = points
    if not series:
        raise ValueError(f"no record has both {step_key!r} and any of {list(keys)}")
    figure = Figure(figsize=(3.2 * len(series), 2.8), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (key, points) in enumerate(series.items()):
        axes = figure.add_subplot(1, len(series), index + 1)
        steps, values = zip(*points)
        axes.plot(steps, values, marker="o")
        axes.set_xlabel(step_key)
        axes.set_title(key)
        axes.grid(alpha=0.3)
    path = Path(path)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
