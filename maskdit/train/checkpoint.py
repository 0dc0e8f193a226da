"""Training checkpoints: one folder per step holding ``tensors.safetensors`` and ``state.json``.

A checkpoint is written into a hidden temporary folder and renamed into place only once both
files are complete and flushed, so a crash mid-save leaves the previous checkpoints untouched.
Tensors (model, EMA, optimizer moments, RNG states) go to safetensors; everything else (spec,
phase, step, counters, optimizer hyper-parameters) to JSON. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "maskdit-checkpoint-v1"
TENSORS, STATE = "tensors.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message says which file and why."""


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, dict[str, torch.Tensor]]  # group ("model", "ema", "optimizer", "rng") -> tensors
    state: dict[str, Any]


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                    *, keep: int) -> Path:
    """Atomically write checkpoint ``step`` under ``root`` and prune all but the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    temp = root / f".tmp-{final.name}-{os.getpid()}"
    flat = {f"{group}/{name}": value.detach().contiguous().cpu() for group, items in tensors.items()
            for name, value in items.items()}
    try:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        save_file(flat, str(temp / TENSORS))
        with open(temp / STATE, "w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, **state}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_file(temp / TENSORS)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
    except OSError as err:
        shutil.rmtree(temp, ignore_errors=True)
        raise CheckpointError(f"could not write checkpoint {final}: {err.strerror or err}") from err
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder; a missing or corrupt file raises CheckpointError naming it."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path / STATE} is missing: {path} is not a maskdit checkpoint") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / STATE} is unreadable or corrupt: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path / STATE}: unknown checkpoint format {state.get('format') if isinstance(state, dict) else state!r}")
    try:
        flat = load_file(str(path / TENSORS))
    except FileNotFoundError:
        raise CheckpointError(f"{path / TENSORS} is missing") from None
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{path / TENSORS} is unreadable or corrupt: {err}") from None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = value
    return Checkpoint(path=path, tensors=groups, state=state)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Split an optimizer state dict into tensors (per-parameter moments) and JSON (param groups)."""
    state = optimizer.state_dict()
    tensors = {}
    for param_id, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"{param_id}.{slot}"] = torch.as_tensor(value)
    return tensors, state["param_groups"]


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param_id, _, slot = key.partition(".")
        per_param.setdefault(int(param_id), {})[slot] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def check_writable(root: Path, needed_bytes: int) -> None:
    """Fail before training when the run folder cannot be written or the disk is too full."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(f"run folder {root} is not writable: {err.strerror or err}") from None
    free = shutil.disk_usage(root).free
    if free < needed_bytes:
        raise CheckpointError(
            f"only {free / 2**20:.0f} MiB free under {root}; a checkpoint needs about {needed_bytes / 2**20:.0f} MiB"
        )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
