"""Training-step throughput and peak memory at the paper's scale, on one CUDA GPU.

MaskDiT-XL/2 at r = 0.5 and r = 0 and DiT-XL/2 at r = 0, 256 tokens (4x32x32 latents, patch 2),
bf16 autocast, SDPA restricted to flash attention, torch.compile off (``eager+bf16``) and on
(``compiled+bf16``, each transformer block compiled), at the largest batch that fits: doubling
from ``--start-batch`` until torch.cuda.OutOfMemoryError, then bisecting (multiples of 8), capped
at ``--max-batch``. The search runs eager; the compiled run reuses that batch (halving only if
it does not fit), so both rows of a configuration share one batch. One step = mask, EDM forward,
DSM + 0.1 x MAE loss (the library's objective, steps.py), backward AND the AdamW step (weights, gradients and Adam moments in fp32).

    benchmarks/train_step/gpu.sh                      # one H100: about 5-8 min, most of it compilation
    python benchmarks/train_step/gpu.py --tiny        # CPU smoke test: tiny models, batch 2, eager only,
                                                      # seconds (writes gpu_tiny.json; add --variants
                                                      # eager+bf16 compiled+bf16 to smoke-test compilation)

Prints images/s (batch / median step time) and peak memory (torch.cuda.max_memory_allocated over
one step, GiB) per GPU, and writes gpu.json next to this file (``--out``) with the device name, torch
and CUDA versions and the command. gpu.sh sets PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (less
fragmentation near OOM) and OMP_WAIT_POLICY=PASSIVE; this script warns when the latter is unset. On a CPU (``--tiny``) there is no flash kernel and no allocator
peak: the SDPA backend is left unrestricted and memory is parameters + gradients + Adam moments +
tensors saved for backward; the output says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from measure import (
    machine,
    peak_cuda_bytes,
    saved_activation_bytes,
    state_bytes,
    sync,
    timed_ms,
    timing_row,
    warn_if_spinning,
)
from steps import compiled_sharing_weights, make_step
from table import format_table
from torch.nn.attention import SDPBackend, sdpa_kernel

from maskdit.core import ModelSpec, build_denoiser
from maskdit.io import atomic_write

CONFIGS = (("MaskDiT-XL/2", (0.5, 0.0)), ("DiT-XL/2", (0.0,)))
TINY_MODEL = {"input_size": 16, "depth": 1, "hidden_size": 64, "num_heads": 2, "decoder_depth": 1,
              "decoder_hidden_size": 32, "decoder_num_heads": 1, "num_classes": 10}


Attention = Callable[[], AbstractContextManager] | None


def flash_only() -> AbstractContextManager:
    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fits(denoiser: torch.nn.Module, ratio: float, batch: int, generator: torch.Generator,
         optimizer: torch.optim.Optimizer, attention: Attention) -> bool:
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


def largest_batch(try_batch: Callable[[int], bool], start: int, cap: int) -> int:
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


def measure(denoiser: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer, preset: str,
            variant: str, ratio: float, batch: int, args: argparse.Namespace, generator: torch.Generator,
            attention: Attention) -> dict[str, Any]:
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


def run_preset(preset: str, ratios: tuple[float, ...], args: argparse.Namespace, device: torch.device,
               attention: Attention, notes: list[str]) -> list[dict[str, Any]]:
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


def main(argv: list[str] | None = None) -> int:
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
                        help="default gpu.json next to this file (gpu_tiny.json with --tiny, not to overwrite a GPU run)")
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
    warn_if_spinning()
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
        "command": "python benchmarks/train_step/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": machine(device), "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "sdpa": "flash attention only" if on_cuda else "unrestricted (CPU)", "autocast": "bf16",
        "optimizer": "AdamW (fused)" if on_cuda else "AdamW", "tiny": args.tiny, "variants": args.variants,
        "memory": "torch.cuda.max_memory_allocated over one step" if on_cuda
        else "params + grads + Adam moments + tensors saved for backward",
        "steps": args.steps, "warmup": args.warmup, "max_batch": args.max_batch,
        "wall_s": time.perf_counter() - args.started, "notes": notes, "rows": rows,
    }
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8"))
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
