"""Training-step speed of MaskDiT layouts on the CPU, masked (r = 0.5) vs unmasked, side by side.

One step = draw a mask, EDM preconditioned forward, DSM loss over visible patches + 0.1 x MAE loss
over masked patches (REFERENCE.md sec. 3), backward (no optimiser step, as in the reference
figures of REFERENCE.md sec. 6). All variants run interleaved round-robin in ONE process, so
machine noise hits all of them alike; the table shows medians (and minima) of the timed steps.

Variants: ``eager`` (fp32), ``compiled`` (fp32, each transformer block compiled with
torch.compile, same arithmetic), ``compiled+bf16`` (the same under CPU bf16 autocast).

    python benchmarks/train_step.py                 # default: 3 presets x 2 ratios x 3 variants
    python benchmarks/train_step.py --repeats 9 --presets MaskDiT-S/2 DiT-S/2

Writes benchmarks/train_step.json next to this file. OpenMP threads wait passively unless
OMP_WAIT_POLICY is set: on a shared machine, spinning threads of a descheduled OpenMP team made
every step about 3x slower and the timings useless (measured here); alone on a machine the
setting hardly matters.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from maskdit.core import ModelSpec, build_denoiser, compile_blocks, count_parameters, training_flops  # noqa: E402
from maskdit.masking import ConstantRatio, RandomMasking  # noqa: E402

REFERENCE_MS = {"MaskDiT-S/2": {0.5: 2126.0, 0.0: 2615.0}}  # REFERENCE.md sec. 6, reference code, recorded
VARIANTS = ("eager", "compiled", "compiled+bf16")


def reference_loss(denoiser, y, labels, mask, generator):
    """DSM over visible patches + 0.1 MAE over masked patches, per sample, then the batch mean."""
    batch = y.shape[0]
    sigma = (torch.randn(batch, generator=generator) * 1.2 - 1.2).exp()
    x = y + sigma.reshape(-1, 1, 1, 1) * torch.randn(y.shape, generator=generator)
    d = denoiser(x, sigma, labels=labels, mask=mask).float()
    sd, p = denoiser.sigma_data, denoiser.patch_size
    weight = ((sigma**2 + sd**2) / (sigma * sd) ** 2).reshape(-1, 1, 1, 1)
    per_token = F.avg_pool2d((weight * (d - y) ** 2).mean(1, keepdim=True), p).flatten(1)  # [B, L]
    visible = (~mask.dropped).float()
    dsm = (per_token * visible).sum(1) / visible.sum(1)
    if mask.num_dropped == 0:
        return dsm.mean()
    patches = F.unfold(x, p, stride=p).transpose(1, 2)  # [B, L, C*p*p]
    target = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    pred = F.unfold(d, p, stride=p).transpose(1, 2)
    dropped = mask.dropped.float()
    mae = (((pred - target) ** 2).mean(-1) * dropped).sum(1) / dropped.sum(1)
    return (dsm + 0.1 * mae).mean()


def saved_activation_bytes(step) -> int:
    """Bytes of the distinct tensors autograd saves for backward during one step (activation memory)."""
    seen: dict[tuple, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), tensor.device.type)] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(seen.values())


def make_step(denoiser, ratio, variant, batch, generator):
    spec = denoiser.spec
    y = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, generator=generator)
    labels = torch.randint(0, spec.num_classes + 1, (batch,), generator=generator)
    strategy = RandomMasking(ConstantRatio(ratio))
    autocast = variant.endswith("bf16")

    def step():
        mask = strategy(batch, (spec.grid_size, spec.grid_size), generator=generator)
        denoiser.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            loss = reference_loss(denoiser, y, labels, mask, generator)
        loss.backward()

    return step


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["MaskDiT-S/2", "DiT-S/2", "MaskDiT-lite-S/2"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration (compilation)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("train_step.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    configs = []  # (preset, variant, ratio, step)
    for preset in args.presets:
        base = build_denoiser(ModelSpec(preset=preset), generator=torch.Generator().manual_seed(0))
        for variant in args.variants:
            denoiser = base if variant == "eager" else compile_blocks(copy.deepcopy(base))
            for ratio in args.ratios:
                configs.append((preset, variant, ratio, make_step(denoiser, ratio, variant, args.batch, generator)))

    started, load_before = time.perf_counter(), os.getloadavg()
    memory, warm_s = {}, {}
    for preset, variant, ratio, step in configs:
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warm_s[(preset, variant, ratio)] = time.perf_counter() - t0
        memory[(preset, variant, ratio)] = saved_activation_bytes(step)
    times: dict[tuple, list[float]] = {key[:3]: [] for key in configs}
    for _ in range(args.repeats):  # interleaved round-robin
        for preset, variant, ratio, step in configs:
            t0 = time.perf_counter()
            step()
            times[(preset, variant, ratio)].append(1000 * (time.perf_counter() - t0))

    rows = []
    for (preset, variant, ratio), samples in times.items():
        spec = ModelSpec(preset=preset)
        rows.append({
            "preset": preset, "variant": variant, "mask_ratio": ratio,
            "median_ms": statistics.median(samples), "min_ms": min(samples), "samples_ms": samples,
            "params_M": count_parameters(spec) / 1e6,
            "train_GMACs_per_sample": training_flops(spec, mask_ratio=ratio) / 1e9,
            "saved_activations_MiB": memory[(preset, variant, ratio)] / 2**20,
            "warmup_s": warm_s[(preset, variant, ratio)],
        })
    summary = summarize(rows, args)
    result = {
        "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(), "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "batch": args.batch, "torch": torch.__version__,
        "load_average_before_after": [load_before, os.getloadavg()], "wall_s": time.perf_counter() - started,
        "rows": rows, "summary": summary, "reference_recorded_ms": {k: {str(r): v for r, v in d.items()}
                                                                    for k, d in REFERENCE_MS.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(rows))
    print()
    for line in summary["lines"]:
        print(line)
    print(f"\nmachine: {result['machine']}, {args.threads} threads, load average now {os.getloadavg()}; "
          f"wrote {args.out}")
    return 0


def _lookup(rows, preset, variant, ratio):
    return next((r for r in rows if (r["preset"], r["variant"], r["mask_ratio"]) == (preset, variant, ratio)), None)


def summarize(rows, args) -> dict:
    """Ratios the targets are stated in: masked/unmasked time vs FLOPs, lite vs DiT, ours vs reference."""
    lines, checks = [], {}
    masked, unmasked = max(args.ratios), min(args.ratios)
    for preset in args.presets:
        for variant in args.variants:
            a, b = _lookup(rows, preset, variant, masked), _lookup(rows, preset, variant, unmasked)
            if a and b and masked != unmasked:
                time_ratio = a["median_ms"] / b["median_ms"]
                flop_ratio = a["train_GMACs_per_sample"] / b["train_GMACs_per_sample"]
                ok = abs(time_ratio / flop_ratio - 1) <= 0.15
                checks[f"{preset} {variant} time/FLOP ratio"] = ok
                lines.append(f"{preset:18s} {variant:14s} r={masked:g}/r={unmasked:g}: time {time_ratio:.2f}, "
                             f"FLOPs {flop_ratio:.2f} ({'within' if ok else 'NOT within'} 15%)")
    for variant in args.variants:
        for lite in [p for p in args.presets if "lite" in p]:
            dit = lite.replace("MaskDiT-lite-", "DiT-")
            a, b = _lookup(rows, lite, variant, masked), _lookup(rows, dit, variant, unmasked)
            if a and b:
                speedup = b["median_ms"] / a["median_ms"]
                checks[f"{lite} masked vs {dit} unmasked, {variant}"] = speedup >= 1.6
                lines.append(f"{lite} r={masked:g} vs {dit} r={unmasked:g} ({variant}): {speedup:.2f}x faster "
                             f"(target >= 1.6x)")
    for preset, recorded in REFERENCE_MS.items():
        for variant in [v for v in args.variants if not v.endswith("bf16")]:
            for ratio, ref_ms in recorded.items():
                row = _lookup(rows, preset, variant, ratio)
                if row:
                    speedup = ref_ms / row["median_ms"]
                    lines.append(f"{preset} r={ratio:g} {variant}: {row['median_ms']:.0f} ms vs reference "
                                 f"{ref_ms:.0f} ms RECORDED on another run (not interleaved): {speedup:.2f}x")
    return {"lines": lines, "checks": checks}


def format_table(rows) -> str:
    header = f"{'preset':18s} {'variant':14s} {'r':>4s} {'median ms':>10s} {'min ms':>8s} {'GMAC/sample':>11s} " \
             f"{'act MiB':>8s} {'params':>8s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['preset']:18s} {r['variant']:14s} {r['mask_ratio']:4.2g} {r['median_ms']:10.0f} "
                     f"{r['min_ms']:8.0f} {r['train_GMACs_per_sample']:11.2f} {r['saved_activations_MiB']:8.0f} "
                     f"{r['params_M']:7.2f}M")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
