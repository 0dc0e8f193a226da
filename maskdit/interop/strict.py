"""Load a state dict into a module, failing with one line per missing, unexpected or mis-shaped key."""

from __future__ import annotations

from torch import nn

from maskdit.config.errors import CheckpointError
from maskdit.io.weight_files import StateDict


def check_state(module: nn.Module, state: StateDict, *, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming every key that is missing, unexpected or of the wrong shape, or
    the tensors holding NaN / inf."""
    own = module.state_dict()
    lines = [f"missing key {key} (expected shape {tuple(own[key].shape)})" for key in own if key not in state]
    lines += [f"unexpected key {key} (shape {tuple(state[key].shape)})" for key in state if key not in own]
    lines += [
        f"mis-shaped key {key}: checkpoint has {tuple(state[key].shape)}, the model expects {tuple(own[key].shape)}"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]
    if lines:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(lines))
    bad = [key for key, value in state.items()
           if value.is_floating_point() and not value.is_meta and not bool(value.isfinite().all())]
    if bad:  # a NaN / inf weight samples black images: refuse it here, once for every format
        raise CheckpointError(f"{source}: non-finite weights (NaN or inf) in {', '.join(bad[:5])}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))


def load_strict(module: nn.Module, state: StateDict, *, source: str = "checkpoint") -> nn.Module:
    """Check, then copy ``state`` into ``module`` (a module on the meta device gets fresh CPU tensors).

    Values are cast to the module's dtype; float32 checkpoints load bit-exactly.
    """
    check_state(module, state, source=source)
    own = module.state_dict()
    on_meta = any(tensor.is_meta for tensor in own.values())
    converted = {
        key: value.detach().to(dtype=own[key].dtype, device="cpu" if on_meta else own[key].device, copy=True)
        for key, value in state.items()
    }
    module.load_state_dict(converted, strict=True, assign=on_meta)
    return module


def detached_copy(state: StateDict) -> StateDict:
    """Independent, contiguous copies of every tensor (an export must not alias live weights)."""
    return {key: value.detach().clone().contiguous() for key, value in state.items()}
