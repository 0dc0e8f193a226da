"""``python -m maskdit.ema RUN [--sigma-rel 0.05 0.1 ...] [--decay 0.98 ...] [--set eval.num_samples=200] [--save PROFILE]``.

Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
Models", Sec. 3): weight averages rebuilt from the raw-weight snapshots a run kept (train with
``train.keep_checkpoints`` > 1 and a small ``train.checkpoint_every``), each scored with the run's
sampler and metrics (its spec's ``sampler`` and ``eval`` sections; ``--set`` overrides them, not
the model), the same initial noise for every profile. Profiles: ``power-<sigma_rel>`` (EDM2's
power-function EMA, their Eq. 3) and ``ema-<decay>`` (the run's EMA schedule, its warm-up
setting, with another decay); the run's own EMA (``ema``, read exactly from the newest
checkpoint) is the reference row. Without --sigma-rel and --decay: sigma_rel 0.05 0.1 0.15 0.2.

Prints a table and writes it as JSON (``--out``, default RUN/posthoc_ema.json, rewritten after
every row). ``--save PROFILE`` also writes that average as RUN/posthoc/PROFILE.safetensors (with
its .json), a native export that ``maskdit.load_run`` and ``python -m maskdit.sample`` read.
``--set eval.num_samples=0`` scores nothing (to save a profile already chosen). Exit codes: 0 ok,
2 bad run / option / profile, 1 sampling or writing failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from maskdit.app import cli
from maskdit.app.evaluation import evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, validate_spec
from maskdit.app.run_loading import open_run
from maskdit.config.errors import InputError
from maskdit.interop.native import native_paths, save_native
from maskdit.io.checkpoint import CheckpointError, check_writable
from maskdit.io.files import atomic_write, check_inside, make_folder
from maskdit.io.runlock import RunLock
from maskdit.train.distributed import check_device
from maskdit.train.posthoc_ema import (
    MAX_LOST_WEIGHT,
    AveragePlan,
    EMAProfile,
    PowerProfile,
    Profile,
    Snapshots,
    average_snapshots,
    averaged_denoiser,
    plan_average,
    read_snapshots,
)

DEFAULT_SIGMA_RELS = (0.05, 0.1, 0.15, 0.2)
REFERENCE = "ema"  # the run's own EMA row
POSTHOC_DIR, TABLE_FILE = "posthoc", "posthoc_ema.json"
BOOKKEEPING = ("step", "kind", "num_samples", "clipped_fraction", "seconds", "sampler", "reference")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.ema", description=__doc__.split("\n\n")[1])
    parser.add_argument("run", type=Path, help="run folder whose checkpoints/ holds the raw-weight snapshots")
    parser.add_argument("--sigma-rel", type=cli.finite_float, nargs="+", default=[], metavar="S",
                        help="power-function EMA widths, in (0, 0.2887] (EDM2 Eq. 3)")
    parser.add_argument("--decay", type=cli.finite_float, nargs="+", default=[], metavar="D",
                        help="plain EMA decays in [0, 1), with the run's warm-up setting")
    cli.add_set_argument(parser, "eval.num_samples=200")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default RUN/posthoc_ema.json)")
    parser.add_argument("--save", default=None, metavar="PROFILE",
                        help="also write this profile's average as RUN/posthoc/PROFILE.safetensors (e.g. power-0.05)")
    parser.add_argument("--max-lost", type=cli.finite_float, default=MAX_LOST_WEIGHT,
                        help=f"largest share of a profile's weight allowed before the first snapshot "
                             f"(default {MAX_LOST_WEIGHT:g})")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    cli.add_plugin_argument(parser)
    return parser.parse_args(argv)


def profiles_from(args: argparse.Namespace, snapshots: Snapshots) -> list[Profile]:
    """The requested profiles, in order; InputError for an out-of-range value."""
    found: list[Profile] = []
    try:
        for sigma_rel in args.sigma_rel or ([] if args.decay else DEFAULT_SIGMA_RELS):
            found.append(PowerProfile(sigma_rel))
        if args.decay:
            own = snapshots.ema
            if own is None:
                raise InputError(f"{snapshots.paths[-1]}: no saved spec, so no EMA warm-up setting for --decay")
            found.extend(EMAProfile(decay, warmup=own.warmup) for decay in args.decay)
    except ValueError as err:
        flag = "--sigma-rel" if "sigma_rel" in str(err) else "--decay"
        raise InputError(f"{flag}: {err}") from None
    return found


def scoring_spec(loaded_spec: ExperimentSpec | None, overrides: list[str], run: Path) -> ExperimentSpec:
    """The run's spec with ``--set`` applied; the model (fixed by the weights) may not change."""
    if loaded_spec is None:
        raise InputError(f"{run}: holds no experiment spec; post-hoc EMA needs a training run")
    spec = validate_spec(loaded_spec.model_dump(mode="json"), overrides)
    if spec.model != loaded_spec.model:
        raise InputError("--set cannot change the model of a run (its weights fix it)")
    return spec


def row_for(name: str, plan: AveragePlan | None, record: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: the profile, how it was rebuilt, and its metrics (when scored)."""
    row: dict[str, Any] = {"profile": name, "weight_before_first": round(plan.weight_before_first, 6) if plan else 0.0}
    if record is not None:
        row.update({key: value for key, value in record.items() if key not in BOOKKEEPING})
        row["seconds"] = record["seconds"]
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows in the order scored (the run's own EMA first)."""
    metrics = [key for key in rows[0] if key not in ("profile", "weight_before_first", "seconds")]
    lines = ["| profile | weight before first | " + " | ".join(metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    for row in rows:
        cells = [f"{row[key]:.4g}" if isinstance(row.get(key), float) else str(row.get(key, "-")) for key in metrics]
        lines.append(f"| {row['profile']} | {row['weight_before_first']:.2%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8"))


def save_profile(denoiser: torch.nn.Module, run_dir: Path, name: str) -> Path:
    """RUN/posthoc/NAME.safetensors (+ .json), each checked to be the run's own file first (a
    symlink or hard link planted there is refused: the export would be written through it)."""
    tensors, sidecar = native_paths(run_dir / POSTHOC_DIR / name)
    for path in (tensors, sidecar):
        check_inside(run_dir, path)
    make_folder(run_dir, tensors.parent)
    return save_native(denoiser, tensors)


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    lock = None
    try:
        check_device(args.device, field="--device")
        snapshots = read_snapshots(args.run)
        profiles = profiles_from(args, snapshots)
        plans = {profile.name: plan_average(snapshots, profile, max_lost=args.max_lost) for profile in profiles}
        if args.save is not None and args.save not in (REFERENCE, *plans):
            raise InputError(f"--save {args.save}: no such profile (this run gives {', '.join((REFERENCE, *plans))})")
        loaded = open_run(args.run, "ema", device=args.device)
        spec = scoring_spec(loaded.spec, args.overrides, args.run)
        out = args.out or loaded.run_dir / TABLE_FILE
        check_writable(out.parent, needed_bytes=2**20)
        lock = RunLock(loaded.run_dir).acquire()  # a training run still writing snapshots refuses us
        if args.out is None:
            check_inside(loaded.run_dir, out)
        if args.save is not None:
            for path in native_paths(loaded.run_dir / POSTHOC_DIR / args.save):
                check_inside(loaded.run_dir, path)  # refused now, not after scoring every profile
        experiment = Experiment(spec)
        evaluator = experiment.evaluator(device=args.device) if spec.eval.num_samples else None
    except (OSError, ValueError, CheckpointError) as err:
        if lock is not None:
            lock.release()
        return cli.report(err)
    document: dict[str, Any] = {
        "run": str(loaded.run_dir.resolve()), "step": loaded.step, "snapshots": len(snapshots.paths),
        "snapshot_steps": [snapshots.steps[0], snapshots.steps[-1]], "num_samples": spec.eval.num_samples,
        "sampler": spec.sampler.model_dump(mode="json"), "rows": []}
    print(f"post-hoc EMA of {loaded.run_dir} (step {loaded.step}, {len(snapshots.paths)} snapshots from step "
          f"{snapshots.steps[0]}): {len(plans) + 1} profiles, {spec.eval.num_samples} samples each, "
          f"{spec.sampler.name} {spec.sampler.steps} steps", flush=True)
    try:
        for name, plan in [(REFERENCE, None), *plans.items()]:
            started = time.perf_counter()
            denoiser = loaded.denoiser if plan is None else averaged_denoiser(
                average_snapshots(plan), spec.model, source=f"{args.run} ({name})").to(args.device)
            record = None
            if evaluator is not None:
                record = evaluate_denoiser(denoiser, experiment, evaluator=evaluator, device=args.device)
            document["rows"].append(row_for(name, plan, record))
            write_json(out, document)
            if name == args.save:
                saved = save_profile(denoiser, loaded.run_dir, name)
                print(f"saved {name} as {saved}")
            shown = {key: value for key, value in document["rows"][-1].items() if key not in ("profile", "seconds")}
            print(f"{name:>14}: " + "  ".join(f"{key} {value:.4g}" for key, value in shown.items())
                  + f"  ({time.perf_counter() - started:.1f}s)", flush=True)
    except (CheckpointError, InputError) as err:  # a snapshot found corrupt or mismatched while averaging
        return cli.report(err)
    except (ValueError, OSError, torch.cuda.OutOfMemoryError) as err:
        return cli.report(err, code=cli.EXIT_FAILED)
    finally:
        lock.release()
    print(format_table(document["rows"]))
    print(f"wrote {out}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
