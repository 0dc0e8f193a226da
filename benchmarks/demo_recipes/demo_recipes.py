"""Candidate recipes for ``make demo``, over seeds: each recipe is the ``maskdit-demo`` preset (the
MaskDiT that ``make demo`` ran until 2026-12-05, kept as the base so that every recorded run keeps
its meaning) plus a few ``--set`` overrides; the ``default`` preset is now the recipe ``dit-d4w96``
with guidance 2. Every (recipe, seed) trains with ``python -m maskdit.build`` (its own run folder,
its own eval.json at the recipe's sampler), then its EMA checkpoint is scored at every guidance
setting by benchmarks/guidance.py (1,000 samples, the same initial noise per row).

    python benchmarks/demo_recipes.py run --recipes base ema999 --seeds 0 1 --work-dir runs/demo-recipes
    python benchmarks/demo_recipes.py report

A recipe that keeps the base preset's model and batch keeps its step counts, so a step costs what
the base's step costs and only what a step does (its lr, its average) changes; one with another
model, masking or batch gets the steps that cost at most the base's training FLOPs (sparse steps
save less time than FLOPs, so this stays within the base's wall-clock). ``run``
writes --out after every run and every sampler row and skips what it holds, and a training that
was interrupted resumes from its checkpoint, so the study survives a lost session. Exit codes:
0 ok, 1 a training failed, 2 bad input.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE_PRESET = "maskdit-demo"  # what every recipe overrides
sys.path.insert(0, str(HERE))  # the sibling script below, also when this file is imported by path
import guidance  # noqa: E402  (one sweep implementation)

# warm-up-stable-decay: the masked phase cools down over its second half to 0.25 x lr
# (2e-3 -> 5e-4, the unmasking lr), then the unmasking phase anneals linearly to 0
WSD = ['train.phases.0.lr_decay={"shape": "linear", "fraction": 0.5, "final": 0.25}',
       'train.phases.1.lr_decay={"shape": "linear", "fraction": 1.0, "final": 0.0}']
# the preset's EMA before 2026-12-02 (benchmarks/posthoc_ema.py found 0.98 samples far better)
EMA_999 = ["train.ema.decay=0.999"]
# the sparsity study's 256-token layout (benchmarks/_qvc_setup.py: patch 2, 6 x 64, DSM only) at the
# preset's wall-clock: a step there costs ~2x the preset's masked step, so ~half the steps
PATCH_2 = ["model.patch_size=2", "model.hidden_size=64", "model.num_heads=2", "model.decoder_depth=0",
           'losses.terms=[{"name": "dsm", "weight": 1.0}]',
           "train.phases.0.steps=1250", "train.phases.1.steps=125"]
# plain DiT (no mask, no decoder, DSM only): the sparsity study found it ahead of every sparse
# method at 64 tokens after ~half its budget; 1,650 steps cost the preset's training FLOPs
DIT = ["model.decoder_depth=0", 'masking={"name": "none"}', 'losses.terms=[{"name": "dsm", "weight": 1.0}]',
       'train.phases=[{"name": "dense", "steps": 1650}]']
RECIPES: dict[str, list[str]] = {
    "base": [],  # the base preset as it is (make demo's MaskDiT until 2026-12-05)
    "ema999": EMA_999,
    "wsd": WSD + EMA_999,  # as it was tested
    "wsd98": WSD,  # the cool-down with the preset's EMA (0.98)
    # half the batch, ~1.7x the steps: a step at batch 32 costs ~0.6x one at 64 (masked; ~0.52x unmasked)
    "b32": ["train.batch_size=32", "train.warmup_steps=400", "train.phases.0.steps=3800",
            "train.phases.1.steps=560"],
    # a quarter of the batch, ~3.5x the steps (b32 at seed 1: FID 21.0 against the preset's 37.0)
    "b16": ["train.batch_size=16", "train.warmup_steps=800", "train.phases.0.steps=7600",
            "train.phases.1.steps=1100"],
    "dit": DIT,
    # DiT at other widths and depths, each at the steps that cost the preset's training FLOPs: every
    # lr / EMA / batch / method recipe above sat at a median FID of ~21, so the model's size is the
    # axis left (a smaller model for more steps, or a larger one for fewer)
    "dit-d4": DIT[:-1] + ["model.depth=4", 'train.phases=[{"name": "dense", "steps": 2450}]'],
    "dit-d3": DIT[:-1] + ["model.depth=3", 'train.phases=[{"name": "dense", "steps": 3250}]'],
    "dit-d2": DIT[:-1] + ["model.depth=2", 'train.phases=[{"name": "dense", "steps": 4900}]'],
    "dit-w96": DIT[:-1] + ["model.hidden_size=96", "model.num_heads=3",
                           'train.phases=[{"name": "dense", "steps": 2800}]'],
    "dit-d4w96": DIT[:-1] + ["model.depth=4", "model.hidden_size=96", "model.num_heads=3",
                             'train.phases=[{"name": "dense", "steps": 4250}]'],
    "dit-w160": DIT[:-1] + ["model.hidden_size=160", "model.num_heads=5",
                            'train.phases=[{"name": "dense", "steps": 1080}]'],
    # the study's best FID at 256 tokens: deferred masking (MicroDiT) after a 2-block patch-mixer
    "p2-deferred": PATCH_2 + ['model.routing={"start": 2}'],
    # TREAD routing: blocks 1-4 on the kept half, the rest rejoin before block 5
    "p2-tread": PATCH_2 + ['model.routing={"start": 1, "end": 5}'],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score the missing (recipe, seed) runs")
    run.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    run.add_argument("--work-dir", type=Path, default=Path("runs/demo-recipes"), help="where the run folders go")
    run.add_argument("--cfg", type=float, nargs="+", default=[2.5, 3.0])
    run.add_argument("--interval", type=guidance.parse_interval, nargs="+", default=[None, (0.1, 8.0)])
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


def load(path: Path) -> dict:
    if not path.exists():
        return {"runs": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("runs"), dict):
            raise TypeError("no 'runs' object")
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a study written by this script ({error}); move it away") from None
    return data


def save(path: Path, data: dict) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)  # a kill mid-write never leaves half a study


def train(run_dir: Path, recipe: str, seed: int, threads: int) -> float:
    """Train one run to the end (resuming a started one); returns its wall-clock seconds."""
    command = [sys.executable, "-m", "maskdit.build", BASE_PRESET, "--runs", str(run_dir.parent),
               "--set", f"name={run_dir.name}", "--set", f"seed={seed}"]
    for override in RECIPES[recipe]:
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
    study = load(args.out)
    for recipe in args.recipes:
        for seed in args.seeds:
            name = f"{recipe}-s{seed}"
            run_dir = (args.work_dir / name).resolve()
            entry = study["runs"].setdefault(name, {"recipe": recipe, "seed": seed, "overrides": RECIPES[recipe]})
            if entry["overrides"] != RECIPES[recipe]:
                print(f"error: {args.out}: {name} was run with the overrides {entry['overrides']}, the recipe now "
                      f"has {RECIPES[recipe]}; move the entry (and {run_dir}) away to run it afresh", file=sys.stderr)
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
            sweep_file = run_dir / "guidance.json"
            code = guidance.main([str(run_dir), "--cfg", *map(str, args.cfg), "--interval",
                                  *("none" if interval is None else f"{interval[0]:g},{interval[1]:g}"
                                    for interval in args.interval),
                                  "--churn", *map(str, args.churn), "--num-samples", str(args.num_samples),
                                  "--threads", str(args.threads),
                                  "--out", str(sweep_file)])
            if code != 0:
                return code
            entry["sweep"] = json.loads(sweep_file.read_text(encoding="utf-8"))["rows"]
            save(args.out, study)
    print(format_report(study))
    return 0


def sampler_label(row: dict) -> str:
    interval = "all sigmas" if row["interval"] is None else f"sigma in [{row['interval'][0]:g}, {row['interval'][1]:g}]"
    churn = f", S_churn {row['s_churn']:g}" if row.get("s_churn") else ""
    return f"Euler {row['steps']}, cfg {row['cfg']:g}, {interval}{churn}"


def format_report(study: dict) -> str:
    """Per recipe and sampler setting: median FID and class accuracy over seeds, with the range."""
    cells: dict[tuple[str, str], list[dict]] = {}
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
