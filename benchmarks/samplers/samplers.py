"""Digits FID and class accuracy against the number of network evaluations (NFE), per sampler.

One trained checkpoint (EMA weights), the samplers heun, euler, dpmpp_2m, ddim (eta 0) and ddpm
at a grid of target NFE, all at the checkpoint's guidance scale and with the same seed, so every
run starts from the same initial noise per image (image i is seeded by (seed, i); ddpm's extra
noise comes from the same per-image generators).

NFE is what ``Sampler.num_evaluations`` reports: denoiser calls per sample, where a guided call
counts ONCE although classifier-free guidance runs it on a doubled batch (conditional +
unconditional), so the network's forward passes per sample are 2 x NFE when cfg != 1. For each
target NFE a sampler gets the step count whose NFE is nearest (ties: the cheaper one). heun makes
2 calls per step except the last (NFE = 2 steps - 1), the others one per step (NFE = steps); the
default targets 5, 9, 19, 39 are odd so that every sampler hits them exactly.

Sigma schedules (``--schedule``):
  * ``native`` (default): heun, euler and dpmpp_2m on EDM's Karras schedule (sigma 0.002..80,
    rho 7, as in training); ddpm and ddim on their own discrete DDPM schedule (1000 linear betas
    1e-4..0.02, 'leading' respacing, the sampler spec's defaults), whose first sigma depends on
    the step count (26 at 5 steps, 157 at 1000) and whose last nonzero sigma is 0.01.
  * ``karras``: every sampler on the Karras schedule, so only the update rule differs (ddim with
    eta 0 is then the same Euler step as euler, up to rounding).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/samplers/samplers.py   # 5 samplers x 4 NFE, 500 samples
    python benchmarks/samplers/samplers.py --quick              # 100 samples, NFE 5 and 19
    python benchmarks/samplers/samplers.py --samplers heun ddim --nfe 9 39 --num-samples 1000
    python benchmarks/samplers/report.py                        # the table of the committed record

Writes samplers.json next to this file (rewritten after every run, so an interrupted benchmark
keeps what it measured) and samplers.png (FID and class accuracy vs NFE, log x, one curve per
sampler). Seconds per run are wall time of sampling plus scoring on this machine (set
OMP_WAIT_POLICY=PASSIVE on a shared machine, as train_step does). Exit codes: 0 ok, 2 bad input.
Each run's spec is the checkpoint's with a JSON patch (field path -> value, what ``--set`` applies).
Results: benchmarks/RESULTS.md, section samplers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import TypeAdapter

from maskdit import Experiment, ExperimentSpec, InputError, evaluate_denoiser, open_run, validate_spec
from maskdit.io import atomic_write
from maskdit.samplers import Sampler, build_sampler
from maskdit.samplers import specs as sampler_specs

SAMPLER_NAMES = ("heun", "euler", "dpmpp_2m", "ddim", "ddpm")
EDM_SAMPLERS = ("heun", "euler", "dpmpp_2m")
DEFAULT_CHECKPOINT = Path("runs/default/checkpoints/step-00002600")
DEFAULT_NFE, QUICK_NFE = (5, 9, 19, 39), (5, 19)
DEFAULT_SAMPLES, QUICK_SAMPLES = 500, 100
METRICS = ("fid", "class_accuracy")
EXIT_BAD_INPUT = 2
SAMPLER_SPEC = TypeAdapter(sampler_specs.SamplerSpec)


def patched(spec: ExperimentSpec, patch: dict[str, Any]) -> ExperimentSpec:
    """``spec`` with a JSON patch (field path -> JSON value) applied and validated, as ``--set`` does."""
    return validate_spec(spec.model_dump(mode="json"), [f"{path}={json.dumps(value)}" for path, value in patch.items()])


def sampler_section(name: str, steps: int, cfg_scale: float, schedule: str) -> dict[str, Any]:
    """The sampler spec section (as a dict) of one benchmark run."""
    section: dict = {"name": name, "steps": steps, "cfg_scale": cfg_scale}
    if name in EDM_SAMPLERS or schedule == "karras":
        section["schedule"] = {"name": "karras"}
    else:
        section["schedule"] = {"name": "ddpm"}
    if name == "ddim":
        section["eta"] = 0.0
    return section


def build_section(section: dict[str, Any], null_label: int | None) -> tuple[Any, Sampler]:
    """(validated sampler spec, ready Sampler) for a sampler section; a model's null label is its
    number of classes (None: unconditional)."""
    spec = SAMPLER_SPEC.validate_python(section)
    return spec, build_sampler(spec, null_label=null_label or None)


def steps_for_nfe(name: str, target: int, cfg_scale: float, schedule: str, null_label: int | None = None) -> int:
    """The step count whose reported NFE is nearest ``target`` (ties: fewer evaluations)."""
    best = None  # (distance, nfe, steps)
    for steps in range(1, 2 * target + 2):
        _, sampler = build_section(sampler_section(name, steps, cfg_scale, schedule), null_label)
        nfe = sampler.num_evaluations
        key = (abs(nfe - target), nfe, steps)
        if best is None or key < best:
            best = key
        if nfe > target:  # NFE grows with the steps: nothing nearer beyond this
            break
    return best[2]


def plan(samplers: list[str], targets: list[int], cfg_scale: float, schedule: str,
         null_label: int | None) -> list[dict[str, Any]]:
    """One entry per (target NFE, sampler): its sampler section and reported NFE; ordered by NFE so
    an interrupted benchmark has compared all samplers at the low NFE first."""
    entries = []
    for target in targets:
        for name in samplers:
            steps = steps_for_nfe(name, target, cfg_scale, schedule, null_label)
            section = sampler_section(name, steps, cfg_scale, schedule)
            _, sampler = build_section(section, null_label)
            entries.append({"sampler": name, "target_nfe": target, "steps": steps, "nfe": sampler.num_evaluations,
                            "section": section, "sigma_start": float(sampler.sigmas[0]),
                            "sigma_last": float(sampler.sigmas[-2])})
    return entries


def load_checkpoint_for_benchmark(path: Path) -> tuple[ExperimentSpec, torch.nn.Module, int | None]:
    """(experiment spec, EMA denoiser in eval mode, training step) of a training checkpoint or run folder."""
    loaded = open_run(path, "ema")
    if loaded.spec is None:
        raise InputError(f"{path}: holds no experiment spec; give a training checkpoint or run folder")
    return loaded.spec, loaded.denoiser, loaded.step


def run_spec(spec: ExperimentSpec, section: dict[str, Any], num_samples: int, seed: int) -> ExperimentSpec:
    """The experiment spec of one run: the checkpoint's, with this sampler and eval section."""
    return patched(spec, {"sampler": section, "seed": seed, "eval.num_samples": num_samples,
                          "eval.metrics": list(METRICS), "eval.grid_per_class": 0})


def format_row(row: dict[str, Any]) -> str:
    fid = f"{row['fid']:9.2f}" if row.get("fid") is not None else f"{'-':>9s}"
    acc = f"{row['class_accuracy']:9.3f}" if row.get("class_accuracy") is not None else f"{'-':>9s}"
    return (f"{row['sampler']:9s} {row['schedule']:7s} {row['steps']:5d} {row['nfe']:4d} {fid} {acc} "
            f"{row['seconds']:8.1f}")


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'sampler':9s} {'sched':7s} {'steps':>5s} {'NFE':>4s} {'FID':>9s} {'class acc':>9s} {'seconds':>8s}"
    lines = [header, "-" * len(header)]
    ordered = sorted(rows, key=lambda r: (SAMPLER_NAMES.index(r["sampler"]) if r["sampler"] in SAMPLER_NAMES else 99,
                                          r["nfe"]))
    lines += [format_row(r) for r in ordered]
    return "\n".join(lines)


def write_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig = Figure(figsize=(10, 4), layout="tight")  # no pyplot: no global backend or figure state
    FigureCanvasAgg(fig)
    ax_fid, ax_acc = fig.subplots(1, 2)
    for name in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["nfe"])
        label = f"{name} ({mine[0]['schedule']})"
        nfe = [r["nfe"] for r in mine]
        ax_fid.plot(nfe, [_nan(r["fid"]) for r in mine], marker="o", label=label)
        ax_acc.plot(nfe, [_nan(r["class_accuracy"]) for r in mine], marker="o", label=label)
    for ax, title in ((ax_fid, "digits FID (lower is better)"), (ax_acc, "class accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("NFE (guided calls per sample; each runs a doubled batch)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_fid.set_yscale("log")
    ax_fid.legend()
    fig.savefig(path, dpi=110)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help=f"training checkpoint or run folder (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLER_NAMES), choices=SAMPLER_NAMES)
    parser.add_argument("--nfe", nargs="+", type=int, default=None,
                        help=f"target NFE grid (default {' '.join(map(str, DEFAULT_NFE))}; --quick: "
                             f"{' '.join(map(str, QUICK_NFE))})")
    parser.add_argument("--num-samples", type=int, default=None,
                        help=f"samples per run (default {DEFAULT_SAMPLES}; --quick: {QUICK_SAMPLES})")
    parser.add_argument("--quick", action="store_true", help="fewer samples and NFE points")
    parser.add_argument("--schedule", choices=("native", "karras"), default="native",
                        help="native: Karras for heun/euler/dpmpp_2m, DDPM for ddim/ddpm; karras: Karras for all")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().with_name("samplers.json"),
                        help="JSON to write; the plot goes next to it with suffix .png")
    args = parser.parse_args(argv)
    args.nfe = list(args.nfe or (QUICK_NFE if args.quick else DEFAULT_NFE))
    args.num_samples = args.num_samples or (QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES)
    if min(args.nfe) < 1 or args.num_samples < 2:
        parser.error("--nfe values must be >= 1 and --num-samples >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    if not args.checkpoint.exists():
        print(f"error: checkpoint {args.checkpoint} not found (train one with `make demo` / python -m maskdit.build, "
              f"or pass --checkpoint)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        spec, denoiser, step = load_checkpoint_for_benchmark(args.checkpoint)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    cfg_scale = spec.sampler.cfg_scale if args.cfg is None else args.cfg
    null_label = spec.model.num_classes or None
    entries = plan(args.samplers, args.nfe, cfg_scale, args.schedule, null_label)
    base = run_spec(spec, entries[0]["section"], args.num_samples, args.seed)
    started = time.perf_counter()
    evaluator = Experiment(base).evaluator()
    evaluator_s = time.perf_counter() - started
    command = "python benchmarks/samplers/samplers.py " + " ".join(sys.argv[1:] if argv is None else map(str, argv))
    result = {
        "command": command.strip(), "checkpoint": str(args.checkpoint), "step": step,
        "machine": machine(), "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__, "num_samples": args.num_samples, "seed": args.seed, "cfg_scale": cfg_scale,
        "schedule": args.schedule, "reference": evaluator.reference.name if evaluator.reference is not None else None,
        "nfe_definition": "Sampler.num_evaluations: denoiser calls per sample; a guided call counts once "
                          "(it runs a doubled batch, so forward passes per sample = 2 x NFE when cfg != 1)",
        "evaluator_build_s": round(evaluator_s, 2), "rows": [], "complete": False,
    }
    print(f"{args.checkpoint} (step {step}): {args.num_samples} samples per run, cfg {cfg_scale:g}, seed {args.seed}, "
          f"schedule {args.schedule}, {len(entries)} runs", flush=True)
    print(format_table([]).splitlines()[0], flush=True)
    for entry in entries:
        run = run_spec(spec, entry["section"], args.num_samples, args.seed)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # few-samples covariance warnings in tiny runs
            record = evaluate_denoiser(denoiser, Experiment(run), step=step, evaluator=evaluator, device="cpu")
        seconds = time.perf_counter() - t0
        schedule_name = entry["section"]["schedule"]["name"]
        row = {"sampler": entry["sampler"], "schedule": schedule_name, "steps": entry["steps"], "nfe": entry["nfe"],
               "target_nfe": entry["target_nfe"], "fid": _finite(record.get("fid")),
               "class_accuracy": _finite(record.get("class_accuracy")), "seconds": round(seconds, 2),
               "seconds_per_nfe_per_1000": round(1000 * seconds / (entry["nfe"] * args.num_samples), 3),
               "clipped_fraction": record.get("clipped_fraction"), "sigma_start": entry["sigma_start"],
               "sigma_last_nonzero": entry["sigma_last"], "sampler_spec": run.sampler.model_dump(mode="json")}
        result["rows"].append(row)
        result["wall_s"] = round(time.perf_counter() - started, 2)
        write_json(args.out, result)
        print(format_row(row), flush=True)
    result["complete"] = True
    result["wall_s"] = round(time.perf_counter() - started, 2)
    write_json(args.out, result)
    plot = write_plot(result["rows"], args.out.with_suffix(".png"))
    print()
    print(format_table(result["rows"]))
    print(f"\nNFE = guided denoiser calls per sample (each a doubled cond+uncond batch). machine: {result['machine']}, "
          f"{args.threads} threads; wall {result['wall_s']:.0f}s; wrote {args.out} and {plot}")
    return 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def machine() -> str:
    """The CPU's model name as lscpu reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


if __name__ == "__main__":
    raise SystemExit(main())
