"""Digits FID, class accuracy, precision and recall of one checkpoint over a grid of guidance
scales and guidance intervals (Kynkaenniemi et al. 2024, "Applying Guidance in a Limited
Interval Improves Sample and Distribution Quality": guide only while lo <= sigma <= hi).

Every row samples with the run's sampler and seed, so every row starts from the same initial
noise per image; only the guidance differs. ``--interval none`` guides at every sigma.
``--churn`` adds EDM's stochastic sampling (Karras et al. 2022, Algorithm 2: noise raised by
gamma = min(S_churn / steps, sqrt 2 - 1) before each step) as a third axis of the grid.
``--noise-seed`` draws the initial noise from other seeds than the run's: the same weights scored
with several noise seeds measure the evaluation's own spread, apart from the training's.

    python benchmarks/guidance/guidance.py runs/default                     # the default grid
    python benchmarks/guidance/guidance.py runs/default --cfg 3 4 --interval none 0.3,5 --weights ema model
    python benchmarks/guidance/guidance.py runs/default --cfg 3 --interval 0.1,8 --churn 0 2 4
    python benchmarks/guidance/guidance.py runs/default --cfg 2.5 --interval 0.1,8 --churn 4 --noise-seed 0 1 2
    python benchmarks/guidance/report.py [RECORD]                            # the tables of a record

Writes --out (default guidance.json next to this file) after every row and skips the rows it already
holds for the same checkpoint, so an interrupted sweep resumes. Each row's spec is the run's with a
JSON patch (field path -> value, what ``--set`` applies). Exit codes: 0 ok, 2 bad input.
Results: benchmarks/RESULTS.md, section guidance_interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from maskdit import Experiment, ExperimentSpec, evaluate_denoiser, open_run, validate_spec
from maskdit.eval import Evaluator
from maskdit.interop import CheckpointError
from maskdit.io import atomic_write


def parse_interval(text: str) -> tuple[float, float] | None:
    if text == "none":
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval {text!r}: give 'lo,hi' (sigmas) or 'none'") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"interval {text!r}: need 0 <= lo <= hi")
    return lo, hi


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder or checkpoint folder")
    parser.add_argument("--cfg", type=float, nargs="+", default=[2.0, 3.0, 4.0, 6.0])
    parser.add_argument("--interval", type=parse_interval, nargs="+", default=[None, (0.3, 5.0), (0.3, 80.0), (0.0, 5.0)],
                        help="'lo,hi' sigma intervals, or 'none' (guide everywhere)")
    parser.add_argument("--weights", choices=("ema", "model"), nargs="+", default=["ema"])
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's)")
    parser.add_argument("--churn", type=float, nargs="+", default=[0.0],
                        help="EDM's S_churn (stochastic sampling; gamma = min(S_churn / steps, sqrt 2 - 1) at "
                             "every step; 0: the deterministic ODE)")
    parser.add_argument("--noise-seed", type=int, nargs="+", default=[None],
                        help="seeds of the samples' initial noise (default: the run's seed)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "guidance.json")
    args = parser.parse_args(argv)
    if min(args.cfg) < 0 or min(args.churn) < 0 or args.num_samples < 1:
        parser.error("--cfg and --churn must be >= 0 and --num-samples >= 1")
    return args


def row_key(row: dict[str, Any]) -> tuple:
    return (row["checkpoint"], row["weights"], row["steps"], row["cfg"], tuple(row["interval"] or ()), row["num_samples"],
            row.get("s_churn", 0.0),  # sweeps written before --churn existed are deterministic
            row.get("noise_seed"))  # None: the run's seed (rows from before --noise-seed too)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rows = read_rows(args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done = {row_key(row) for row in rows}
    evaluator = None
    for weights in args.weights:
        try:
            loaded = open_run(args.run, weights)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        spec = loaded.spec
        steps = args.steps or spec.sampler.steps
        grid = [(cfg, interval, s_churn, noise_seed) for noise_seed in args.noise_seed for s_churn in args.churn
                for cfg in args.cfg for interval in (args.interval if cfg != 1 else [None])]
        for cfg, interval, s_churn, noise_seed in grid:
            row = {"checkpoint": str(loaded.source), "step": loaded.step, "weights": weights, "steps": steps,
                   "sampler": spec.sampler.name, "cfg": cfg, "interval": list(interval) if interval else None,
                   "s_churn": s_churn, "noise_seed": noise_seed, "num_samples": args.num_samples}
            if row_key(row) in done:
                continue
            experiment = Experiment(at_sampler(spec, cfg=cfg, interval=interval, s_churn=s_churn, steps=steps,
                                               num_samples=args.num_samples, noise_seed=noise_seed))
            evaluator = evaluator or experiment.evaluator()
            row.update(score(loaded.denoiser, experiment, evaluator))
            rows.append(row)
            done.add(row_key(row))
            write_rows(args.out, rows)
            seed_note = "" if noise_seed is None else f" noise seed {noise_seed}"
            print(f"{weights:5} steps {steps:3}{seed_note} cfg {cfg:4g} interval {str(interval or 'all'):14} churn {s_churn:g} "
                  f"FID {row['fid']:7.2f}  acc {row['class_accuracy']:.3f}  "
                  f"P {row['precision'] or float('nan'):.3f}  R {row['recall'] or float('nan'):.3f}  "
                  f"({row['seconds']:.0f} s)", flush=True)
    print(format_table([row for row in rows if row["checkpoint"] == str(loaded.source)]))
    return 0


def at_sampler(spec: ExperimentSpec, *, cfg: float, interval: tuple[float, float] | None, s_churn: float,
               steps: int, num_samples: int, noise_seed: int | None = None) -> ExperimentSpec:
    """``spec`` sampling with this guidance, interval, churn and step count, scoring ``num_samples``,
    from the initial noise of ``noise_seed`` (None: the run's seed, so every row starts from the same)."""
    patch: dict[str, Any] = {"sampler.cfg_scale": cfg, "sampler.cfg_interval": list(interval) if interval else None,
                             "sampler.steps": steps, "eval.num_samples": num_samples, "eval.grid_per_class": 0}
    if s_churn or "s_churn" in type(spec.sampler).model_fields:  # a deterministic sampler has no churn to set
        patch["sampler.s_churn"] = s_churn
    if noise_seed is not None:
        patch["seed"] = noise_seed
    return validate_spec(spec.model_dump(mode="json"), [f"{path}={json.dumps(value)}" for path, value in patch.items()])


def score(denoiser: torch.nn.Module, experiment: Experiment, evaluator: Evaluator) -> dict[str, Any]:
    """FID, class accuracy, precision and recall of ``denoiser``'s samples, and the seconds taken."""
    started = time.perf_counter()
    record = evaluate_denoiser(denoiser, experiment, evaluator=evaluator)
    return {**{key: record.get(key) for key in ("fid", "class_accuracy", "precision", "recall")},
            "seconds": round(time.perf_counter() - started, 1)}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a sweep file ([] when there is none); ValueError when it is not one."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a sweep written by this script ({error}); move it away") from None


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8"))


LEAD: dict[str, Callable[[dict[str, Any]], str]] = {"weights": lambda row: row["weights"], "steps": lambda row: f"{row['steps']}",
        "noise seed": lambda row: "run's" if row.get("noise_seed") is None else str(row["noise_seed"])}


def format_table(rows: list[dict[str, Any]], lead: dict[str, Callable[[dict[str, Any]], str]] = LEAD) -> str:
    """Markdown table of sweep rows, best FID first; ``lead``: the first columns (header -> cell)."""
    head = " | ".join(lead)
    lines = [f"| {head} | cfg | interval | S_churn | FID | class acc | precision | recall |",
             "|" + "---|" * len(lead) + "---:|---|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: r["fid"]):
        interval = "all" if row["interval"] is None else f"[{row['interval'][0]:g}, {row['interval'][1]:g}]"
        cells = " | ".join(cell(row) for cell in lead.values())
        lines.append(f"| {cells} | {row['cfg']:g} | {interval} | {row.get('s_churn', 0.0):g} | {row['fid']:.1f} | "
                     f"{row['class_accuracy']:.3f} | {row['precision'] or float('nan'):.3f} | "
                     f"{row['recall'] or float('nan'):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
