"""The paper's claim on the digits: sample quality against training compute, MaskDiT vs DiT.

The same encoder (the ``default`` preset's 6 x 128 backbone, patch 4, 64 tokens on 32x32
MNIST-5k) is trained four ways with identical optimiser, precision (fp32), batch, data order,
noise distribution and EMA, each for the SAME wall-clock budget on this machine:

  dit            DiT: encoder only (no decoder), r = 0, DSM loss
  maskdit        MaskDiT's recipe: + 2 x 64 decoder, random masking r = 0.5, DSM + 0.1 MAE,
                 then unmasking tuning (r = 0, DSM, lr 5e-4) for the last 10 % of the steps
  maskdit-nomae  the same without the MAE term
  maskdit-block  the same recipe with block (BEiT-style rectangle) masking instead of random

A short calibration run times each phase's step first, so each variant's step count fills the
budget; the reported times are then the MEASURED training seconds (evaluation excluded). At
fixed fractions of each run the EMA model is sampled (Euler, 9 steps, cfg 3) and scored with the digits
FID and class accuracy against the held-out split. MaskDiT points before the unmasking phase
are of the masked-only model. Training FLOPs count multiply-adds of forward + backward at each
step's actual mask ratio.

    python benchmarks/quality_vs_compute.py            # full: ~45 min on 2 cores
    python benchmarks/quality_vs_compute.py --quick    # 2.4 min, same outputs; a smoke run (FIDs ~1000)

Writes benchmarks/quality_vs_compute.json and .png (FID against seconds and against FLOPs) and
prints a table with, per variant, the fraction of DiT's training time (and FLOPs) at which it
first reaches DiT's final FID.

Run it on an otherwise idle machine: the step times ARE the result. The OpenMP wait policy is
left at its default (threads spin between operations, as in a user's training run); forcing
OMP_WAIT_POLICY=PASSIVE made this small model's masked steps 0.16 -> 0.25 s and its DiT steps
0.25 -> 0.32 s here, hiding most of masking's saving behind thread wake-ups.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field, replace, asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _steps import machine  # noqa: E402  (the benchmarks' shared helpers)

from maskdit.core import build_denoiser, training_flops
from maskdit.data import build_dataset
from maskdit.eval.evaluator import build_evaluator
from maskdit.eval.run import evaluate_denoiser
from maskdit.job import phase_loss
from maskdit.spec import ExperimentSpec, load_spec_dict
from maskdit.train.loop import Trainer

HERE = Path(__file__).resolve().parent
UNMASKING_FRACTION = 0.1  # of a MaskDiT variant's steps (the demo: 300 of 2,600)
MASKED_TERMS = [{"name": "dsm", "weight": 1.0}, {"name": "mae", "weight": 0.1}]
DSM_ONLY = [{"name": "dsm", "weight": 1.0}]
VARIANTS: dict[str, dict[str, Any]] = {
    "dit": {"decoder_depth": 0, "masking": {"name": "none"}, "terms": DSM_ONLY, "unmasking": False},
    "maskdit": {"masking": {"name": "random", "ratio": 0.5}, "terms": MASKED_TERMS, "unmasking": True},
    "maskdit-nomae": {"masking": {"name": "random", "ratio": 0.5}, "terms": DSM_ONLY, "unmasking": True},
    "maskdit-block": {"masking": {"name": "block", "ratio": 0.5}, "terms": MASKED_TERMS, "unmasking": True},
}


@dataclass(frozen=True)
class Budget:
    train_seconds: float  # training wall-clock per variant
    eval_at: tuple[float, ...]  # fractions of the steps after which to evaluate
    num_samples: int
    sampler_steps: int
    calibration_steps: int


FULL = Budget(train_seconds=450, eval_at=(0.2, 0.4, 0.6, 0.8, 0.9, 1.0), num_samples=500, sampler_steps=9,
              calibration_steps=40)
QUICK = Budget(train_seconds=25, eval_at=(0.5, 0.9, 1.0), num_samples=100, sampler_steps=5, calibration_steps=12)


def variant_spec(name: str, steps: int, *, unmasking_steps: int = 0, eval_every: int | None = None,
                 num_samples: int = 500, sampler_steps: int = 9, seed: int = 0) -> ExperimentSpec:
    """The experiment spec of one variant: the default preset with the variant's changes."""
    variant = VARIANTS[name]
    data = load_spec_dict("default")
    data["name"] = f"qvc-{name}"
    data["seed"] = seed
    if "decoder_depth" in variant:
        data["model"] = {**data["model"], "decoder_depth": variant["decoder_depth"]}
    data["masking"] = variant["masking"]
    data["losses"] = {**data["losses"], "terms": variant["terms"]}
    # Euler: at <= 10 steps and cfg 3 Heun diverges on these models (benchmarks/samplers.py)
    data["sampler"] = {**data["sampler"], "name": "euler", "steps": sampler_steps}
    phases = [{"name": "masked" if unmasking_steps else "train", "steps": steps - unmasking_steps}]
    if unmasking_steps:
        phases.append({"name": "unmasking", "steps": unmasking_steps, "masking": {"name": "none"},
                       "loss_terms": DSM_ONLY, "lr": 0.0005})
    data["train"] = {**data["train"], "phases": phases, "checkpoint_every": steps, "keep_checkpoints": 1,
                     "sample_every": eval_every, "log_every": 50}
    data["eval"] = {**data["eval"], "num_samples": num_samples, "metrics": ["fid", "class_accuracy"],
                    "grid_per_class": 10}
    return ExperimentSpec.model_validate(data)


class FlopCounter:
    """Wraps the per-phase losses to add up training multiply-adds at each step's actual mask ratio."""

    def __init__(self, spec: ExperimentSpec) -> None:
        self.model_spec, self.batch = spec.model, spec.train.batch_size
        self.macs, self._per_ratio = 0, {}
        self._phase_loss = phase_loss(spec)

    def __call__(self, phase):
        loss = self._phase_loss(phase)

        def counted(model, images, labels, **kwargs):
            result = loss(model, images, labels, **kwargs)
            ratio = result.mask.ratio if result.mask is not None else 0.0
            if ratio not in self._per_ratio:
                self._per_ratio[ratio] = training_flops(self.model_spec, mask_ratio=ratio)
            self.macs += self._per_ratio[ratio] * images.shape[0]
            return result

        return counted


@dataclass
class Clock:
    """Training seconds: wall-clock since start minus the time spent evaluating."""

    start: float = field(default_factory=time.perf_counter)
    paused: float = 0.0

    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused


def seconds_per_step(spec: ExperimentSpec, dataset, work_dir: Path) -> float:
    """Median interval between consecutive steps of a throwaway run of ``spec`` (first 3 left out)."""
    stamps: list[float] = []
    losses = phase_loss(spec)

    def stamped(phase):
        loss = losses(phase)

        def call(*args, **kwargs):
            stamps.append(time.perf_counter())  # the loss is called once per step, at its start
            return loss(*args, **kwargs)

        return call

    denoiser = build_denoiser(spec.model, generator=torch.Generator().manual_seed(spec.seed))
    Trainer(spec, denoiser, dataset, stamped, work_dir).fit()
    shutil.rmtree(work_dir, ignore_errors=True)
    return statistics.median(b - a for a, b in zip(stamps[3:], stamps[4:]))


def calibrate(name: str, dataset, work_dir: Path, budget: Budget) -> int:
    """Steps that fill ``budget.train_seconds`` for this variant (masked and unmasking phases timed apart)."""
    n = budget.calibration_steps
    t_main = seconds_per_step(variant_spec(name, n), dataset, work_dir / "calibrate-main")
    if not VARIANTS[name]["unmasking"]:
        return max(int(budget.train_seconds / t_main), 10)
    unmasked = variant_spec(name, n + 1, unmasking_steps=n)  # 1 masked step, then n unmasking ones
    t_unmasked = seconds_per_step(unmasked, dataset, work_dir / "calibrate-unmasking")
    per_step = (1 - UNMASKING_FRACTION) * t_main + UNMASKING_FRACTION * t_unmasked
    return max(int(budget.train_seconds / per_step), 10)


def run_variant(name: str, steps: int, dataset, evaluator, work_dir: Path, budget: Budget, seed: int,
                log=print) -> list[dict[str, Any]]:
    """Train one variant for ``steps`` steps, evaluating its EMA model at ``budget.eval_at``."""
    chunks = 20  # evaluation points are multiples of steps / 20
    steps = max(chunks, steps - steps % chunks)
    unmasking = int(round(UNMASKING_FRACTION * steps)) if VARIANTS[name]["unmasking"] else 0
    spec = variant_spec(name, steps, unmasking_steps=unmasking, eval_every=steps // chunks,
                        num_samples=budget.num_samples, sampler_steps=budget.sampler_steps, seed=seed)
    eval_steps = {int(round(f * chunks)) * (steps // chunks) for f in budget.eval_at}
    counter = FlopCounter(spec)
    denoiser = build_denoiser(spec.model, generator=torch.Generator().manual_seed(spec.seed))
    points: list[dict[str, Any]] = []
    clock = Clock()

    def on_checkpoint(step: int, ema_model) -> None:
        if step not in eval_steps:
            return
        seconds, macs = clock.training_seconds(), counter.macs
        paused = time.perf_counter()
        record = evaluate_denoiser(ema_model, spec, step=step, evaluator=evaluator, out_dir=work_dir / f"eval-{step:06d}")
        clock.paused += time.perf_counter() - paused
        point = {"variant": name, "step": step, "phase": "unmasking" if step > steps - unmasking else "main",
                 "train_seconds": round(seconds, 2), "train_macs": macs, "fid": record["fid"],
                 "class_accuracy": record["class_accuracy"], "eval_seconds": record["seconds"]}
        points.append(point)
        log(f"  {name:14s} step {step:5d}/{steps} {seconds:7.1f} s train  {macs / 1e12:7.2f} TMAC  "
            f"FID {point['fid']:8.2f}  acc {point['class_accuracy']:.3f}")

    trainer = Trainer(spec, denoiser, dataset, counter, work_dir, on_sample=on_checkpoint)
    clock.start = time.perf_counter()
    trainer.fit()
    return points


def first_reach(points: list[dict[str, Any]], target: float, key: str) -> dict[str, float] | None:
    """Where a variant's FID curve first gets to ``target`` or below: the evaluated point, and the
    linear interpolation (in ``key``) between it and the point before it. None if never."""
    previous = None
    for point in sorted(points, key=lambda p: p[key]):
        if point["fid"] <= target:
            at = float(point[key])
            interpolated = at
            if previous is not None and previous["fid"] > point["fid"]:
                weight = (previous["fid"] - target) / (previous["fid"] - point["fid"])
                interpolated = previous[key] + weight * (point[key] - previous[key])
            return {"first_point": at, "interpolated": interpolated}
        previous = point
    return None


def summarize(points: list[dict[str, Any]], baseline: str = "dit") -> dict[str, Any]:
    """Per variant: final FID, and the fraction of DiT's time / FLOPs at which DiT's final FID is first reached."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_variant.setdefault(point["variant"], []).append(point)
    if baseline not in by_variant:
        raise ValueError(f"the baseline variant {baseline!r} was not run")
    base_final = max(by_variant[baseline], key=lambda p: p["step"])
    target = base_final["fid"]
    rows = {}
    for name, series in by_variant.items():
        final = max(series, key=lambda p: p["step"])
        row: dict[str, Any] = {"final_fid": final["fid"], "final_class_accuracy": final["class_accuracy"],
                               "best_fid": min(p["fid"] for p in series), "steps": final["step"],
                               "train_seconds": final["train_seconds"], "train_macs": final["train_macs"]}
        for key, total in (("train_seconds", base_final["train_seconds"]), ("train_macs", base_final["train_macs"])):
            reach = first_reach(series, target, key)
            row[f"reach_{key}"] = reach
            row[f"fraction_of_dit_{key}"] = None if reach is None else {k: v / total for k, v in reach.items()}
        rows[name] = row
    return {"baseline": baseline, "target_fid": target, "variants": rows}


def plot(points: list[dict[str, Any]], path: Path, target: float | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    names = list(dict.fromkeys(p["variant"] for p in points))
    for index, (key, label, scale) in enumerate((("train_seconds", "training wall-clock (s)", 1.0),
                                                  ("train_macs", "training compute (TMAC = 1e12 multiply-adds)", 1e12))):
        axes = figure.add_subplot(1, 2, index + 1)
        for name in names:
            series = sorted((p[key] / scale, p["fid"]) for p in points if p["variant"] == name)
            axes.plot(*zip(*series), marker="o", label=name)
        if target is not None:
            axes.axhline(target, color="gray", linestyle=":", label="DiT final FID")
        axes.set_yscale("log")
        axes.set_xlabel(label)
        axes.set_ylabel("digits FID (held-out, lower is better)")
        axes.grid(alpha=0.3, which="both")
        if index == 0:
            axes.legend()
    figure.suptitle("MNIST-5k, 6x128 encoder, same wall-clock budget per variant")
    figure.savefig(path, dpi=110)


def format_table(summary: dict[str, Any]) -> str:
    header = (f"{'variant':14s} {'steps':>6s} {'train s':>8s} {'TMAC':>7s} {'final FID':>9s} {'best FID':>8s} "
              f"{'acc':>6s} {'time to DiT FID':>16s} {'FLOPs to DiT FID':>17s}")
    lines = [header, "-" * len(header)]

    def fraction(value):
        return "not reached" if value is None else f"{value['interpolated']:.2f} ({value['first_point']:.2f})"

    for name, row in summary["variants"].items():
        lines.append(f"{name:14s} {row['steps']:6d} {row['train_seconds']:8.0f} {row['train_macs'] / 1e12:7.2f} "
                     f"{row['final_fid']:9.2f} {row['best_fid']:8.2f} {row['final_class_accuracy']:6.3f} "
                     f"{fraction(row['fraction_of_dit_train_seconds']):>16s} "
                     f"{fraction(row['fraction_of_dit_train_macs']):>17s}")
    lines.append(f"target: DiT's final FID {summary['target_fid']:.2f}; fractions of DiT's training time / FLOPs, "
                 "interpolated between evaluations (first evaluated point in brackets)")
    return "\n".join(lines)


def prepare_work_dir(work_dir: Path, parser: argparse.ArgumentParser) -> None:
    """Empty the scratch folder of an earlier run of this script; refuse to touch anything else."""
    marker = work_dir / ".quality_vs_compute"
    if work_dir.exists() and any(work_dir.iterdir()):
        if not marker.exists():
            parser.error(f"--work-dir {work_dir} holds files this script did not write; choose an empty folder")
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.touch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (a few minutes), same outputs")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--train-seconds", type=float, default=None, help="training budget per variant")
    parser.add_argument("--num-samples", type=int, default=None, help="samples per evaluation")
    parser.add_argument("--sampler-steps", type=int, default=None, help="Euler steps per evaluation sample")
    parser.add_argument("--calibration-steps", type=int, default=None, help="steps timed to size each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/quality_vs_compute"))
    parser.add_argument("--out", type=Path, default=HERE / "quality_vs_compute.json", help="JSON path (.png beside it)")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    for option, value in (("train_seconds", args.train_seconds), ("num_samples", args.num_samples),
                          ("sampler_steps", args.sampler_steps), ("calibration_steps", args.calibration_steps)):
        if value is not None:
            budget = replace(budget, **{option: value})
    if "dit" not in args.variants:
        parser.error("the variants must include 'dit' (the baseline every ratio is taken against)")
    if budget.train_seconds <= 0 or budget.num_samples < 2 or budget.sampler_steps < 1 or budget.calibration_steps < 8:
        parser.error("need --train-seconds > 0, --num-samples >= 2, --sampler-steps >= 1, --calibration-steps >= 8")
    prepare_work_dir(args.work_dir, parser)
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()

    reference_spec = variant_spec("dit", 100, num_samples=budget.num_samples, sampler_steps=budget.sampler_steps)
    dataset = build_dataset(reference_spec.data)
    evaluator = build_evaluator(reference_spec.eval.model_copy(update={"metrics": ("fid", "class_accuracy")}),
                                reference_spec.data)
    steps = {}
    for name in args.variants:
        steps[name] = calibrate(name, dataset, args.work_dir / name, budget)
        print(f"calibrated {name}: {steps[name]} steps for {budget.train_seconds:.0f} s", flush=True)
    points: list[dict[str, Any]] = []
    for name in args.variants:
        print(f"training {name} ({steps[name]} steps)", flush=True)
        points += run_variant(name, steps[name], dataset, evaluator, args.work_dir / name, budget, args.seed)

    summary = summarize(points)
    png = args.out.with_suffix(".png")
    plot(points, png, summary["target_fid"])
    result = {
        "command": "python benchmarks/quality_vs_compute.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(), "threads": args.threads, "torch": torch.__version__,
        "budget": asdict(budget), "unmasking_fraction": UNMASKING_FRACTION,
        "load_average_before_after": [load_before, os.getloadavg()], "wall_s": round(time.perf_counter() - started, 1),
        "points": points, "summary": summary,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print(format_table(summary))
    print(f"\nmachine: {result['machine']}, {args.threads} threads, {result['wall_s']:.0f} s in all; "
          f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
