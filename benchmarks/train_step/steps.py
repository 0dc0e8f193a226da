"""The training step both runners time (train_step.py on the CPU, gpu.py at the paper's scale).

One step = the library's MaskDiT objective (``maskdit.maskdit_objective``: random mask at ratio r,
EDM noise, DSM over visible patches + 0.1 x MAE over masked patches, Zheng et al. 2024, sec. 3.2),
backward, and optionally an optimiser step. Every draw comes from the generator passed in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch

from maskdit import maskdit_objective
from maskdit.core import compile_blocks

VARIANTS = ("eager", "eager+bf16", "compiled", "compiled+bf16")

Step = Callable[[], None]


def make_step(denoiser: torch.nn.Module, ratio: float, variant: str, batch: int, generator: torch.Generator, *,
              optimizer: torch.optim.Optimizer | None = None,
              attention: Callable[[], contextlib.AbstractContextManager] | None = None) -> Step:
    """A closure running one training step of ``denoiser`` at mask ratio ``ratio`` on a fixed batch.

    ``variant`` ending in ``bf16`` runs forward and loss under bf16 autocast on the model's device.
    ``optimizer`` (e.g. AdamW over the model's parameters) is stepped after backward when given.
    ``attention`` is a context-manager factory wrapped around the step (e.g. an SDPA backend choice).
    """
    spec = denoiser.spec
    device = next(denoiser.parameters()).device
    y = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, generator=generator, device=device)
    labels = torch.randint(0, spec.num_classes, (batch,), generator=generator, device=device)
    objective = maskdit_objective(mask_ratio=ratio)
    autocast = variant.endswith("bf16")

    def step() -> None:
        denoiser.zero_grad(set_to_none=True)
        with attention() if attention else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
                loss = objective(denoiser, y, labels, generator=generator).total.mean()
            loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def compiled_sharing_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with each transformer block compiled that shares its parameters and buffers,
    so eager and compiled variants of a preset hold one set of weights and gradients."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return compile_blocks(copy.deepcopy(model, memo=shared))
