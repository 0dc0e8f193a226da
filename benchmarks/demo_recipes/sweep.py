"""Scoring one trained run's EMA model at every guidance setting of a grid (scale x sigma interval
x EDM S_churn), every row from the same initial noise; rows as benchmarks/guidance writes them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from maskdit import Experiment, ExperimentSpec, evaluate_denoiser, open_run, validate_spec
from maskdit.io import atomic_write

Interval = tuple[float, float] | None


def parse_interval(text: str) -> Interval:
    """'lo,hi' (sigmas) or 'none' (guide at every sigma)."""
    if text == "none":
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval {text!r}: give 'lo,hi' (sigmas) or 'none'") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"interval {text!r}: need 0 <= lo <= hi")
    return lo, hi


def guided(spec: ExperimentSpec, *, cfg: float, interval: Interval, s_churn: float,
           num_samples: int) -> ExperimentSpec:
    """The run's spec sampling with this guidance and churn (a JSON patch, as ``--set`` applies it)."""
    patch: dict[str, Any] = {"sampler.cfg_scale": cfg, "sampler.cfg_interval": list(interval) if interval else None,
                             "eval.num_samples": num_samples, "eval.grid_per_class": 0}
    if s_churn or "s_churn" in type(spec.sampler).model_fields:  # a deterministic sampler has no churn to set
        patch["sampler.s_churn"] = s_churn
    return validate_spec(spec.model_dump(mode="json"), [f"{k}={json.dumps(v)}" for k, v in patch.items()])


def row_key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same measurement (rows written before churn / noise seeds existed:
    S_churn 0, the run's seed)."""
    return (row["checkpoint"], row["weights"], row["steps"], row["cfg"], tuple(row["interval"] or ()),
            row["num_samples"], row.get("s_churn", 0.0), row.get("noise_seed"))


def sweep(run_dir: Path, out: Path, *, cfgs: list[float], intervals: list[Interval], churns: list[float],
          num_samples: int) -> list[dict[str, Any]]:
    """Rows of every (churn, cfg, interval) not yet in ``out`` (rewritten after each row, so an
    interrupted sweep resumes); cfg 1 does not guide and gets one row."""
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"] if out.exists() else []
    loaded = open_run(run_dir, "ema")
    spec, evaluator = loaded.spec, None
    for s_churn in churns:
        for cfg in cfgs:
            for interval in intervals if cfg != 1 else [None]:
                row = {"checkpoint": str(loaded.source), "step": loaded.step, "weights": "ema",
                       "steps": spec.sampler.steps, "sampler": spec.sampler.name, "cfg": cfg,
                       "interval": list(interval) if interval else None, "s_churn": s_churn, "noise_seed": None,
                       "num_samples": num_samples}
                if row_key(row) in {row_key(old) for old in rows}:
                    continue
                experiment = Experiment(guided(spec, cfg=cfg, interval=interval, s_churn=s_churn,
                                               num_samples=num_samples))
                evaluator = evaluator or experiment.evaluator()
                started = time.perf_counter()
                record = evaluate_denoiser(loaded.denoiser, experiment, evaluator=evaluator)
                row.update({key: record.get(key) for key in ("fid", "class_accuracy", "precision", "recall")},
                           seconds=round(time.perf_counter() - started, 1))
                rows.append(row)
                atomic_write(out, lambda tmp: tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n",
                                                             encoding="utf-8"))
                print(f"  cfg {cfg:4g} interval {str(interval or 'all'):14} churn {s_churn:g} FID {row['fid']:7.2f} "
                      f"acc {row['class_accuracy']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return rows
