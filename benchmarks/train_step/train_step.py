"""Training-step speed and memory of MaskDiT layouts, masked (r = 0.5) vs unmasked, side by side.

One step = the library's MaskDiT objective (steps.py: draw a mask, EDM preconditioned forward, DSM
loss over visible patches + 0.1 x MAE loss over masked patches, Zheng et al. 2024, sec. 3.2), backward (no optimiser step unless ``--optimizer``, as in
the recorded timings of the reference code, REFERENCE_MS). All configurations of one interleave group run
round-robin in ONE process, so machine noise hits all of them alike; the table shows medians (and
minima) of the timed steps, images/s (batch / median step time) and memory.

Variants: ``eager`` (fp32), ``eager+bf16`` (bf16 autocast), ``compiled`` (fp32, each transformer
block compiled with torch.compile, same arithmetic), ``compiled+bf16``. Compiled copies share the
eager model's parameters.

Memory: on CUDA ``peak_MiB`` = torch.cuda.max_memory_allocated over one step (peak reset per
configuration). On the CPU torch keeps no allocator peak, so the column is ``p+g+saved MiB`` =
parameter + gradient (+ optimiser state) bytes + the distinct tensors autograd saves for backward,
a measured lower bound of the step's peak (temporaries are not counted).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step/train_step.py   # 3 S/2 presets x 2 ratios x 4 variants, ~6 min
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step/train_step.py --repeats 9 --presets MaskDiT-S/2 DiT-S/2
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step/train_step.py --presets all   # S/B/L/XL /2, batch 2
    python benchmarks/train_step/train_step.py --device cuda   # same suite on a GPU (gpu.py: the paper scale)
    python benchmarks/train_step/report.py            # the tables of the committed records

``--presets all`` runs 12 presets x 2 ratios x 4 variants at batch 2 with 3 timed steps, one preset
at a time (the models would not fit in memory together; interleaving is within a preset). On the
2-core CPU box this is estimated at 45-60 min (about 3.3 train TMAC per round at ~100 GMAC/s fp32
and ~60 GMAC/s bf16, 5 rounds, plus compilation) and needs about 8 GiB of memory at XL.

Writes train_step.json next to this file (``--out`` elsewhere). Set OMP_WAIT_POLICY=PASSIVE on the
command line (the runner warns when it is unset): on a shared machine, spinning threads of a
descheduled OpenMP team made every step about 3x slower and the timings useless (measured here);
alone on a machine the setting hardly matters. Results: benchmarks/RESULTS.md, section train_step.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from measure import (
    machine,
    peak_cuda_bytes,
    saved_activation_bytes,
    state_bytes,
    timed_ms,
    timing_row,
    warn_if_spinning,
)
from steps import VARIANTS, Step, compiled_sharing_weights, make_step
from table import format_table, memory_label

from maskdit.core import MODEL_PRESETS, ModelSpec, build_denoiser
from maskdit.io import atomic_write

REFERENCE_MS = {"MaskDiT-S/2": {0.5: 2126.0, 0.0: 2615.0}}  # the reference MaskDiT code, timed on a 2-core CPU, recorded
DEFAULT_PRESETS = ["MaskDiT-S/2", "DiT-S/2", "MaskDiT-lite-S/2"]
ALL_SIZES = ("S", "B", "L", "XL")
SAME_NETWORK_AS_DIT = ("SiT",)  # DiT's network under another process: its train step costs DiT's


def resolve_presets(names: list[str]) -> list[str]:
    """``all`` = every registered family (DiT, MaskDiT, MaskDiT-lite, TREAD, SPRINT, Deferred) at S/B/L/XL, patch 2."""
    if names != ["all"]:
        return names
    families = sorted({name.rsplit("-", 1)[0] for name in MODEL_PRESETS} - set(SAME_NETWORK_AS_DIT), key=len)
    return [f"{family}-{size}/2" for size in ALL_SIZES for family in families if f"{family}-{size}/2" in MODEL_PRESETS]


def build_configs(preset: str, args: argparse.Namespace, generator: torch.Generator,
                  optimizer: bool = False) -> list[tuple[str, str, float, Step, torch.nn.Module, Any]]:
    """(preset, variant, ratio, step, model, optimiser) for every variant x ratio of one preset.

    Compiled variants are shallow copies whose blocks are compiled; they share the eager model's
    parameters, so one preset holds one set of weights and gradients whatever the variants.
    """
    spec = ModelSpec(preset=preset, **args.model)
    base = build_denoiser(spec, generator=torch.Generator().manual_seed(0)).to(args.device)  # CPU init, seeded
    compiled = None
    opt = torch.optim.AdamW(base.parameters(), lr=1e-4) if optimizer else None
    configs = []
    for variant in args.variants:
        if variant.startswith("compiled"):
            compiled = compiled or compiled_sharing_weights(base)
            denoiser = compiled
        else:
            denoiser = base
        for ratio in args.ratios:
            step = make_step(denoiser, ratio, variant, args.batch, generator, optimizer=opt)
            configs.append((preset, variant, ratio, step, base, opt))
    return configs


def run_group(configs: list[tuple], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm up, measure memory, then time every configuration round-robin. Returns rows."""
    memory, warm_s = {}, {}
    for preset, variant, ratio, step, model, opt in configs:
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warm_s[(preset, variant, ratio)] = time.perf_counter() - t0
        saved = saved_activation_bytes(step)
        peak = peak_cuda_bytes(step, args.device) if args.device.startswith("cuda") else None
        memory[(preset, variant, ratio)] = (saved, state_bytes(model, opt), peak)
    times: dict[tuple, list[float]] = {key[:3]: [] for key in configs}
    for _ in range(args.repeats):  # interleaved round-robin
        for preset, variant, ratio, step, _model, _opt in configs:
            times[(preset, variant, ratio)].append(timed_ms(step, args.device))
    rows = []
    for (preset, variant, ratio), samples in times.items():
        saved, state, peak = memory[(preset, variant, ratio)]
        rows.append({
            **timing_row(ModelSpec(preset=preset, **args.model), preset, variant, ratio, args.batch, samples),
            "saved_activations_MiB": saved / 2**20,
            "state_MiB": state / 2**20,
            "memory_MiB": (peak if peak is not None else saved + state) / 2**20,
            "warmup_s": warm_s[(preset, variant, ratio)],
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS,
                        help="preset names, or 'all' (every family at S/B/L/XL, patch 2)")
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per configuration (median "
                        "reported); default 5, or 3 with --presets all")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration (compilation)")
    parser.add_argument("--batch", type=int, default=None, help="default 8, or 2 with --presets all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--optimizer", action="store_true", help="also take an AdamW step (off: as the recorded reference timings)")
    parser.add_argument("--interleave", choices=("all", "preset"), default=None,
                        help="round-robin over all presets at once, or one preset at a time "
                        "(default: all, or preset with --presets all, whose models do not fit together)")
    parser.add_argument("--model", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="ModelSpec fields over every preset, e.g. depth=1 hidden_size=32 (tiny checks)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("train_step.json"))
    args = parser.parse_args(argv)
    every = args.presets == ["all"]
    args.presets = resolve_presets(args.presets)
    args.batch = args.batch or (2 if every else 8)
    args.repeats = args.repeats if args.repeats is not None else (3 if every else 5)
    args.interleave = args.interleave or ("preset" if every else "all")
    args.model = dict(_field(v) for v in args.model)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    warn_if_spinning()
    torch.set_num_threads(args.threads)
    generator = torch.Generator(device=args.device).manual_seed(0)

    started, load_before = time.perf_counter(), os.getloadavg()
    groups = [args.presets] if args.interleave == "all" else [[p] for p in args.presets]
    rows = []
    for group in groups:
        configs = [c for preset in group for c in build_configs(preset, args, generator, args.optimizer)]
        rows += run_group(configs, args)
        del configs
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    summary = summarize(rows, presets=args.presets, variants=args.variants, ratios=args.ratios,
                        interleave=args.interleave, device=args.device, model_overrides=args.model)
    on_cuda = args.device.startswith("cuda")
    result = {
        "command": "python benchmarks/train_step/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(args.device), "device": args.device, "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "batch": args.batch, "torch": torch.__version__,
        "optimizer_step": args.optimizer, "interleave": args.interleave, "model_overrides": args.model,
        "memory_column": "torch.cuda.max_memory_allocated over one step" if on_cuda else
        "params + grads (+ optimiser state) + distinct tensors saved for backward (CPU has no allocator peak)",
        "load_average_before_after": [load_before, os.getloadavg()], "wall_s": time.perf_counter() - started,
        "rows": rows, "summary": summary, "reference_recorded_ms": {k: {str(r): v for r, v in d.items()}
                                                                    for k, d in REFERENCE_MS.items()},
    }
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8"))
    print(format_table(rows, "memory_MiB", memory_label(args.device, args.optimizer), 1.0))
    print()
    for line in summary["lines"]:
        print(line)
    print(f"\nmachine: {result['machine']}, {args.threads} threads, load average now {os.getloadavg()}; "
          f"wrote {args.out}")
    return 0


def _field(text: str) -> tuple[str, object]:
    """'depth=1' -> ('depth', 1); values parse as JSON where they can, else stay strings."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _lookup(rows: list[dict[str, Any]], preset: str, variant: str, ratio: float) -> dict[str, Any] | None:
    return next((r for r in rows if (r["preset"], r["variant"], r["mask_ratio"]) == (preset, variant, ratio)), None)


def summarize(rows: list[dict[str, Any]], *, presets: list[str], variants: list[str], ratios: list[float],
              interleave: str, device: str, model_overrides: dict[str, Any]) -> dict[str, Any]:
    """Ratios the targets are stated in: masked/unmasked time vs FLOPs, lite vs DiT, ours vs reference."""
    lines, checks = [], {}
    masked, unmasked = max(ratios), min(ratios)
    for preset in presets:
        for variant in variants:
            a, b = _lookup(rows, preset, variant, masked), _lookup(rows, preset, variant, unmasked)
            if a and b and masked != unmasked:
                time_ratio = a["median_ms"] / b["median_ms"]
                flop_ratio = a["train_GMACs_per_sample"] / b["train_GMACs_per_sample"]
                ok = abs(time_ratio / flop_ratio - 1) <= 0.15
                checks[f"{preset} {variant} time/FLOP ratio"] = ok
                lines.append(f"{preset:18s} {variant:14s} r={masked:g}/r={unmasked:g}: time {time_ratio:.2f}, "
                             f"FLOPs {flop_ratio:.2f} ({'within' if ok else 'NOT within'} 15%)")
    for variant in variants:
        for lite in [p for p in presets if "lite" in p]:
            dit = lite.replace("MaskDiT-lite-", "DiT-")
            a, b = _lookup(rows, lite, variant, masked), _lookup(rows, dit, variant, unmasked)
            if a and b:
                speedup = b["median_ms"] / a["median_ms"]
                checks[f"{lite} masked vs {dit} unmasked, {variant}"] = speedup >= 1.6
                apart = ", NOT interleaved: separate groups" if interleave == "preset" else ""
                lines.append(f"{lite} r={masked:g} vs {dit} r={unmasked:g} ({variant}): {speedup:.2f}x faster "
                             f"(target >= 1.6x{apart})")
    comparable = device == "cpu" and not model_overrides  # the recorded figures: CPU, unchanged presets
    for preset, recorded in REFERENCE_MS.items() if comparable else ():
        for variant in [v for v in variants if not v.endswith("bf16")]:
            for ratio, ref_ms in recorded.items():
                row = _lookup(rows, preset, variant, ratio)
                if row:
                    speedup = ref_ms / row["median_ms"]
                    lines.append(f"{preset} r={ratio:g} {variant}: {row['median_ms']:.0f} ms vs reference "
                                 f"{ref_ms:.0f} ms RECORDED on another run (not interleaved): {speedup:.2f}x")
    return {"lines": lines, "checks": checks}


if __name__ == "__main__":
    raise SystemExit(main())
