"""The step-time table both runners print (and report.py prints from their records)."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], memory_key: str, memory_label: str, memory_scale: float = 2**20) -> str:
    """One line per row: preset, variant, r, batch, median/min ms, images/s, memory, GMAC/sample, FLOP ratio."""
    width = max(10, len(memory_label))
    header = (f"{'preset':18s} {'variant':14s} {'r':>4s} {'batch':>5s} {'median ms':>10s} {'min ms':>9s} "
              f"{'img/s':>8s} {memory_label:>{width}s} {'GMAC/sample':>11s} "
              f"{'FLOPs vs r=0':>12s} {'params':>8s}")
    lines = [header, "-" * len(header)]
    for r in rows:
        flop_ratio = r.get("flop_ratio_vs_unmasked")
        lines.append(
            f"{r['preset']:18s} {r['variant']:14s} {r['mask_ratio']:4.2g} {r['batch']:5d} {r['median_ms']:10.1f} "
            f"{r['min_ms']:9.1f} {r['images_per_s']:8.2f} {r[memory_key] / memory_scale:{width}.2f} "
            f"{r['train_GMACs_per_sample']:11.2f} {'' if flop_ratio is None else f'{flop_ratio:.2f}':>12s} "
            f"{r['params_M']:7.2f}M"
        )
    return "\n".join(lines)


def memory_label(device: str, optimizer_step: bool) -> str:
    """The memory column's header for a CPU or CUDA run, with or without the optimiser's state."""
    if device.startswith("cuda"):
        return "peak MiB"
    return "p+g+adam+saved MiB" if optimizer_step else "p+g+saved MiB"
