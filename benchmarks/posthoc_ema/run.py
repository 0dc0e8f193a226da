"""Post-hoc EMA study: which average of one run's weights samples best, without retraining.

The averages come from the library (``maskdit.train``: Karras et al. 2024, "Analyzing and
Improving the Training Dynamics of Diffusion Models", Sec. 3, rebuilt from the run's kept
raw-weight snapshots); this study scores them over a grid of sampler settings. Profiles:

- ``ema``: the run's own EMA, read from the newest checkpoint (exact; the reference row);
- ``ema-rebuilt``: the run's own EMA schedule applied to the snapshots (the rebuild's error);
- ``raw``: the newest raw weights;
- ``power-<sigma_rel>``: EDM2's power-function EMA of relative width sigma_rel (their Eq. 3);
- ``ema-<decay>``: the run's EMA schedule (its warm-up setting) with another decay;
- ``window-<n>``: the plain mean of the last n updates' weights.

Every profile is scored with the run's sampler at each --cfg / --interval / --churn setting, the
same initial noise per row (``maskdit.evaluate_denoiser``: digits FID, class accuracy, precision,
recall).

    python -m maskdit.build --set name=snap --set train.checkpoint_every=50 --set train.keep_checkpoints=100
    python benchmarks/posthoc_ema/run.py sweep runs/snap --sigma-rel 0.05 0.1 0.15 0.2
    python benchmarks/posthoc_ema/run.py report          # the tables of results.json

``sweep`` writes --out (default results.json beside this file) after every row and skips the
rows it holds, so an interrupted sweep resumes. Exit codes: 0 ok, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from maskdit import Experiment, ExperimentSpec, evaluate_denoiser, load_run
from maskdit.io import atomic_write
from maskdit.train import (
    SIGMA_REL_MAX,
    EMAProfile,
    PowerProfile,
    Snapshots,
    WindowProfile,
    average_snapshots,
    averaged_denoiser,
    plan_average,
    read_snapshots,
)

RESULTS = Path(__file__).resolve().parent / "results.json"
METRICS = ("fid", "class_accuracy", "precision", "recall")
NO_LIMIT = 1.0  # plan every profile; the sweep skips those with too much weight before the first snapshot
LOST_WEIGHT_LIMIT = 0.01


def parse_interval(text: str) -> list[float] | None:
    """'lo,hi' (sigmas, guidance only in between) or 'none' (guidance everywhere)."""
    if text == "none":
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval {text!r}: give 'lo,hi' (sigmas) or 'none'") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"interval {text!r}: need 0 <= lo <= hi")
    return [lo, hi]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="print the tables of a results file")
    report.add_argument("--out", type=Path, default=RESULTS, help="results file (default: the committed record)")
    sweep = commands.add_parser("sweep", help="score the profiles of one run")
    sweep.add_argument("run", type=Path, help="run folder whose checkpoints/ holds the snapshots")
    sweep.add_argument("--sigma-rel", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    sweep.add_argument("--ema-decay", type=float, nargs="+", default=[], help="EMA decays to rebuild")
    sweep.add_argument("--window", type=int, nargs="+", default=[], help="plain means of the last n updates")
    sweep.add_argument("--only", nargs="+", default=None, metavar="PROFILE",
                       help="score only these profiles (names as in the table, e.g. ema ema-0.98 window-100)")
    sweep.add_argument("--cfg", type=float, nargs="+", default=None, help="default: the run's")
    sweep.add_argument("--interval", type=parse_interval, nargs="+", default=None,
                       help="'lo,hi' or 'none' (default: the run's)")
    sweep.add_argument("--churn", type=float, nargs="+", default=None, help="default: the run's")
    sweep.add_argument("--num-samples", type=int, default=1000)
    sweep.add_argument("--threads", type=int, default=2)
    sweep.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        if any(not 0 < s <= SIGMA_REL_MAX for s in args.sigma_rel):
            parser.error(f"--sigma-rel values must be in (0, {SIGMA_REL_MAX:.4f}]")
        if any(not 0 <= d < 1 for d in args.ema_decay) or any(n < 1 for n in args.window):
            parser.error("--ema-decay values must be in [0, 1) and --window lengths >= 1")
        if args.num_samples < 1 or min(args.cfg or [0]) < 0 or min(args.churn or [0]) < 0:
            parser.error("--num-samples must be >= 1, --cfg and --churn >= 0")
    return args


def profiles(args: argparse.Namespace, own: EMAProfile) -> dict[str, EMAProfile | PowerProfile | WindowProfile | None]:
    """Profile name -> how to rebuild it (None: read from the newest checkpoint)."""
    found: dict[str, Any] = {"ema": None, "ema-rebuilt": own, "raw": None}
    found.update({PowerProfile(s).name: PowerProfile(s) for s in args.sigma_rel})
    found.update({EMAProfile(d).name: EMAProfile(d, warmup=own.warmup) for d in args.ema_decay})
    found.update({WindowProfile(n).name: WindowProfile(n) for n in args.window})
    return found


def at_setting(spec: ExperimentSpec, *, cfg: float, interval: list[float] | None, s_churn: float,
               num_samples: int) -> ExperimentSpec:
    """``spec`` with this guidance scale, interval and churn, scoring ``num_samples`` (a JSON patch)."""
    data = spec.model_dump(mode="json")
    data["sampler"].update(cfg_scale=cfg, cfg_interval=interval, s_churn=s_churn)
    data["eval"].update(num_samples=num_samples, grid_per_class=0)
    return ExperimentSpec.model_validate(data)


def denoiser_for(run: Path, rebuild: Any, spec: ExperimentSpec, snapshots: Snapshots) -> torch.nn.Module:
    """The raw weights of the newest checkpoint (``rebuild`` None) or the rebuilt average."""
    if rebuild is None:
        return load_run(run, "model")[0]
    plan = plan_average(snapshots, rebuild, max_lost=NO_LIMIT)
    return averaged_denoiser(average_snapshots(plan), spec.model, source=f"{run} ({plan.profile})")


def sweep(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        snapshots = read_snapshots(args.run)
        own_ema, spec = load_run(args.run)
        rows = read_rows(args.out)
    except (ValueError, RuntimeError) as error:  # bad runs; the checkpoint files' CheckpointError is a RuntimeError
        print(f"error: {error}", file=sys.stderr)
        return 2
    own = EMAProfile(spec.train.ema.decay, warmup=spec.train.ema.warmup)
    found = profiles(args, own)
    unknown = sorted(set(args.only or []) - set(found))
    if unknown:
        print(f"error: --only {' '.join(unknown)}: no such profile (this study builds {', '.join(found)})",
              file=sys.stderr)
        return 2
    run, step = str(args.run.resolve()), snapshots.steps[-1]
    done = {row_key(row) for row in rows}
    evaluator = None
    for name, rebuild in found.items():
        if args.only is not None and name not in args.only:
            continue
        lost = plan_average(snapshots, rebuild, max_lost=NO_LIMIT).weight_before_first if rebuild else 0.0
        if lost > LOST_WEIGHT_LIMIT:
            print(f"skipping {name}: {lost:.1%} of its weight lies before the first snapshot "
                  f"(step {snapshots.steps[0]})", flush=True)
            continue
        todo = [row for row in grid(args, spec, run, step, name, len(snapshots.steps),
                                    [snapshots.steps[0], snapshots.steps[-1]], lost) if row_key(row) not in done]
        if not todo:
            continue
        denoiser = own_ema if name == "ema" else denoiser_for(args.run, rebuild, spec, snapshots)
        for row in todo:
            experiment = Experiment(at_setting(spec, cfg=row["cfg"], interval=row["interval"], s_churn=row["s_churn"],
                                               num_samples=args.num_samples))
            evaluator = evaluator or experiment.evaluator()
            started = time.perf_counter()
            record = evaluate_denoiser(denoiser, experiment, evaluator=evaluator)
            row.update({key: record.get(key) for key in METRICS}, seconds=round(time.perf_counter() - started, 1))
            rows.append(row)
            done.add(row_key(row))
            write_rows(args.out, rows)
            interval = tuple(row["interval"]) if row["interval"] else "all"
            print(f"{name:14} cfg {row['cfg']:g} interval {str(interval):12} churn {row['s_churn']:g}  "
                  f"FID {row['fid']:7.2f}  acc {row['class_accuracy']:.3f}  R {row['recall'] or float('nan'):.3f}  "
                  f"({row['seconds']:.0f} s)", flush=True)
    print(format_table([row for row in rows if row["run"] == run]))
    return 0


def grid(args: argparse.Namespace, spec: ExperimentSpec, run: str, step: int, name: str, count: int,
         ends: list[int], lost: float) -> Iterator[dict[str, Any]]:
    """The rows one profile needs: every churn x cfg x interval setting (default: the run's)."""
    for churn in args.churn or [spec.sampler.s_churn]:
        for cfg in args.cfg or [spec.sampler.cfg_scale]:
            for interval in args.interval or [list(spec.sampler.cfg_interval) if spec.sampler.cfg_interval else None]:
                yield {"run": run, "step": step, "profile": name, "snapshots": count, "snapshot_steps": ends,
                       "cfg": cfg, "interval": interval, "s_churn": churn, "num_samples": args.num_samples,
                       "weight_before_first": round(lost, 6)}


def row_key(row: dict[str, Any]) -> tuple:
    return (row["run"], row["step"], row["profile"], row["cfg"], tuple(row["interval"] or ()), row["s_churn"],
            row["num_samples"])


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file ([] when there is none); ValueError when it is not one."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a results file of this study ({error}); move it away") from None


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic: a sweep killed mid-write leaves the previous rows, never half a file."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8"))


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of one run's rows, best FID first."""
    lines = ["| profile | cfg | interval | S_churn | FID | class acc | precision | recall |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: r["fid"]):
        interval = "all" if row["interval"] is None else f"[{row['interval'][0]:g}, {row['interval'][1]:g}]"
        lines.append(f"| {row['profile']} | {row['cfg']:g} | {interval} | {row.get('s_churn', 0.0):g} | "
                     f"{row['fid']:.1f} | {row['class_accuracy']:.3f} | {row['precision'] or float('nan'):.3f} | "
                     f"{row['recall'] or float('nan'):.3f} |")
    return "\n".join(lines)


def report(rows: list[dict[str, Any]]) -> str:
    """Each run's path and its table, in the order the runs first appear."""
    runs = list(dict.fromkeys(row["run"] for row in rows))
    return "\n\n".join(f"{run}\n\n{format_table([r for r in rows if r['run'] == run])}" for run in runs) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        try:
            sys.stdout.write(report(read_rows(args.out)))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    return sweep(args)


if __name__ == "__main__":
    sys.exit(main())
