"""Training checkpoints: one folder per step holding ``tensors.safetensors`` and ``state.json``.

A checkpoint is written into a hidden temporary folder and renamed into place only once both
files are complete and flushed, so a crash mid-save leaves the previous checkpoints untouched
(the next run removes the temporary folder). state.json records two SHA-256 digests, both checked
on every load: of the tensors file, and of the state itself (every key but the digest, as
canonical JSON: spec, step, optimizer hyper-parameters, the tensors' digest), so no part of a
checkpoint can be edited unnoticed; a checkpoint without them is refused. Weights with NaN or inf
are never written and never loaded. Tensors (model, EMA, optimizer moments, RNG states) go to
safetensors; everything else (spec, phase, step, counters, optimizer hyper-parameters) to JSON.
Nothing is pickled.

Only what maskdit wrote is ever deleted: a symlinked ``checkpoints/`` folder or checkpoint is
refused, and the clean-up after a crash and the pruning of old checkpoints remove only folders
with checkpoint names holding nothing but checkpoint files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError, listed, printable
from maskdit.io.files import UnsafePathError, check_inside, file_sha256

log = logging.getLogger(__name__)

FORMAT = "maskdit-checkpoint-v1"
TENSORS, STATE = "tensors.safetensors", "state.json"
TEMP_PREFIX = ".tmp-step-"
STEP_NAME = re.compile(r"step-\d{8,}")
TEMP_NAME = re.compile(r"\.tmp-step-\d{8,}-\d+")  # TEMP_PREFIX, the step, the writer's PID
FINITE_GROUPS = ("model", "ema", "optimizer")  # the groups a checkpoint refuses to hold NaN / inf in


class ParamGroup(BaseModel):
    """One optimizer parameter group as state.json holds it (AdamW's keys; others pass through)."""

    model_config = ConfigDict(extra="allow", strict=True)

    params: list[int]
    lr: float = Field(ge=0, allow_inf_nan=False)
    betas: list[float] = Field(min_length=2, max_length=2)
    eps: float = Field(ge=0, allow_inf_nan=False)
    weight_decay: float = Field(ge=0, allow_inf_nan=False)
    amsgrad: bool = False
    maximize: bool = False
    foreach: bool | None = None
    capturable: bool = False
    differentiable: bool = False
    fused: bool | None = None
    decoupled_weight_decay: bool = True


class CheckpointState(BaseModel):
    """What state.json must hold for a checkpoint to resume or be sampled (other keys pass through).

    Strict types: a hand-edited ``"step": "5"`` or ``true`` is an error, not a step count."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["maskdit-checkpoint-v1"]
    step: int = Field(ge=0)
    skipped: int = Field(0, ge=0)
    ema_updates: int = Field(0, ge=0)
    param_groups: list[ParamGroup] = Field(default_factory=list)
    spec: dict[str, Any] | None = None
    plugins: list[str] = Field(default_factory=list)  # modules of the users' plugins the spec names
    checksums: dict[str, str] = Field(default_factory=dict)


def state_sha256(state: Mapping[str, Any]) -> str:
    """The SHA-256 of a checkpoint's state: every key but the state's own digest (the tensors'
    digest included), as canonical JSON (sorted keys, no spaces), so a re-indented file still
    matches and any edited value does not."""
    checksums = {key: value for key, value in dict(state.get("checksums") or {}).items() if key != STATE}
    body = {**state, "checksums": checksums}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, dict[str, torch.Tensor]]  # group ("model", "ema", "optimizer", "rng") -> tensors
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def non_finite(tensors: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """Names ``group/tensor`` of floating tensors holding NaN or inf in the groups of FINITE_GROUPS."""
    return [f"{group}/{name}" for group in FINITE_GROUPS for name, value in tensors.get(group, {}).items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                    *, keep: int) -> Path:
    """Atomically write checkpoint ``step`` under ``root`` and prune all but the newest ``keep``.

    Refuses (CheckpointError) weights, EMA or optimizer state with NaN / inf, so a corrupt model is
    never saved over good checkpoints. state.json records the SHA-256 of tensors.safetensors, and
    the tensors file gets the permissions of the run's other files. On any failure (a full disk
    included) the temporary folder is removed and the previous checkpoints stay as they were."""
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(f"refusing to write checkpoint step {step}: non-finite values in {listed(bad, limit=5)}")
    check_inside(root.parent, root, folder=True)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    if os.path.lexists(final) and not _is_ours(final, (TENSORS, STATE)):
        raise UnsafePathError(f"{final} is not a checkpoint maskdit wrote (a link, or other files in it); "
                              "refusing to replace it")
    flat = {f"{group}/{name}": value.detach().contiguous().cpu() for group, items in tensors.items()
            for name, value in items.items()}
    temp = root / f"{TEMP_PREFIX}{step:08d}-{os.getpid()}"
    made = False
    try:
        if os.path.lexists(temp) and _is_ours(temp, (TENSORS, STATE)):
            shutil.rmtree(temp)  # this PID's own leftover
        temp.mkdir()  # fails on anything else left there: never written through
        made = True
        save_file(flat, str(temp / TENSORS))
        _fsync_file(temp / TENSORS)
        document = {"format": FORMAT, **state, "checksums": {TENSORS: file_sha256(temp / TENSORS)}}
        document["checksums"][STATE] = state_sha256(json.loads(json.dumps(document)))  # as it will be read
        with open(temp / STATE, "x", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp / TENSORS, stat.S_IMODE(os.stat(temp / STATE).st_mode))  # safetensors writes 0600
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.replace(temp, final)
    except (OSError, SafetensorError, ValueError) as err:
        if made:
            shutil.rmtree(temp, ignore_errors=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise CheckpointError(f"could not write checkpoint {final}: {reason}") from None
    for old in list_checkpoints(root)[:-keep]:
        if _is_ours(old, (TENSORS, STATE)):
            shutil.rmtree(old, ignore_errors=True)
        else:
            log.warning("not pruning %s: it holds files maskdit did not write", old)
    return final


def clean_leftovers(root: Path) -> list[Path]:
    """Remove what a killed save leaves under ``root``: temporary folders (named as a save names
    them) and ``step-*`` folders without a state.json, when they hold only checkpoint files. A
    symlinked ``root`` is refused (UnsafePathError); anything else is left alone (and logged).
    Only the process that holds the run folder's lock may call this."""
    check_inside(root.parent, root, folder=True)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        temporary = TEMP_NAME.fullmatch(path.name) is not None
        incomplete = STEP_NAME.fullmatch(path.name) is not None and not os.path.lexists(path / STATE)
        if not (temporary or incomplete):
            continue
        if _is_ours(path, (TENSORS, STATE) if temporary else (TENSORS,)):
            shutil.rmtree(path)
            removed.append(path)
        else:
            log.warning("left %s alone: it has a checkpoint's name but holds what maskdit did not write", path)
    return removed


def _is_ours(folder: Path, names: tuple[str, ...]) -> bool:
    """Whether ``folder`` is a real folder (no link) holding only regular files named in ``names``."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return all(entry.name in names and entry.is_file(follow_symlinks=False) for entry in os.scandir(folder))
    except OSError:
        return False


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders and links are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_NAME.fullmatch(p.name) and not p.is_symlink() and p.is_dir()
             and (p / STATE).is_file() and not (p / STATE).is_symlink()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_state(path: Path) -> dict[str, Any]:
    """state.json of checkpoint folder ``path``, validated and checked against its own SHA-256;
    CheckpointError naming the file and the field otherwise (and for a state without digests)."""
    file = Path(path) / STATE
    _refuse_link(file)
    try:
        document = jsonio.load_file(file, max_bytes=jsonio.STATE_MAX_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing: {path} is not a maskdit checkpoint") from None
    except OSError as err:
        raise CheckpointError(f"{file} is unreadable: {err.strerror or err}") from None
    except jsonio.JSONInputError as err:
        raise CheckpointError(f"{err} (corrupt checkpoint state)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"{file}: unknown checkpoint format {jsonio.short(found)}")
    try:
        CheckpointState.model_validate(document)
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        field = ".".join(map(str, problem["loc"])) or "state"
        shown = "" if problem["type"] == "missing" else f" (got {jsonio.short(problem.get('input'))})"
        raise CheckpointError(f"{file}: {field}: {problem['msg']}{shown}") from None
    checksums = document.get("checksums", {})
    missing = [name for name in (TENSORS, STATE) if name not in checksums]
    if missing:
        raise CheckpointError(f"{file}: no SHA-256 recorded for {' and '.join(missing)} (checksums); a checkpoint "
                              "that cannot be verified is refused (written by an older maskdit, or edited)")
    try:
        digest = state_sha256(document)
    except ValueError:
        raise CheckpointError(f"{file}: holds NaN or Infinity, which maskdit never writes (corrupt or edited)"
                              ) from None
    if digest != checksums[STATE]:
        raise CheckpointError(f"{file} fails its SHA-256 check (checksums.{STATE}): the state was edited or is corrupt")
    if STEP_NAME.fullmatch(Path(path).name) and int(Path(path).name[5:]) != document["step"]:
        raise CheckpointError(f"{file}: step {document['step']} does not match its folder {Path(path).name}")
    return document


def _refuse_link(file: Path) -> None:
    """A checkpoint's files are read only from the folder itself, never through a symlink."""
    if file.is_symlink():
        raise UnsafePathError(f"{file} is a symbolic link; a checkpoint's files must be its own")


def load_checkpoint(path: Path, *, finite: bool = True) -> Checkpoint:
    """Read a checkpoint folder; a missing or corrupt file raises CheckpointError naming it.

    The state and the tensors file must match the SHA-256 digests recorded in state.json (a
    checkpoint without them is refused), and with ``finite`` the model, EMA and optimizer
    tensors must hold no NaN or inf."""
    path = Path(path)
    state = read_state(path)
    file = path / TENSORS
    _refuse_link(file)
    expected = state["checksums"][TENSORS]
    try:
        if file_sha256(file) != expected:
            raise CheckpointError(f"{file} fails its SHA-256 check (recorded in {path / STATE}): the file is corrupt")
        flat = load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing") from None
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{file} is unreadable or corrupt: {err}") from None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = value
    bad = non_finite(groups) if finite else []
    if bad:
        raise CheckpointError(f"{file} holds non-finite values in {listed(bad, limit=5)}")
    return Checkpoint(path=path, tensors=groups, state=state)


def check_optimizer_tensors(tensors: dict[str, torch.Tensor], params: list[torch.Tensor], *, source: str) -> None:
    """Every per-parameter moment ``"{i}.{slot}"`` must belong to parameter i and have its shape."""
    for key, value in tensors.items():
        index, _, slot = key.partition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise CheckpointError(f"{source}: optimizer tensor {printable(key)} names no parameter of this model")
        shape = tuple(params[int(index)].shape)
        if slot != "step" and tuple(value.shape) != shape:
            raise CheckpointError(f"{source}: optimizer tensor {printable(key)} has shape {tuple(value.shape)}, "
                                  f"its parameter {shape}")


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
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)  # a new file: nothing is written through
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
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
