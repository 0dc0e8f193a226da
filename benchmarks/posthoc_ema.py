"""Post-hoc EMA: which average of one run's weights samples best, without retraining.

A run that keeps a raw-weight checkpoint every few steps holds enough to rebuild any weight
average afterwards. Each profile is a weight per optimizer update; the weights theta_n between
two kept snapshots are taken as the straight line between them, so update n's weight is split
between its two neighbours (updates before the first snapshot go to the first). Profiles:

- ``ema``: the run's own EMA, read from the newest checkpoint (exact; the reference row);
- ``ema-rebuilt``: the run's own EMA decay schedule applied to the snapshots: how far the
  rebuild is from the exact row is the error of the snapshot spacing;
- ``raw``: the newest raw weights;
- ``power-<sigma_rel>``: the power-function EMA of Karras et al. 2024 ("Analyzing and Improving
  the Training Dynamics of Diffusion Models", Sec. 3), weight proportional to t^gamma over the
  run, gamma set by its relative standard deviation sigma_rel (their Eq. 3);
- ``ema-<decay>``: the run's EMA schedule (its warm-up setting) with another decay: what
  ``train.ema.decay`` would have given;
- ``window-<n>``: the plain mean of the last n updates' weights.

Every profile is scored with the run's sampler at each --cfg / --interval / --churn setting,
the same initial noise per row (digits FID, class accuracy, precision, recall).

    python -m maskdit.build --set name=snap --set train.checkpoint_every=50 --set train.keep_checkpoints=100
    python benchmarks/posthoc_ema.py runs/snap --sigma-rel 0.05 0.1 0.15 0.2

Writes --out (default benchmarks/posthoc_ema.json) after every row and skips the rows it holds,
so an interrupted sweep resumes. Exit codes: 0 ok, 2 bad input.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling script below, also when this file is imported by path
import guidance  # noqa: E402  (one scoring implementation)

from maskdit.app.experiment import Experiment  # noqa: E402
from maskdit.app.experiment_spec import ExperimentSpec  # noqa: E402
from maskdit.core.factory import build_model, wrap  # noqa: E402
from maskdit.interop.strict import load_strict  # noqa: E402
from maskdit.io.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, read_state  # noqa: E402

SIGMA_REL_MAX = math.sqrt(1 / 12)  # sigma_rel at gamma = 0 (a uniform average of the whole run)
LOST_WEIGHT_LIMIT = 0.01  # a profile may put at most this share of its weight before the first snapshot


def sigma_rel(gamma: float) -> float:
    """Relative standard deviation of the power-function EMA profile t^gamma (Karras et al. 2024, Eq. 3)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def gamma_for(target: float) -> float:
    """The exponent gamma >= 0 whose profile has relative standard deviation ``target``."""
    if not 0 < target <= SIGMA_REL_MAX:
        raise ValueError(f"sigma_rel {target:g} is outside (0, {SIGMA_REL_MAX:.4f}] (gamma >= 0)")
    if target == SIGMA_REL_MAX:
        return 0.0
    return brentq(lambda g: sigma_rel(g) - target, 0.0, 1e7)  # sigma_rel falls monotonically for gamma >= 0


def power_update_weights(updates: int, gamma: float) -> np.ndarray:
    """Weight of each update n = 1..updates under the profile t^gamma, summing to 1: the integral
    of t^gamma over (n - 1, n], scaled by the run's length so large gammas do not overflow."""
    edges = np.arange(updates + 1, dtype=np.float64) / updates
    return np.diff(edges ** (gamma + 1))


def window_update_weights(updates: int, length: int) -> np.ndarray:
    """Equal weights on the last ``length`` updates (all of them if the run is shorter)."""
    weights = np.zeros(updates)
    weights[-min(length, updates):] = 1.0 / min(length, updates)
    return weights


def ema_update_weights(updates: int, decay: float, warmup: bool) -> tuple[np.ndarray, float]:
    """Weight of each update's weights in an EMA after ``updates`` updates, and the weight left on
    the initial weights (maskdit.train.ema.EMA's decay schedule)."""
    n = np.arange(updates, dtype=np.float64)  # the update count before each update
    decays = np.minimum(decay, (1 + n) / (10 + n)) if warmup else np.full(updates, decay)
    later = np.append(np.cumprod(decays[::-1])[::-1][1:], 1.0)  # product of the decays after each update
    return (1 - decays) * later, float(np.prod(decays))


def snapshot_weights(update_weights: np.ndarray, steps: list[int]) -> tuple[np.ndarray, float]:
    """Spread per-update weights onto the snapshots at ``steps`` (ascending): update n between
    snapshots a < n <= b goes to both in proportion to its distance, weights after the last
    snapshot to the last. Returns the snapshot weights and the weight of the updates before the
    first snapshot (put on the first snapshot: the line cannot reach them)."""
    weights = np.zeros(len(steps))
    first = steps[0]
    weights[0] += float(update_weights[:first].sum())  # updates 1..first: the first snapshot
    lost = float(update_weights[:first - 1].sum())  # of which updates 1..first-1 lie before it
    for index, (a, b) in enumerate(zip(steps, steps[1:])):
        n = np.arange(a + 1, b + 1)
        w = update_weights[n - 1]
        share_b = (n - a) / (b - a)
        weights[index] += float((w * (1 - share_b)).sum())
        weights[index + 1] += float((w * share_b).sum())
    weights[-1] += float(update_weights[steps[-1]:].sum())
    return weights, lost


def average(paths: list[Path], weights: np.ndarray) -> dict[str, torch.Tensor]:
    """sum_k weights[k] * (raw weights of checkpoint k), accumulated in float64."""
    total: dict[str, torch.Tensor] = {}
    for path, weight in zip(paths, weights):
        if weight == 0:
            continue
        for name, value in load_checkpoint(path).tensors["model"].items():
            if value.is_floating_point():
                total[name] = total.get(name, 0) + weight * value.to(torch.float64)
            else:
                total.setdefault(name, value)
    return {name: value.to(torch.float32) if value.is_floating_point() else value for name, value in total.items()}


def denoiser_from(spec: ExperimentSpec, tensors: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    net = build_model(spec.model, device="meta")
    load_strict(net, {name.removeprefix("net."): value for name, value in tensors.items()}, source=source)
    return wrap(net, spec.model).eval()


def profiles(args, spec: ExperimentSpec, updates: int, steps: list[int]) -> dict[str, tuple[np.ndarray | None, float]]:
    """Profile name -> (snapshot weights, or None for the exact EMA; weight before the first snapshot)."""
    ema = spec.train.ema
    rebuilt, initial = ema_update_weights(updates, ema.decay, ema.warmup)
    found: dict[str, tuple[np.ndarray | None, float]] = {"ema": (None, 0.0)}
    weights, lost = snapshot_weights(rebuilt, steps)
    found["ema-rebuilt"] = (weights, lost + initial)
    raw = np.zeros(len(steps))
    raw[-1] = 1.0
    found["raw"] = (raw, 0.0)
    for target in args.sigma_rel:
        found[f"power-{target:g}"] = snapshot_weights(power_update_weights(updates, gamma_for(target)), steps)
    for decay in args.ema_decay:
        other, other_initial = ema_update_weights(updates, decay, ema.warmup)
        weights, lost = snapshot_weights(other, steps)
        found[f"ema-{decay:g}"] = (weights, lost + other_initial)
    for length in args.window:
        found[f"window-{length}"] = snapshot_weights(window_update_weights(updates, length), steps)
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder whose checkpoints/ holds the snapshots")
    parser.add_argument("--sigma-rel", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    parser.add_argument("--ema-decay", type=float, nargs="+", default=[], help="EMA decays to rebuild")
    parser.add_argument("--window", type=int, nargs="+", default=[], help="plain means of the last n updates")
    parser.add_argument("--only", nargs="+", default=None, metavar="PROFILE",
                        help="score only these profiles (names as in the table, e.g. ema ema-0.98 window-100)")
    parser.add_argument("--cfg", type=float, nargs="+", default=None, help="default: the run's")
    parser.add_argument("--interval", type=guidance.parse_interval, nargs="+", default=None,
                        help="'lo,hi' or 'none' (default: the run's)")
    parser.add_argument("--churn", type=float, nargs="+", default=None, help="default: the run's")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "posthoc_ema.json")
    args = parser.parse_args(argv)
    if any(not 0 < s <= SIGMA_REL_MAX for s in args.sigma_rel):
        parser.error(f"--sigma-rel values must be in (0, {SIGMA_REL_MAX:.4f}]")
    if any(not 0 <= d < 1 for d in args.ema_decay) or any(n < 1 for n in args.window):
        parser.error("--ema-decay values must be in [0, 1) and --window lengths >= 1")
    if args.num_samples < 1 or min(args.cfg or [0]) < 0 or min(args.churn or [0]) < 0:
        parser.error("--num-samples must be >= 1, --cfg and --churn >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = list_checkpoints(args.run / "checkpoints")
    if len(paths) < 2:
        print(f"error: {args.run / 'checkpoints'} holds {len(paths)} checkpoint(s); post-hoc averages need "
              f"the raw-weight snapshots of a run with train.keep_checkpoints > 1", file=sys.stderr)
        return 2
    try:
        newest = load_checkpoint(paths[-1])
        steps = [int(read_state(path)["step"]) for path in paths]
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        spec = ExperimentSpec.model_validate(newest.state.get("spec"))
    except ValidationError as error:
        print(f"error: {paths[-1]}: no valid experiment spec in its state.json ({error.error_count()} problem(s))",
              file=sys.stderr)
        return 2
    try:
        rows = guidance.read_rows(args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done = {row_key(row) for row in rows}
    grid = [(cfg, interval, churn) for churn in (args.churn or [spec.sampler.s_churn])
            for cfg in (args.cfg or [spec.sampler.cfg_scale])
            for interval in (args.interval or [spec.sampler.cfg_interval])]
    evaluator = None
    found = profiles(args, spec, newest.step, steps)
    unknown = sorted(set(args.only or []) - set(found))
    if unknown:
        print(f"error: --only {' '.join(unknown)}: no such profile (this command builds {', '.join(found)})",
              file=sys.stderr)
        return 2
    for name, (weights, lost) in found.items():
        if args.only is not None and name not in args.only:
            continue
        if lost > LOST_WEIGHT_LIMIT:
            print(f"skipping {name}: {lost:.1%} of its weight lies before the first snapshot (step {steps[0]})",
                  flush=True)
            continue
        todo = [{"run": str(args.run.resolve()), "step": newest.step, "profile": name, "snapshots": len(steps),
                 "snapshot_steps": [steps[0], steps[-1]], "cfg": cfg, "interval": list(interval) if interval else None,
                 "s_churn": churn, "num_samples": args.num_samples, "weight_before_first": round(lost, 6)}
                for cfg, interval, churn in grid]
        todo = [row for row in todo if row_key(row) not in done]
        if not todo:
            continue
        tensors = newest.tensors["ema"] if weights is None else average(paths, weights)
        denoiser = denoiser_from(spec, tensors, source=f"{args.run} ({name})")
        for row in todo:
            cfg, churn = row["cfg"], row["s_churn"]
            interval = tuple(row["interval"]) if row["interval"] else None
            experiment = Experiment(guidance.at_sampler(spec, cfg=cfg, interval=interval, s_churn=churn,
                                                        steps=spec.sampler.steps, num_samples=args.num_samples))
            evaluator = evaluator or experiment.evaluator()
            row.update(guidance.score(denoiser, experiment, evaluator))
            rows.append(row)
            done.add(row_key(row))
            guidance.write_rows(args.out, rows)
            print(f"{name:14} cfg {cfg:g} interval {str(interval or 'all'):12} churn {churn:g}  FID {row['fid']:7.2f}  "
                  f"acc {row['class_accuracy']:.3f}  R {row['recall'] or float('nan'):.3f}  ({row['seconds']:.0f} s)",
                  flush=True)
    print(guidance.format_table([row for row in rows if row["run"] == str(args.run.resolve())],
                                {"profile": lambda row: row["profile"]}))
    return 0


def row_key(row: dict) -> tuple:
    return (row["run"], row["step"], row["profile"], row["cfg"], tuple(row["interval"] or ()), row["s_churn"],
            row["num_samples"])


if __name__ == "__main__":
    sys.exit(main())
