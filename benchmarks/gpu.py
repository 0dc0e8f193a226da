"""Training-step throughput and peak memory at the paper's scale, on one CUDA GPU.

MaskDiT-XL/2 at r = 0.5 and r = 0 and DiT-XL/2 at r = 0, 256 tokens (4x32x32 latents, patch 2),
bf16 autocast, SDPA restricted to flash attention, torch.compile off (``eager+bf16``) and on
(``compiled+bf16``, each transformer block compiled), at the largest batch that fits: doubling
from ``--start-batch`` until torch.cuda.OutOfMemoryError, then bisecting (multiples of 8), capped
at ``--max-batch``. The search runs eager; the compiled run reuses that batch (halving only if
it does not fit), so both rows of a configuration share one batch. One step = mask, EDM forward,
DSM + 0.1 x MAE loss, backward AND the AdamW step (weights, gradients and Adam moments in fp32).

    python benchmarks/gpu.py            # one H100: about 5-8 min, most of it compilation
    python benchmarks/gpu.py --tiny     # CPU smoke test: tiny models, batch 2, eager only, seconds
                                        # (writes gpu_tiny.json; add --variants eager+bf16 compiled+bf16
                                        # to smoke-test compilation too, 1-2 min on 2 cores)

Prints images/s (batch / median step time) and peak memory (torch.cuda.max_memory_allocated over
one step, GiB) per GPU, and writes benchmarks/gpu.json (``--out``) with the device name, torch and
CUDA versions and the command. On a CPU (``--tiny``) there is no flash kernel and no allocator
peak: the SDPA backend is left unrestricted and memory is parameters + gradients + Adam moments +
tensors saved for backward; the output says so.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # less fragmentation near OOM
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # CPU --tiny on a shared machine (see train_step.py)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _steps import (  # noqa: E402
    compiled_sharing_weights,
    format_table,
    machine,
    make_step,
    peak_cuda_bytes,
    saved_activation_bytes,
    state_bytes,
    sync,
    timed_ms,
    timing_row,
)

from maskdit.core import ModelSpec, build_denoiser  # noqa: E402,I001

CONFIGS = (("MaskDiT-XL/2", (0.5, 0.0)), ("DiT-XL/2", (0.0,)))
TINY_MODEL = {"input_size": 16, "depth": 1, "hidden_size": 64, "num_heads": 2, "decoder_depth": 1,
              "decoder_hidden_size": 32, "decoder_num_heads": 1, "num_classes": 10}


def flash_only():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fits(denoiser, ratio, batch, generator, optimizer, attention) -> bool:
    """Whether one full step (forward, backward, AdamW) at ``batch`` runs without running out of memory."""
    device = next(denoiser.parameters()).device
    ok = True
    try:
        step = make_step(denoiser, ratio, "bf16", batch, generator, optimizer=optimizer, attention=attention)
        step()
        sync(device)
    except torch.cuda.OutOfMemoryError:
        ok = False
    step = None  # noqa: F841  (drop the batch's inputs)
    denoiser.zero_grad(set_to_none=True)
    free(device)
    return ok


def largest_batch(try_batch, start: int, cap: int) -> int:
    """Double from ``start`` until ``try_batch`` fails or ``cap``; bisect between (multiples of 8). 0: nothing fits."""
    lo, hi, batch = 0, None, start
    while hi is None:
        if try_batch(batch):
            lo = batch
            if batch >= cap:
                return cap
            batch = min(2 * batch, cap)
        else:
            hi = batch
    if lo == 0:  # even ``start`` fails: halve down
        while batch > 1:
            batch //= 2
            if try_batch(batch):
                return batch
        return 0
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        if mid <= lo:
            break
        lo, hi = (mid, hi) if try_batch(mid) else (lo, mid)
    return lo


def measure(denoiser, model, optimizer, preset, variant, ratio, batch, args, generator, attention) -> dict:
    device = next(model.parameters()).device
    step = make_step(denoiser, ratio, variant, batch, generator, optimizer=optimizer, attention=attention)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        memory = peak_cuda_bytes(step, device)
    else:
        memory = saved_activation_bytes(step) + state_bytes(model, optimizer)
    samples = [timed_ms(step, device) for _ in range(args.steps)]
    return {**timing_row(model.spec, preset, variant, ratio, batch, samples), "memory_GiB": memory / 2**30,
            "warmup_s": warmup_s}


def run_preset(preset, ratios, args, device, attention, notes) -> list[dict]:
    spec = ModelSpec(preset=preset, **(TINY_MODEL if args.tiny else {}))
    model = build_denoiser(spec, generator=torch.Generator().manual_seed(0)).to(device)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    generator = torch.Generator(device=device).manual_seed(0)
    compiled = None
    rows = []
    for ratio in ratios:
        if args.tiny:
            batch = args.batch
        else:
            batch = largest_batch(lambda b: fits(model, ratio, b, generator, optimizer, attention),
                                  args.start_batch, args.max_batch)
            print(f"{preset} r={ratio:g}: largest batch {batch} (cap {args.max_batch})", flush=True)
        if batch == 0:
            notes.append(f"{preset} r={ratio:g}: not even batch 1 fits")
            continue
        for variant in args.variants:
            if time.perf_counter() - args.started > args.budget_s:
                notes.append(f"{preset} r={ratio:g} {variant}: skipped, past the --budget-s {args.budget_s:g} s")
                continue
            denoiser = model
            if variant.startswith("compiled"):
                compiled = compiled or compiled_sharing_weights(model)
                denoiser = compiled
            size = batch
            while size:
                if denoiser is model or fits(denoiser, ratio, size, generator, optimizer, attention):
                    break
                size //= 2
            if size != batch:
                notes.append(f"{preset} r={ratio:g} {variant}: batch {batch} did not fit, ran {size}")
            if size:
                rows.append(measure(denoiser, model, optimizer, preset, variant, ratio, size, args, generator,
                                    attention))
                print(format_table(rows[-1:], "memory_GiB", "GiB", args.memory_scale).splitlines()[-1], flush=True)
            model.zero_grad(set_to_none=True)
            free(device)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny models, fixed batch, eager only")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    parser.add_argument("--variants", nargs="+", default=None, choices=("eager+bf16", "compiled+bf16"),
                        help="default both on CUDA, eager+bf16 with --tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (median); default 10, 2 with --tiny")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (compilation); default 3, 1 --tiny")
    parser.add_argument("--batch", type=int, default=2, help="batch with --tiny (no search)")
    parser.add_argument("--start-batch", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--budget-s", type=float, default=480, help="skip configurations started after this")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/gpu.json (gpu_tiny.json with --tiny, not to overwrite a GPU run)")
    args = parser.parse_args(argv)
    args.started = time.perf_counter()
    args.out = args.out or Path(__file__).with_name("gpu_tiny.json" if args.tiny else "gpu.json")
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device (torch.cuda.is_available() is False); use --tiny for the CPU smoke test")
    if device.type != "cuda" and not args.tiny:
        parser.error("the paper-scale run needs CUDA; on a CPU use --tiny")
    args.variants = args.variants or (["eager+bf16"] if args.tiny else ["eager+bf16", "compiled+bf16"])
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    on_cuda = device.type == "cuda"
    args.memory_scale = 1.0 if on_cuda else 1 / 1024  # table in GiB on CUDA, MiB for the tiny CPU models
    if on_cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
    attention = flash_only if on_cuda else None
    notes = [] if on_cuda else [
        "CPU run: no flash-attention kernel on the CPU, SDPA backend NOT restricted",
        "CPU run: memory = params + grads + Adam moments + tensors saved for backward (no allocator peak)",
    ]
    if args.tiny:
        notes.append(f"--tiny: models shrunk to {TINY_MODEL}, batch {args.batch}, no batch search")
    for note in notes:
        print(note)
    setup_notes = len(notes)

    rows = []
    for preset, ratios in CONFIGS:
        rows += run_preset(preset, ratios, args, device, attention, notes)
    result = {
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": machine(device), "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "sdpa": "flash attention only" if on_cuda else "unrestricted (CPU)", "autocast": "bf16",
        "optimizer": "AdamW (fused)" if on_cuda else "AdamW", "tiny": args.tiny, "variants": args.variants,
        "memory": "torch.cuda.max_memory_allocated over one step" if on_cuda
        else "params + grads + Adam moments + tensors saved for backward",
        "steps": args.steps, "warmup": args.warmup, "max_batch": args.max_batch,
        "wall_s": time.perf_counter() - args.started, "notes": notes, "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    label = "peak GiB" if on_cuda else "p+g+adam+saved MiB"
    print(format_table(rows, "memory_GiB", label, args.memory_scale))
    for note in notes[setup_notes:]:
        print(note)
    print(f"\n{result['device']}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"{result['wall_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
