"""Load a state dict into a module, failing with one line per missing, unexpected or mis-shaped key.

Key names come from the file: each is printed escaped (:func:`maskdit.config.errors.printable`)
and each kind of problem lists at most :data:`MAX_LINES` keys, then how many more, so a file of
20,000 junk keys gives a screenful, not 20,000 lines.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from maskdit.config.errors import CheckpointError, listed, printable
from maskdit.io.weight_files import StateDict

MAX_LINES = 10  # keys listed per kind of problem


def check_state(module: nn.Module, state: StateDict, *, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming every key that is missing, unexpected or of the wrong shape, the
    weights stored as a non-float type where the model has floats (a bool or int8 copy would load
    as garbage), or the tensors holding NaN / inf."""
    own = module.state_dict()
    check_keys({key: tuple(value.shape) for key, value in own.items()}, state, source=source)
    cast = [key for key in own if own[key].is_floating_point() and not state[key].is_floating_point()]
    if cast:
        kinds = sorted({str(state[key].dtype).removeprefix("torch.") for key in cast})
        raise CheckpointError(f"{printable(source)}: weights stored as {'/'.join(kinds)} where the model has floating "
                              f"point: {listed(cast)} (refusing to cast them: a rounded copy samples garbage)")
    bad = non_finite(state)
    if bad:  # a NaN / inf weight samples black images: refuse it here, once for every format
        raise CheckpointError(f"{printable(source)}: non-finite weights (NaN or inf) in {listed(bad, limit=5)}")


def check_keys(expected: Mapping[str, tuple[int, ...]], state: StateDict, *, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming the keys of ``state`` that are missing from, not in, or shaped
    otherwise than ``expected`` (key -> shape)."""
    lines = _cut("missing", [f"missing key {printable(key)} (expected shape {shape})"
                             for key, shape in expected.items() if key not in state])
    lines += _cut("unexpected", [f"unexpected key {printable(key)} (shape {tuple(state[key].shape)})"
                                 for key in state if key not in expected])
    lines += _cut("mis-shaped", [
        f"mis-shaped key {printable(key)}: checkpoint has {tuple(state[key].shape)}, the model expects {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != tuple(shape)
    ])
    if len(lines) == 1:
        raise CheckpointError(f"{printable(source)} does not fit the model: {lines[0]}")
    if lines:
        raise CheckpointError(f"{printable(source)} does not fit the model:\n  " + "\n  ".join(lines))


def non_finite(state: StateDict) -> list[str]:
    """The keys of the floating-point tensors of ``state`` holding NaN or inf (meta tensors skipped)."""
    return [key for key, value in state.items()
            if value.is_floating_point() and not value.is_meta and not bool(value.isfinite().all())]


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


def _cut(kind: str, lines: list[str]) -> list[str]:
    """The first MAX_LINES of ``lines``, then one line counting the rest."""
    if len(lines) <= MAX_LINES:
        return lines
    return lines[:MAX_LINES] + [f"... and {len(lines) - MAX_LINES:,} more {kind} keys"]
