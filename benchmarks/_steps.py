"""Shared pieces of the training-step benchmarks (train_step.py, gpu.py): the step, timing, memory, table.

One step = draw a mask, EDM preconditioned forward, DSM loss over visible patches + 0.1 x MAE loss
over masked patches (Zheng et al. 2024, sec. 3.2), backward, and optionally an AdamW step. Works on CPU and
CUDA; on CUDA every timed step is bracketed by torch.cuda.synchronize().
"""

from __future__ import annotations

import contextlib
import copy
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

from maskdit.core import compile_blocks, count_parameters, training_flops
from maskdit.masking import ConstantRatio, RandomMasking

VARIANTS = ("eager", "eager+bf16", "compiled", "compiled+bf16")


def reference_loss(denoiser, y, labels, mask, generator):
    """DSM over visible patches + 0.1 MAE over masked patches, per sample, then the batch mean."""
    batch, device = y.shape[0], y.device
    sigma = (torch.randn(batch, generator=generator, device=device) * 1.2 - 1.2).exp()
    x = y + sigma.reshape(-1, 1, 1, 1) * torch.randn(y.shape, generator=generator, device=device)
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


def make_step(denoiser, ratio, variant, batch, generator, *, optimizer=None, attention=None):
    """A closure running one training step of ``denoiser`` at mask ratio ``ratio``.

    ``variant`` ending in ``bf16`` runs forward and loss under bf16 autocast on the model's device.
    ``optimizer`` (e.g. AdamW over the model's parameters) is stepped after backward when given.
    ``attention`` is a context-manager factory wrapped around the step (e.g. an SDPA backend choice).
    """
    spec = denoiser.spec
    device = next(denoiser.parameters()).device
    y = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, generator=generator, device=device)
    labels = torch.randint(0, spec.num_classes + 1, (batch,), generator=generator, device=device)
    strategy = RandomMasking(ConstantRatio(ratio))
    autocast = variant.endswith("bf16")

    def step():
        mask = strategy(batch, (spec.grid_size, spec.grid_size), generator=generator)
        denoiser.zero_grad(set_to_none=True)
        with attention() if attention else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
                loss = reference_loss(denoiser, y, labels, mask, generator)
            loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def compiled_sharing_weights(model):
    """A copy of ``model`` with each transformer block compiled that shares its parameters and buffers,
    so eager and compiled variants of a preset hold one set of weights and gradients."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return compile_blocks(copy.deepcopy(model, memo=shared))


def timing_row(spec, preset, variant, ratio, batch, samples_ms) -> dict:
    """The fields every step-time row has: times, images/s, parameters, FLOPs and the FLOP ratio vs r = 0."""
    median = statistics.median(samples_ms)
    flops = training_flops(spec, mask_ratio=ratio)
    return {
        "preset": preset, "variant": variant, "mask_ratio": ratio, "batch": batch,
        "median_ms": median, "min_ms": min(samples_ms), "samples_ms": samples_ms,
        "images_per_s": batch / (median / 1000), "params_M": count_parameters(spec) / 1e6,
        "train_GMACs_per_sample": flops / 1e9, "flop_ratio_vs_unmasked": flops / training_flops(spec, mask_ratio=0.0),
    }


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(step, device) -> float:
    """Wall time of one step in milliseconds, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return 1000 * (time.perf_counter() - t0)


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


def state_bytes(model, optimizer=None) -> int:
    """Parameters + one gradient per trainable parameter + the optimiser's tensor state (Adam moments)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    moments = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            moments += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return params + grads + moments


def peak_cuda_bytes(step, device) -> int:
    """torch.cuda.max_memory_allocated over one step, the peak counter reset just before it."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def machine(device="cpu") -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def format_table(rows, memory_key: str, memory_label: str, memory_scale: float = 2**20) -> str:
    """One line per row: preset, variant, r, batch, median/min ms, images/s, memory, GMAC/sample, FLOP ratio."""
    width = max(10, len(memory_label))
    header = (f"{'preset':18s} {'variant':14s} {'r':>4s} {'batch':>5s} {'median ms':>10s} {'min ms':>9s} "
              f"{'img/s':>8s} {memory_label:>{width}s} {'GMAC/sample':>11s} "
              f"{'FLOPs vs r=0':>12s} {'params':>8s}")
    lines = [header, "-" * len(header)]
    for r in rows:
        flop_ratio = r.get("flop_ratio_vs_unmasked")
        lines.append(
            f"{r['preset']:18s} {r['variant']:14s} {r['mask_ratio']:4.2g} {r['batch']:5d} {r['median_ms']:10.1f} "
            f"{r['min_ms']:9.1f} {r['images_per_s']:8.2f} {r[memory_key] / memory_scale:{width}.2f} "
            f"{r['train_GMACs_per_sample']:11.2f} {'' if flop_ratio is None else f'{flop_ratio:.2f}':>12s} "
            f"{r['params_M']:7.2f}M"
        )
    return "\n".join(lines)
