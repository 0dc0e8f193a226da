"""The quality-vs-compute study's report: fractions of DiT's time to reach its final quality, table, plot.

A variant "reaches DiT's final quality" at the first point where its ready model's held-out loss
(interpolated linearly between evaluations) is at or below DiT's final held-out loss, and, for
FID, the first FID-evaluated point whose best-guidance FID is at or below DiT's final
best-guidance FID (an upper bound: FID is evaluated at few points). Each seed of a variant is
compared with DiT of the same seed (seed 0's DiT when that seed has no DiT run).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def first_reach(points: list[dict[str, Any]], target: float, key: str, metric: str = "heldout_loss") -> float | None:
    """``key`` (seconds or macs) where ``metric`` first gets to ``target`` or below, interpolated
    linearly between the evaluation before and the one at; None if never."""
    previous = None
    for point in sorted(points, key=lambda p: p[key]):
        if point[metric] <= target:
            if previous is None or previous[metric] <= point[metric]:
                return float(point[key])
            weight = (previous[metric] - target) / (previous[metric] - point[metric])
            return float(previous[key] + weight * (point[key] - previous[key]))
        previous = point
    return None


def reach_within(points: list[dict[str, Any]], target: float, key: str) -> float | None:
    """As ``first_reach``, but None also when the first evaluation is already at or below
    ``target`` (the run got there some time before it: not measured)."""
    first = min(points, key=lambda p: p[key])
    return None if first["heldout_loss"] <= target else first_reach(points, target, key)


def ratio_curve(record: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """At each of a run's points: DiT's time and steps to the same held-out loss, and the ratios.
    time ratio = step-time ratio x per-step learning ratio (+ the tuning branch's share), so the
    curve says which of the two decides, and whether the gap closes as training goes on."""
    rows = []
    for point in sorted(record["points"], key=lambda p: p["step"]):
        dit_seconds = reach_within(base["points"], point["heldout_loss"], "seconds")
        dit_steps = reach_within(base["points"], point["heldout_loss"], "step")
        rows.append({"step": point["step"], "seconds": point["seconds"], "heldout_loss": point["heldout_loss"],
                     "dit_seconds": dit_seconds,
                     "time_ratio": None if dit_seconds is None else point["seconds"] / dit_seconds,
                     "steps_ratio": None if dit_steps is None else point["step"] / dit_steps})
    return rows


def fid_points(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The FID-evaluated points of a run: its point at that step plus the sweep's figures."""
    by_step = {point["step"]: point for point in record["points"]}
    return [{**by_step[int(step)], **sweep} for step, sweep in record["fid"].items() if int(step) in by_step]


def retime(records: list[dict[str, Any]], seconds_per_step: dict[str, float]) -> list[dict[str, Any]]:
    """The records with every point's time recomputed from another machine's calibration
    (steps x that machine's step time, tuning steps x its tuning step time)."""
    out = []
    for record in records:
        name = record["variant"]
        if name not in seconds_per_step:  # not timed on that machine (an aligned variant)
            continue
        main, tune = seconds_per_step[name], seconds_per_step.get(f"{name}/tune", 0.0)
        points = [{**p, "seconds": p["step"] * main + p.get("tune_steps", 0) * tune} for p in record["points"]]
        plan = {**record["plan"], "seconds_per_step": {k: v for k, v in seconds_per_step.items()
                                                       if k == "dit" or k.split("/")[0] == name}}
        out.append({**record, "points": points, "plan": plan})
    return out


def _step_time(record: dict[str, Any]) -> float:
    """A run's own main step time (a variant sharing its twin's network holds it under its own name)."""
    return record["plan"]["seconds_per_step"][record["variant"]]


def _final(record: dict[str, Any]) -> dict[str, Any]:
    return max(record["points"], key=lambda p: p["step"])


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize_layout(records: list[dict[str, Any]], base: str = "dit") -> dict[str, Any]:
    """Per variant: fractions of DiT's time and FLOPs to DiT's final held-out loss and best FID, over
    seeds. ``base``: the DiT variant measured against (its records are the baseline)."""
    finished = [r for r in records if r["points"] and _final(r)["step"] == r["plan"]["main_steps"]]
    dit = {r["seed"]: r for r in finished if r["variant"] == base}
    if not dit:
        return {"variants": {}, "note": f"{base} has not finished yet: nothing to compare against"}
    rows: dict[str, Any] = {}
    for record in finished:
        base = dit.get(record["seed"], dit[min(dit)])
        base_final = _final(base)
        base_fid = fid_points(base)
        target_fid = min((p["best_fid"] for p in base_fid if p["step"] == base_final["step"]), default=None)
        seconds_per_step = record["plan"]["seconds_per_step"]
        row = rows.setdefault(record["variant"], {"seeds": [], "per_seed": {}})
        row["seeds"].append(record["seed"])
        final = _final(record)
        entry = {
            "final_heldout_loss": final["heldout_loss"], "dit_final_heldout_loss": base_final["heldout_loss"],
            "steps": final["step"], "seconds": final["seconds"], "macs": final["macs"],
            "step_time_vs_dit": seconds_per_step[record["variant"]] / _step_time(base),
        }
        for key in ("seconds", "macs"):
            reach = first_reach(record["points"], base_final["heldout_loss"], key)
            entry[f"loss_fraction_{key}"] = None if reach is None else reach / base_final[key]
        steps_to_reach = first_reach(record["points"], base_final["heldout_loss"], "step")
        entry["steps_vs_dit_to_dit_loss"] = None if steps_to_reach is None else steps_to_reach / base_final["step"]
        fids = sorted(fid_points(record), key=lambda p: p["seconds"])
        if fids:
            entry["final_best_fid"] = max(fids, key=lambda p: p["step"])["best_fid"]
            entry["final_unguided_fid"] = max(fids, key=lambda p: p["step"])["unguided_fid"]
            entry["final_class_accuracy"] = max(fids, key=lambda p: p["step"])["best_class_accuracy"]
        entry["dit_final_best_fid"] = target_fid
        reached = [p for p in fids if target_fid is not None and p["best_fid"] <= target_fid]
        for key in ("seconds", "macs"):
            entry[f"fid_fraction_{key}"] = reached[0][key] / base_final[key] if reached else None
        entry["ratio_curve"] = ratio_curve(record, base)
        row["per_seed"][str(record["seed"])] = entry
    for row in rows.values():
        seeds = row["per_seed"].values()
        for key in ("loss_fraction_seconds", "loss_fraction_macs", "fid_fraction_seconds", "fid_fraction_macs",
                    "final_best_fid", "final_unguided_fid", "final_heldout_loss", "step_time_vs_dit",
                    "steps_vs_dit_to_dit_loss", "final_class_accuracy"):
            values = [s[key] for s in seeds if s.get(key) is not None]
            row[key] = _spread(values)
            if key.endswith(("_seconds", "_macs")):
                row[f"{key}_every_seed"] = len(values) == len(row["seeds"])
    return {"variants": rows}


def _cell(spread: dict[str, float] | None, every: bool = True, digits: int = 2) -> str:
    if spread is None:
        return "not reached"
    text = f"{spread['median']:.{digits}f}"
    if spread["n"] > 1:
        text += f" [{spread['min']:.{digits}f}-{spread['max']:.{digits}f}]"
    return text if every else text + " (some seeds not)"


def format_table(layout: str, summary: dict[str, Any], base: str = "dit") -> str:
    width = max([14, *(len(name) for name in summary["variants"])])  # the variant column fits every name
    header = (f"{'variant':{width}s} {'seeds':>5s} {'step t':>6s} {'loss: time':>18s} {'loss: FLOPs':>18s} "
              f"{'FID: time':>18s} {'final loss':>10s} {'best FID':>16s} {'cfg1 FID':>9s} {'acc':>6s}")
    lines = [f"layout {layout}" + ("" if base == "dit" else f", against {base}"), header, "-" * len(header)]
    for name, row in sorted(summary["variants"].items(), key=lambda item: (item[0] != base, item[0])):
        lines.append(
            f"{name:{width}s} {len(row['seeds']):5d} {_cell(row['step_time_vs_dit']):>6s} "
            f"{_cell(row['loss_fraction_seconds'], row['loss_fraction_seconds_every_seed']):>18s} "
            f"{_cell(row['loss_fraction_macs'], row['loss_fraction_macs_every_seed']):>18s} "
            f"{_cell(row['fid_fraction_seconds'], row['fid_fraction_seconds_every_seed']):>18s} "
            f"{_cell(row['final_heldout_loss'], digits=4):>10s} {_cell(row['final_best_fid'], digits=1):>16s} "
            f"{_cell(row['final_unguided_fid'], digits=1):>9s} {_cell(row['final_class_accuracy'], digits=3):>6s}")
    lines.append("loss / FID: fraction of DiT's calibrated wall-clock (or FLOPs) at which the ready model first "
                 "reaches DiT's final held-out loss / best-guidance FID; median [min-max] over seeds")
    return "\n".join(lines)


def format_ratio_curves(summary: dict[str, Any], base: str = "dit") -> str:
    """Per run, at each evaluation: time ratio (per-step learning ratio) against DiT at the same
    held-out loss; '-' where DiT's evaluations do not bracket that loss."""
    lines = ["time to the same held-out loss vs DiT, at each evaluation: time ratio (steps ratio); "
             "< 1 = ahead of DiT"]
    width = max([18, *(len(name) + 3 for name in summary["variants"])])  # name + " s<seed>"
    for name, row in summary["variants"].items():
        if name == base:
            continue
        for seed, entry in row["per_seed"].items():
            cells = [f"{c['time_ratio']:.2f} ({c['steps_ratio']:.2f})" if c["time_ratio"] is not None else "-"
                     for c in entry["ratio_curve"]]
            lines.append(f"  {name + ' s' + seed:{width}s} step time {entry['step_time_vs_dit']:.2f}: " + "  ".join(cells))
    return "\n".join(lines)


def plot(records_by_layout: dict[str, list[dict[str, Any]]], path: Path) -> None:
    layouts = [name for name, records in records_by_layout.items() if records]
    figure = Figure(figsize=(15, 4.2 * max(len(layouts), 1)), layout="constrained")
    FigureCanvasAgg(figure)
    # one colour per variant across every layout's row, so that rows can be read against each other
    variants = sorted({r["variant"] for records in records_by_layout.values() for r in records})
    colours = {name: f"C{i % 10}" for i, name in enumerate(variants)}  # matplotlib's cycle has 10
    for row, layout in enumerate(layouts):
        records = sorted(records_by_layout[layout], key=lambda r: (r["variant"], r["seed"]))
        panels = (("seconds", 1.0, "heldout_loss", "calibrated training wall-clock (s)", "held-out EDM loss"),
                  ("macs", 1e12, "heldout_loss", "training compute (TMAC)", "held-out EDM loss"),
                  ("seconds", 1.0, "best_fid", "calibrated training wall-clock (s)", "digits FID, best guidance"))
        for col, (key, scale, metric, xlabel, ylabel) in enumerate(panels):
            axes = figure.add_subplot(len(layouts), 3, row * 3 + col + 1)
            for record in records:
                series = fid_points(record) if metric == "best_fid" else record["points"]
                series = sorted((p[key] / scale, p[metric]) for p in series)
                if series:
                    flow = "-fm-" in record["variant"]  # flow matching: square markers
                    axes.plot(*zip(*series), marker="s" if flow else "o", color=colours[record["variant"]],
                              linestyle="-" if record["seed"] == 0 else "--",
                              label=f"{record['variant']} s{record['seed']}")
            axes.set_xlabel(xlabel)
            axes.set_ylabel(ylabel)
            axes.set_yscale("log")
            axes.grid(alpha=0.3, which="both")
            axes.set_title(f"layout {layout}")
            if col == 0:
                axes.legend(fontsize=7)
    figure.savefig(path, dpi=100)
