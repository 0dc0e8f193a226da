"""Timing and memory of one training step: wall time (device synchronised), saved activations, state
bytes, the CUDA allocator peak, the row every timed configuration gets, and the machine's name."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from maskdit.core import ModelSpec, count_parameters, training_flops

Step = Callable[[], None]


def warn_if_spinning() -> None:
    """Say so when OMP_WAIT_POLICY is unset: the timings are only trusted with it set to PASSIVE.

    On a shared machine the spinning threads of a descheduled OpenMP team made every step about
    3x slower (measured here). The variable must be set before torch starts its OpenMP runtime,
    hence on the command line (``OMP_WAIT_POLICY=PASSIVE python ...``), not by the script."""
    if "OMP_WAIT_POLICY" not in os.environ:
        print("warning: OMP_WAIT_POLICY is unset; on a shared machine spinning OpenMP threads can make steps "
              "~3x slower. Time with: OMP_WAIT_POLICY=PASSIVE python ...", file=sys.stderr)


def timing_row(spec: ModelSpec, preset: str, variant: str, ratio: float, batch: int,
               samples_ms: list[float]) -> dict[str, Any]:
    """The fields every step-time row has: times, images/s, parameters, FLOPs and the FLOP ratio vs r = 0."""
    median = statistics.median(samples_ms)
    flops = training_flops(spec, mask_ratio=ratio)
    return {
        "preset": preset, "variant": variant, "mask_ratio": ratio, "batch": batch,
        "median_ms": median, "min_ms": min(samples_ms), "samples_ms": samples_ms,
        "images_per_s": batch / (median / 1000), "params_M": count_parameters(spec) / 1e6,
        "train_GMACs_per_sample": flops / 1e9, "flop_ratio_vs_unmasked": flops / training_flops(spec, mask_ratio=0.0),
    }


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(step: Step, device: str | torch.device) -> float:
    """Wall time of one step in milliseconds, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return 1000 * (time.perf_counter() - t0)


def saved_activation_bytes(step: Step) -> int:
    """Bytes of the distinct tensors autograd saves for backward during one step (activation memory)."""
    seen: dict[tuple[int, str], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), tensor.device.type)] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(seen.values())


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Parameters + one gradient per trainable parameter + the optimiser's tensor state (Adam moments)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    moments = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            moments += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return params + grads + moments


def peak_cuda_bytes(step: Step, device: str | torch.device) -> int:
    """torch.cuda.max_memory_allocated over one step, the peak counter reset just before it."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def machine(device: str | torch.device = "cpu") -> str:
    """The GPU's name, or the CPU's model name as lscpu reports it."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"
