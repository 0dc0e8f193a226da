"""Candidate recipes for ``make demo``, over seeds: each recipe is the ``maskdit-demo`` preset (the
MaskDiT that ``make demo`` ran until 2026-12-05, kept as the base so that every recorded run keeps
its meaning) with a JSON patch (recipes.py; field path -> JSON value, what ``--set`` applies); the
``default`` preset is now the recipe ``dit-d4w96`` with guidance 2. Every (recipe, seed) trains
with ``python -m maskdit.build`` (its own run folder, its own eval.json at the recipe's sampler),
then its EMA checkpoint is scored at every guidance setting (sweep.py: 1,000 samples, the same
initial noise per row).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/demo_recipes/demo_recipes.py run --recipes base ema999 \\
        --seeds 0 1 --work-dir runs/demo-recipes
    python benchmarks/demo_recipes/demo_recipes.py report

A recipe that keeps the base preset's model and batch keeps its step counts, so a step costs what
the base's step costs and only what a step does (its lr, its average) changes; one with another
model, masking or batch gets the steps that cost at most the base's training FLOPs (sparse steps
save less time than FLOPs, so this stays within the base's wall-clock). ``run`` writes --out after
every run and every sampler row and skips what it holds, and a training that was interrupted
resumes from its checkpoint, so the study survives a lost session. Exit codes: 0 ok, 1 a training
failed, 2 bad input. Results: benchmarks/RESULTS.md, section demo_recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from recipes import BASE_PRESET, RECIPES, overrides
from sweep import parse_interval, sweep

from maskdit.io import atomic_write

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score the missing (recipe, seed) runs")
    run.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    run.add_argument("--work-dir", type=Path, default=Path("runs/demo-recipes"), help="where the run folders go")
    run.add_argument("--cfg", type=float, nargs="+", default=[2.5, 3.0])
    run.add_argument("--interval", type=parse_interval, nargs="+", default=[None, (0.1, 8.0)])
    run.add_argument("--churn", type=float, nargs="+", default=[0.0], help="EDM's S_churn values to sweep")
    run.add_argument("--num-samples", type=int, default=1000)
    run.add_argument("--threads", type=int, default=2)
    report = commands.add_parser("report", help="print the table of what --out holds")
    for sub in (run, report):
        sub.add_argument("--out", type=Path, default=HERE / "demo_recipes.json")
    args = parser.parse_args(argv)
    if args.command == "run" and (args.threads < 1 or args.num_samples < 1 or min(args.seeds) < 0):
        parser.error("--threads and --num-samples must be >= 1, --seeds >= 0")
    return args


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"runs": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("runs"), dict):
            raise TypeError("no 'runs' object")
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a study written by this script ({error}); move it away") from None
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Atomic: a kill mid-write never leaves half a study."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))


def train(run_dir: Path, recipe: str, seed: int, threads: int) -> float:
    """Train one run to the end with the command users run (resuming a started one); its seconds."""
    command = [sys.executable, "-m", "maskdit.build", BASE_PRESET, "--runs", str(run_dir.parent),
               "--set", f"name={run_dir.name}", "--set", f"seed={seed}"]
    for override in overrides(RECIPES[recipe]):
        command += ["--set", override]
    if (run_dir / "checkpoints").is_dir():
        command.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{run_dir.name}: maskdit.build exited {done.returncode}: {' | '.join(tail)}")
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    study = load(args.out)
    for recipe in args.recipes:
        patch = overrides(RECIPES[recipe])
        for seed in args.seeds:
            name = f"{recipe}-s{seed}"
            run_dir = (args.work_dir / name).resolve()
            entry = study["runs"].setdefault(name, {"recipe": recipe, "seed": seed, "overrides": patch})
            if entry["overrides"] != patch:
                print(f"error: {args.out}: {name} was run with the overrides {entry['overrides']}, the recipe now "
                      f"has {patch}; move the entry (and {run_dir}) away to run it afresh", file=sys.stderr)
                return 2
            if "eval" not in entry:
                if not (run_dir / "eval.json").exists():
                    print(f"{name}: training in {run_dir}", flush=True)
                    try:
                        entry["wall_seconds"] = round(train(run_dir, recipe, seed, args.threads), 1)
                    except RuntimeError as error:
                        print(f"error: {error}", file=sys.stderr)
                        return 1
                entry["eval"] = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
                save(args.out, study)
            entry["sweep"] = sweep(run_dir, run_dir / "guidance.json", cfgs=args.cfg, intervals=args.interval,
                                   churns=args.churn, num_samples=args.num_samples)
            save(args.out, study)
    print(format_report(study))
    return 0


def sampler_label(row: dict[str, Any]) -> str:
    interval = "all sigmas" if row["interval"] is None else f"sigma in [{row['interval'][0]:g}, {row['interval'][1]:g}]"
    churn = f", S_churn {row['s_churn']:g}" if row.get("s_churn") else ""
    return f"Euler {row['steps']}, cfg {row['cfg']:g}, {interval}{churn}"


def format_report(study: dict[str, Any]) -> str:
    """Per recipe and sampler setting: median FID and class accuracy over seeds, with the range."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in study["runs"].values():
        for row in entry.get("sweep", []):
            cells.setdefault((entry["recipe"], sampler_label(row)), []).append({**row, "seed": entry["seed"]})
    lines = ["| recipe | sampler | seeds | FID median (range) | class acc median (range) | recall median |",
             "|---|---|---:|---:|---:|---:|"]
    for (recipe, label), rows in sorted(cells.items(), key=lambda item: (item[0][0], statistics.median(
            r["fid"] for r in item[1]))):
        fids = [r["fid"] for r in rows]
        accs = [r["class_accuracy"] for r in rows]
        recalls = [r["recall"] for r in rows if r.get("recall") is not None]
        seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        lines.append(f"| {recipe} | {label} | {seeds} | {statistics.median(fids):.1f} ({min(fids):.1f}-{max(fids):.1f}) | "
                     f"{statistics.median(accs):.3f} ({min(accs):.3f}-{max(accs):.3f}) | "
                     f"{statistics.median(recalls) if recalls else float('nan'):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "report":
            print(format_report(load(args.out)))
            return 0
        return run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
