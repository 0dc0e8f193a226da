"""Quality against training compute on the digits: DiT and four token-sparsity methods.

Variants (qvc_variants.py: JSON patches of the maskdit-demo preset), all on the same encoder of a layout, same recipe otherwise:

  dit             DiT: no mask, DSM
  maskdit-R       MaskDiT (Zheng et al. 2024): drop a fraction R after the embedding, + 2-block
                  decoder, DSM on visible + 0.1 MAE on masked; ready after unmasked tuning
  deferred-R      deferred masking (MicroDiT, Sehwag et al. 2024): 2 blocks over all tokens, then
                  R dropped; DSM on the kept tokens; ready after unmasked tuning
  tread-0.5       token routing (TREAD, Krause et al. 2025): half the tokens skip blocks 1-4 and
                  re-enter with their block-0 output; DSM on all tokens; ready as it is
  sprint-0.75     sparse-deep (SPRINT, Park et al. 2025): blocks 1-4 on a quarter of the tokens,
                  mask-token padding + concat fusion with block 0's output; DSM on all; tuned
  <v>-fm-u        flow matching (issue 28) for v in dit, tread-0.5: the same network trained as SiT
  <v>-fm-ln       trains (Ma et al. 2024: linear interpolant, velocity MSE, t ~ U(0, 1)) or with
                  logit-normal(0, 1) t (SD3, SPRINT), sampled with Euler on SiT's uniform t grid;
                  layouts 64 and 256 only. Each shares its EDM twin's calibrated step time (the
                  process is a few element-wise operations around the same network; ``twins``
                  measures the ratio). The held-out loss stays EDM's on the same sigma grid for
                  every variant (every model is also a sigma-space denoiser), so objectives compare.
  <v>-edm-ln      the control: EDM's objective on fm-ln's noise levels (lognormal(0, 1) sigma, which
                  is logit-normal(0, 1) t), to tell the time distribution from the objective.

Layouts: "64" (patch 4, the maskdit-demo preset's 6 x 128 encoder), "256" (patch 2, 6 x 64) and
"64s" (patch 4, make demo's DiT 4 x 96 with its EMA 0.98 and guidance-interval sampler; on its
depth 4 the deferred mixer is 1 block and TREAD / SPRINT route around blocks 1-2; 730 s at 1 thread).

How it cannot fool us:
- Time is calibrated: every variant's main and tuning step is timed, all interleaved in one
  process (``calibrate``, on an idle machine), and a point's time is steps x step time. Each
  variant trains for the steps that fill DiT's budget; training may then share the machine.
- Every point is a READY model: methods that need unmasked tuning get a tuning branch from that
  checkpoint (6 % of the run's steps, unmasked DSM at lr 5e-4), its time and FLOPs added.
- Metrics that do not saturate: the held-out EDM loss on a fixed sigma grid at every point; the
  digits FID (1,000 samples, Euler 9) unguided and best over cfg {2, 3, 4}, with class accuracy,
  at the final point and where the held-out loss first reaches DiT's final value.
- Seeds: the plan runs seed 0 of every variant, then seed 1 of DiT and of the two best.
- Resumable: each run's record (records/<layout>/<variant>-s<seed>.json next to this file) is rewritten
  after every evaluation and its checkpoint kept under --work-dir, so a killed study continues
  where it stopped, in another sitting or on a fresh machine (copy runs/qvc along, or the
  unfinished run starts over).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_vs_compute/quality_vs_compute.py calibrate --layout 64
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_vs_compute/quality_vs_compute.py run --layout 64
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_vs_compute/quality_vs_compute.py run --layout 256
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_vs_compute/quality_vs_compute.py run --layout 64s \
        --threads 1 --cfgs 1 1.5 2 2.5 3
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_vs_compute/quality_vs_compute.py twins --layout 64 256
    python benchmarks/quality_vs_compute/quality_vs_compute.py run --layout 64 --threads 1 \
        --variants dit-fm-u dit-fm-ln tread-0.5-fm-ln --seeds 0          # flow matching beside EDM
    python benchmarks/quality_vs_compute/quality_vs_compute.py grids --layout 64 256   # flow: uniform_t vs karras
    python benchmarks/quality_vs_compute/quality_vs_compute.py report       # table, summary.json, plot

(calibrate: ~3 min on an idle machine; the 64-token plan ~2.5 h, resumable.) OMP_WAIT_POLICY=PASSIVE
is set on the command line, before torch starts its OpenMP runtime; calibrate and run warn when it is
unset. Results: benchmarks/RESULTS.md, section sparsity_study (first_study/: the records of the
script's first version, section quality_vs_compute).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from qvc_engine import alignment_cost, calibrate, fid_sweep, machine, read_json, ready_model, run_variant, write_json
from qvc_report import format_ratio_curves, format_table, plot, retime, summarize_layout
from qvc_variants import LAYOUTS, Layout, patched, variant_spec

from maskdit import Experiment
from maskdit.eval import Evaluator, HeldOutLoss

HERE = Path(__file__).resolve().parent
TUNE_FRACTION = 0.06  # of a run's main steps: the tuning branch at every point
EVAL_EIGHTHS = range(3, 9)  # evaluation at 3/8, 4/8, ..., 8/8 of the run
ALIGNED_BASELINE = "dit-edm-ln"
ALIGNED_SUFFIXES = ("-edm-ln", "-repa", "-repa-random")  # trained on edm-ln: measured against ALIGNED_BASELINE
FIRST_ROUND = ["dit", "tread-0.5", "maskdit-0.5", "sprint-0.75", "deferred-0.75", "deferred-0.5", "maskdit-0.25"]


def make_plan(layout: Layout, name: str, calibration: dict[str, Any], train_seconds: float,
              alignment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Steps, evaluations and step times of one variant: the steps that fill ``train_seconds`` of DiT's
    budget at its calibrated step time. An aligned variant's step is its twin's times the ratio
    ``alignment`` (``repa-cost``) measured, and the encoder's one-off extraction comes out of its budget."""
    variant = layout.variants[name]
    twin = variant.twin or name  # a flow variant runs its EDM twin's network: its step time
    scale = 1.0
    extra: dict[str, Any] = {}
    if variant.aligned:
        measured = variant.cost_of or name  # the aligned variant whose cost repa-cost measured
        if alignment is None or measured not in alignment["ratios"]:
            raise ValueError(f"{measured}: no measured alignment cost; run: quality_vs_compute.py repa-cost "
                             f"--layout {layout.name}")
        scale = alignment["ratios"][measured]
        extra = {"extraction_seconds": alignment["extraction_seconds"][measured],
                 "encoded_images": alignment["encoded_images"][measured]}
    seconds = {key.replace(twin, name, 1) if key.split("/")[0] == twin else key: value * (scale if key == twin else 1)
               for key, value in calibration["seconds_per_step"].items()}
    budget = train_seconds - extra.get("extraction_seconds", 0.0)
    main = max(8, int(round(budget / seconds[name] / 8)) * 8)
    tune = max(1, int(round(TUNE_FRACTION * main))) if variant.tune else 0
    return {"main_steps": main, "tune_steps": tune, "eval_steps": [k * main // 8 for k in EVAL_EIGHTHS],
            "seconds_per_step": {key: value for key, value in seconds.items()
                                 if key == "dit" or key.split("/")[0] == name},
            "train_seconds": train_seconds, **extra}


def baseline_of(variant: str) -> str:
    """The DiT a variant is measured against: DiT on lognormal(0, 1) noise (edm-ln, the best objective
    issue 28 found) for the variants trained on it, the preset's DiT for the rest."""
    return ALIGNED_BASELINE if variant.endswith(ALIGNED_SUFFIXES) and variant != ALIGNED_BASELINE else "dit"


def records(out_dir: Path, layout: str) -> list[dict[str, Any]]:
    return [read_json(path) for path in sorted((out_dir / layout).glob("*-s*.json"))]


def two_best(out_dir: Path, layout: str) -> list[str]:
    """The two sparse variants that reach DiT's final held-out loss in the least time; among
    those that do not, the ones whose final ready model is closest to DiT's pace: the lowest
    ratio of their time to DiT's time to the same held-out loss (seed 0's runs)."""
    rows = summarize_layout(records(out_dir, layout))["variants"]

    def key(item: tuple[str, dict[str, Any]]) -> tuple[float, float, str]:
        name, row = item
        reach = row["loss_fraction_seconds"]["median"] if row["loss_fraction_seconds"] else math.inf
        final = row["per_seed"].get("0", next(iter(row["per_seed"].values())))["ratio_curve"][-1]["time_ratio"]
        return reach, math.inf if final is None else final, name

    return [name for name, _ in sorted(((n, r) for n, r in rows.items() if n != "dit"), key=key)[:2]]


def default_plan(out_dir: Path, layout: str) -> list[tuple[str, int]]:
    """(variant, seed) in order: seed 0 of all; seed 1 of DiT and the two best. At 256 tokens:
    DiT, MaskDiT 0.5 and the two best of the 64-token layout."""
    if layout == "256":
        best = two_best(out_dir, "64")
        return [(name, 0) for name in dict.fromkeys(["dit", "maskdit-0.5", *best])]
    first = [(name, 0) for name in FIRST_ROUND]
    return first + [("dit", 1)] + [(name, 1) for name in two_best(out_dir, layout)]


def warn_if_spinning() -> None:
    """Say so when OMP_WAIT_POLICY is unset: calibrated step times are only trusted with PASSIVE."""
    if "OMP_WAIT_POLICY" not in os.environ:
        print("warning: OMP_WAIT_POLICY is unset; on a shared machine spinning OpenMP threads can make steps "
              "~3x slower. Calibrate with: OMP_WAIT_POLICY=PASSIVE python ...", file=sys.stderr)


def load_calibration(args: argparse.Namespace, layout: Layout, dataset: Any, *, force: bool = False) -> dict[str, Any]:
    path = args.out_dir / layout.name / "calibration.json"
    existing = read_json(path)
    if existing is not None and not force:
        return existing
    print(f"calibrating layout {layout.name} ({len(layout.variants)} variants, interleaved)", flush=True)
    warn_if_spinning()
    result = calibrate(layout, list(layout.variants), dataset, args.work_dir / layout.name,
                       steps=args.calibration_steps, rounds=args.calibration_rounds)
    result.update(machine=machine(), torch=torch.__version__)
    write_json(path, result)
    for key, value in result["seconds_per_step"].items():
        print(f"  {key:22s} {value * 1e3:7.1f} ms/step", flush=True)
    return result


def finish_fids(args: argparse.Namespace, layout: Layout, record: dict[str, Any], record_path: Path,
                evaluator: Evaluator) -> None:
    """FID sweeps at the final point and where the held-out loss first reaches DiT's final value."""
    final = max(record["points"], key=lambda p: p["step"])
    steps = [final["step"]]
    baseline = baseline_of(record["variant"])
    if record["variant"] != baseline:
        dits = {r["seed"]: r for r in records(args.out_dir, layout.name) if r["variant"] == baseline and r.get("done")}
        base = dits.get(record["seed"]) or (dits[min(dits)] if dits else None)
        if base is not None:
            target = max(base["points"], key=lambda p: p["step"])["heldout_loss"]
            reached = [p["step"] for p in sorted(record["points"], key=lambda p: p["step"]) if p["heldout_loss"] <= target]
            steps = list(dict.fromkeys(reached[:1] + steps))
    work = args.work_dir / layout.name / f"{record['variant']}-s{record['seed']}"
    spec = variant_spec(layout, record["variant"], main_steps=record["plan"]["main_steps"], seed=record["seed"])
    for step in steps:
        if str(step) in record["fid"]:
            continue
        started = time.perf_counter()
        sweep = fid_sweep(ready_model(layout, record, step, work), spec, evaluator, num_samples=args.num_samples,
                          sampler_steps=args.sampler_steps, cfgs=args.cfgs)
        record["fid"][str(step)] = {**sweep, "eval_seconds": round(time.perf_counter() - started, 1)}
        write_json(record_path, record)
        print(f"  FID at step {step}: unguided {sweep['unguided_fid']:.1f}, best {sweep['best_fid']:.1f} "
              f"(cfg {sweep['best_cfg']:g}, acc {sweep['best_class_accuracy']:.3f})", flush=True)
    record["done"] = True
    write_json(record_path, record)


def command_run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    for name in args.layout:
        layout = LAYOUTS[name]
        probe = variant_spec(layout, "dit", main_steps=8)
        dataset = Experiment(probe).dataset
        calibration = load_calibration(args, layout, dataset)
        heldout = HeldOutLoss(probe, limit=args.heldout_images)
        scored = patched(probe.model_dump(mode="json"), {"eval.metrics": ["fid", "class_accuracy"]})
        evaluator = Experiment(scored).evaluator()
        todo = [(v, s) for v in args.variants for s in args.seeds] if args.variants else None
        index = 0
        while True:
            plan_list = todo if todo is not None else default_plan(args.out_dir, name)  # re-read: 'two best' grows
            pending = [(v, s) for v, s in plan_list
                       if not (read_json(args.out_dir / name / f"{v}-s{s}.json") or {}).get("done")]
            if not pending or index > 50:
                break
            variant, seed = pending[0]
            index += 1
            record_path = args.out_dir / name / f"{variant}-s{seed}.json"
            plan = make_plan(layout, variant, calibration, args.train_seconds or layout.train_seconds,
                             read_json(args.out_dir / name / "repa_cost.json"))
            print(f"layout {name}: {variant} seed {seed}: {plan['main_steps']} steps (+{plan['tune_steps']} tuning "
                  f"per point), evaluations at {plan['eval_steps']}", flush=True)
            record = run_variant(layout, variant, seed, plan=plan, dataset=dataset, heldout=heldout,
                                 record_path=record_path,
                                 work_dir=args.work_dir / name / f"{variant}-s{seed}")
            finish_fids(args, layout, record, record_path, evaluator)
    return command_report(args)


def command_calibrate(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    for name in args.layout:
        layout = LAYOUTS[name]
        dataset = Experiment(variant_spec(layout, "dit", main_steps=8)).dataset
        load_calibration(args, layout, dataset, force=True)
    return 0


def with_twins(layout: Layout, seconds: dict[str, float]) -> dict[str, float]:
    """A calibration's step times with each flow variant given its EDM twin's (main and tuning)."""
    shared = {}
    for name, variant in layout.variants.items():
        if variant.twin and not variant.aligned:  # an aligned step's cost was measured on this machine only
            shared.update({name + key[len(variant.twin):]: value for key, value in seconds.items()
                           if key.split("/")[0] == variant.twin})
    return {**seconds, **shared}


def command_twins(args: argparse.Namespace) -> int:
    """Time each flow-matching variant next to its EDM twin, interleaved (the plan gives a flow
    variant its twin's calibrated step time: the same network, a few element-wise operations apart)."""
    torch.set_num_threads(args.threads)
    warn_if_spinning()
    for name in args.layout:
        layout = LAYOUTS[name]
        pairs = [(n, v.twin) for n, v in layout.variants.items() if v.twin]
        names = list(dict.fromkeys(n for pair in pairs for n in (pair[1], pair[0])))
        dataset = Experiment(variant_spec(layout, "dit", main_steps=8)).dataset
        result = calibrate(layout, names, dataset, args.work_dir / name, steps=args.calibration_steps,
                           rounds=args.calibration_rounds)
        seconds = result["seconds_per_step"]
        result["ratios"] = {flow: seconds[flow] / seconds[twin] for flow, twin in pairs}
        result.update(machine=machine(), torch=torch.__version__)
        write_json(args.out_dir / name / "twins.json", result)
        for flow, twin in pairs:
            print(f"  {flow:18s} {seconds[flow] * 1e3:7.1f} ms/step, {twin:10s} {seconds[twin] * 1e3:7.1f}: "
                  f"ratio {result['ratios'][flow]:.3f}", flush=True)
    return 0


def command_repa_cost(args: argparse.Namespace) -> int:
    """Time each aligned variant (feature cache warm) next to its twin, interleaved, and the encoder's
    one-off extraction of every training image: records/<layout>/repa_cost.json, which the plan reads."""
    torch.set_num_threads(args.threads)
    warn_if_spinning()
    for name in args.layout:
        layout = LAYOUTS[name]
        aligned = [n for n, v in layout.variants.items() if v.aligned and not v.cost_of]  # the others share one
        names = list(dict.fromkeys(n for a in aligned for n in (layout.variants[a].twin, a)))
        dataset = Experiment(variant_spec(layout, "dit", main_steps=8)).dataset
        result = alignment_cost(layout, names, dataset, args.work_dir / name, steps=args.calibration_steps,
                                rounds=args.calibration_rounds)
        result.update(machine=machine(), torch=torch.__version__)
        write_json(args.out_dir / name / "repa_cost.json", result)
        seconds = result["seconds_per_step"]
        for variant, ratio in result["ratios"].items():
            twin = layout.variants[variant].twin
            print(f"  {variant:24s} {seconds[variant] * 1e3:7.1f} ms/step, {twin:10s} {seconds[twin] * 1e3:7.1f}: "
                  f"ratio {ratio:.3f}; extraction {result['extraction_seconds'][variant]:.1f} s for "
                  f"{result['encoded_images'][variant]} images", flush=True)
    return 0


GRIDS = {"uniform_t": {"name": "uniform_t"}, "karras": {"name": "karras"}}  # SiT's time grid, EDM's sigma grid


def command_grids(args: argparse.Namespace) -> int:
    """The final ready model of every finished flow-matching run, FID-swept on EDM's Karras sigma grid
    as well as the flow's uniform t grid (the run's own), at the same steps (network evaluations):
    which sampler grid is a flow model's best. Written to records/<layout>/grids/<variant>-s<seed>.json."""
    torch.set_num_threads(args.threads)
    for name in args.layout:
        layout = LAYOUTS[name]
        scored = patched(variant_spec(layout, "dit", main_steps=8).model_dump(mode="json"),
                         {"eval.metrics": ["fid", "class_accuracy"]})
        evaluator = Experiment(scored).evaluator()
        for record in records(args.out_dir, name):
            variant = layout.variants.get(record["variant"])
            if variant is None or variant.objective.process is None or not record.get("done"):  # flow runs only
                continue
            path = args.out_dir / name / "grids" / f"{record['variant']}-s{record['seed']}.json"
            result = read_json(path) or {"variant": record["variant"], "seed": record["seed"], "grids": {}}
            final = max(record["points"], key=lambda p: p["step"])["step"]
            work = args.work_dir / name / f"{record['variant']}-s{record['seed']}"
            spec = variant_spec(layout, record["variant"], main_steps=record["plan"]["main_steps"], seed=record["seed"])
            own = record["fid"].get(str(final))
            if own is not None and spec.sampler.schedule.name in GRIDS:  # the run's own sweep: its grid
                result["grids"].setdefault(spec.sampler.schedule.name, own)
            for grid, schedule in GRIDS.items():
                if grid in result["grids"]:
                    continue
                at = patched(spec.model_dump(mode="json"), {"sampler.schedule": schedule})
                result["grids"][grid] = fid_sweep(ready_model(layout, record, final, work), at, evaluator,
                                                  num_samples=args.num_samples, sampler_steps=args.sampler_steps,
                                                  cfgs=args.cfgs)
                result["step"] = final
                write_json(path, result)
                print(f"  {name}/{record['variant']} s{record['seed']} on {grid}: best FID "
                      f"{result['grids'][grid]['best_fid']:.1f} (cfg {result['grids'][grid]['best_cfg']:g}), "
                      f"unguided {result['grids'][grid]['unguided_fid']:.1f}", flush=True)
    return 0


def command_report(args: argparse.Namespace) -> int:
    by_layout = {name: [r for r in records(args.out_dir, name) if r is not None] for name in LAYOUTS}
    summary = {}
    for name, layout_records in by_layout.items():
        if not layout_records:
            continue
        summary[name] = summarize_layout(layout_records)
        if summary[name]["variants"]:
            print(format_table(name, summary[name]))
            print(format_ratio_curves(summary[name]))
        else:
            print(f"layout {name}: " + summary[name].get("note", "no finished run"))
        print()
        # the variants trained on edm-ln (alignment among them) against DiT on the same noise levels
        on_ln = [r for r in layout_records if baseline_of(r["variant"]) == ALIGNED_BASELINE
                 or r["variant"] == ALIGNED_BASELINE]
        if any(r["variant"] != ALIGNED_BASELINE for r in on_ln):
            against = summarize_layout(on_ln, base=ALIGNED_BASELINE)
            summary[name][f"against_{ALIGNED_BASELINE}"] = against
            if against["variants"]:
                print(format_table(name, against, base=ALIGNED_BASELINE))
                print(format_ratio_curves(against, base=ALIGNED_BASELINE))
            else:
                print(f"layout {name}: " + against["note"])
            print()
        # The same steps re-timed with another machine's calibration (calibration-<tag>.json): the
        # step-time ratios, hence the fractions, differ by CPU.
        for path in sorted((args.out_dir / name).glob("calibration-*.json")):
            other = read_json(path)
            tag = path.stem.removeprefix("calibration-")
            retimed = summarize_layout(retime(layout_records, with_twins(LAYOUTS[name], other["seconds_per_step"])))
            retimed["machine"] = other.get("machine")
            summary[name].setdefault("retimed", {})[tag] = retimed
            if retimed["variants"]:
                print(f"re-timed with {path.name} ({other.get('machine', 'unknown machine')})")
                print(format_table(name, retimed))
                print()
    if summary:
        png = args.out_dir / "quality_vs_compute.png"
        plot(by_layout, png)
        write_json(args.out_dir / "summary.json", {"machine": machine(), "summary": summary})
        print(f"wrote {args.out_dir / 'summary.json'} and {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "calibrate", "twins", "repa-cost", "grids", "report"):
        sub = commands.add_parser(command)
        sub.add_argument("--out-dir", type=Path, default=HERE / "records", help="records, calibration, summary, plot")
        sub.add_argument("--work-dir", type=Path, default=Path("runs/qvc"), help="checkpoints and ready models")
        sub.add_argument("--layout", nargs="+", default=["64"], choices=list(LAYOUTS))
        sub.add_argument("--threads", type=int, default=2)
        sub.add_argument("--calibration-steps", type=int, default=16)
        sub.add_argument("--calibration-rounds", type=int, default=3)
        sub.add_argument("--variants", nargs="+", default=None, help="run these instead of the plan")
        sub.add_argument("--seeds", nargs="+", type=int, default=[0])
        sub.add_argument("--train-seconds", type=float, default=None, help="DiT's budget (default: the layout's)")
        sub.add_argument("--num-samples", type=int, default=1000, help="samples per FID")
        sub.add_argument("--sampler-steps", type=int, default=9)
        sub.add_argument("--heldout-images", type=int, default=None, help="score the held-out loss on the first N "
                                                                           "held-out digits (default: all 1,000)")
        sub.add_argument("--cfgs", nargs="+", type=float, default=[1.0, 2.0, 3.0, 4.0])
    args = parser.parse_args(argv)
    args.cfgs = tuple(args.cfgs)
    if args.variants:
        unknown = sorted(set(args.variants) - set(LAYOUTS[args.layout[0]].variants))
        if unknown:
            parser.error(f"unknown variants {unknown}; valid: {', '.join(LAYOUTS[args.layout[0]].variants)}")
    if args.num_samples < 2 or args.sampler_steps < 1 or args.calibration_steps < 5:
        parser.error("need --num-samples >= 2, --sampler-steps >= 1, --calibration-steps >= 5")
    commands_by_name = {"run": command_run, "calibrate": command_calibrate, "twins": command_twins,
                        "repa-cost": command_repa_cost, "grids": command_grids, "report": command_report}
    return commands_by_name[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
