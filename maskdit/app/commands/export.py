"""``python -m maskdit.export RUN --format native|reference-maskdit|reference-dit|reference-sit|diffusers --out PATH [--weights ema|model]``.

RUN is anything :func:`maskdit.app.run_loading.load_run` reads (a run folder, a checkpoint folder, a native
export, a diffusers DiT folder). Formats:

* ``native``: ``PATH.safetensors`` + ``PATH.json`` (our ModelSpec), read by ``load_native``.
* ``reference-maskdit``: the reference MaskDiT layout (keys ``model.*``) under ``ema`` (or
  ``model`` with ``--weights model``), as its sampling script reads it; EDM models only.
* ``reference-dit``: DiT's layout, a bare state dict as DiT's released checkpoints; DDPM
  (epsilon) models with a label table and no decoder only.
* ``reference-sit``: SiT's layout (DiT's keys with a learned-variance output), a bare state dict
  SiT's ``sample.py`` reads; flow-matching models in SiT's time convention with a label table and
  no decoder only (the file cannot say REPA's time: such a model is refused, see
  ``export_reference_sit``).
* ``diffusers``: a folder ``diffusers.DiTTransformer2DModel.from_pretrained(PATH)`` loads (DiT
  layout only; a MaskDiT decoder is refused), see :mod:`maskdit.interop.diffusers`.

Reference files are written with ``torch.save`` of plain tensors (``.pt``/``.pth``, readable with
``weights_only=True``) or as safetensors when PATH ends in ``.safetensors``.

A training run is read under its run lock (a run still training, or another command writing
there, refuses the export), and PATH may not land on a run's own files: inside a checkpoints
folder or a checkpoint, onto spec.json, metrics.jsonl or another file a run writes, into its
samples/, or onto the run folder itself. Exports next to them (e.g. RUN/export.safetensors,
RUN/posthoc/...) are fine. Exit codes: 0 ok, 2 bad input, a refused PATH or a model the format
cannot express, 1 write failure.
"""

from __future__ import annotations

import argparse
import errno
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import save_file

from maskdit.app import cli
from maskdit.app.evaluation import EVAL_FILE, GRID_FILE, METRICS_FILE, PLOT_FILE
from maskdit.app.run_loading import open_run
from maskdit.app.training_hooks import SAMPLES_DIR
from maskdit.app.training_run import SPEC_FILE
from maskdit.config.errors import CheckpointError, InputError
from maskdit.interop import export_reference_dit, export_reference_maskdit, export_reference_sit, save_native
from maskdit.interop.diffusers import CONFIG, SIDECAR, WEIGHTS, save_diffusers
from maskdit.interop.native import native_paths
from maskdit.io import checkpoint as ckpt
from maskdit.io.runlock import LOCK_NAME, RunLock

FORMATS = ("native", "reference-maskdit", "reference-dit", "reference-sit", "diffusers")
#: what a run folder holds that an export must never replace: files, and folders it may not enter
RUN_FILES = frozenset({SPEC_FILE, METRICS_FILE, EVAL_FILE, GRID_FILE, PLOT_FILE, "loss.png", "posthoc_ema.json",
                       LOCK_NAME})
RUN_FOLDERS = frozenset({"checkpoints", SAMPLES_DIR})


def export(denoiser, fmt: str, out: Path, *, weights: str = "ema") -> Path:
    """Write ``denoiser`` in format ``fmt`` at ``out``; returns what was written. Raises
    CheckpointError / TypeError / ValueError for a model the format cannot express."""
    if fmt == "native":
        return save_native(denoiser, out)
    if fmt == "diffusers":
        return save_diffusers(denoiser, out)
    if fmt == "reference-maskdit":
        state = export_reference_maskdit(denoiser)
        return _write_tensors({weights: state} if out.suffix != ".safetensors" else state, out)
    if fmt == "reference-dit":
        return _write_tensors(export_reference_dit(denoiser), out)
    if fmt == "reference-sit":
        if getattr(denoiser, "convention", None) == "repa":  # the file cannot say so: it would be read in SiT's
            raise ValueError("the model runs in REPA's time (t = 1 at the noise), and a SiT-layout file carries no "
                             "time convention: SiT's code, load_reference_sit and `sample --format reference-sit` "
                             "would run it in SiT's (t = 1 at the data). Export it as native, or from Python with "
                             "export_reference_sit and read it back with load_reference_sit(..., layout='repa')")
        return _write_tensors(export_reference_sit(denoiser), out)
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def _write_tensors(state: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        save_file(state, str(out))
    else:
        torch.save(state, out)
    return out


def written_paths(fmt: str, out: Path) -> list[Path]:
    """Every path an export in ``fmt`` at ``out`` writes (a diffusers folder: it and its files)."""
    if fmt == "native":
        return list(native_paths(out))
    if fmt == "diffusers":
        return [out, *(out / name for name in (WEIGHTS, CONFIG, SIDECAR))]
    return [out]


def is_run_folder(folder: Path) -> bool:
    try:
        return (folder / "checkpoints").is_dir() or (folder / LOCK_NAME).is_file()
    except OSError:  # a folder we may not look into is no run of ours
        return False


def holds_checkpoints(folder: Path) -> bool:
    try:
        return bool(ckpt.list_checkpoints(folder))
    except OSError:
        return False


def check_out(paths: list[Path], flag: str = "--out") -> None:
    """InputError when a path would land on a run's own files (see the module): the export would
    break a checkpoint's checksum, replace the run's spec, or be loaded in place of the run."""
    for path in paths:
        target = path.resolve()  # links followed: a link into a run is the run
        for folder in (target, *target.parents):
            if ckpt.STEP_NAME.fullmatch(folder.name) and holds_checkpoints(folder.parent):
                raise InputError(f"{flag} {path} lies inside the checkpoint {folder}; choose a path outside it")
            if folder != target and holds_checkpoints(folder):
                raise InputError(f"{flag} {path} lies inside the checkpoints folder {folder}; choose another path")
            if not is_run_folder(folder):
                continue
            parts = target.relative_to(folder).parts
            if not parts or parts[0] in RUN_FOLDERS or (len(parts) == 1 and parts[0] in RUN_FILES):
                what = "is the run folder" if not parts else f"would replace the run's own {'/'.join(parts[:1])}"
                raise InputError(f"{flag} {path} {what} ({folder}); choose another path (e.g. "
                                 f"{folder / 'export'})")


def run_folder_of(path: Path) -> Path | None:
    """The run folder a training checkpoint, checkpoints folder or run folder ``path`` belongs to
    (None for an export or anything else)."""
    path = path.resolve()
    for candidate in (path, path.parent, path.parent.parent):
        inside = candidate == path or path.is_relative_to(candidate / "checkpoints")
        if inside and (candidate / "checkpoints").is_dir():
            return candidate
    return None


def run_lock(run_dir: Path | None) -> RunLock | nullcontext:
    """The run's lock, taken (a folder we cannot write, e.g. someone else's read-only run, is read
    without it: nobody writing there can be us, and every checkpoint is checked by its digests)."""
    if run_dir is None:
        return nullcontext()
    lock = RunLock(run_dir)
    try:
        return lock.acquire()
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return nullcontext()
        raise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder, checkpoint folder, native export or diffusers folder")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--out", required=True, type=Path, help="output file (folder for diffusers)")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights of a checkpoint")
    cli.add_plugin_argument(parser)
    return parser.parse_args(argv)


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    targets = written_paths(args.format, args.out)
    check_out(targets)  # before reading anything: nothing of a run is ever written over
    with run_lock(run_folder_of(args.run)):
        loaded = open_run(args.run, args.weights, format="train")  # what this library wrote, not a reference file
        if any(path.resolve() in (loaded.source.resolve(), loaded.run_dir.resolve()) for path in targets):
            raise InputError(f"--out {args.out} is the model being exported; choose another path")
        try:
            written = export(loaded.denoiser, args.format, args.out, weights=args.weights)
        except (CheckpointError, TypeError, ValueError) as err:
            raise InputError(f"cannot export as {args.format}: {err}") from None
        except OSError as err:
            return cli.report(f"could not write {args.out}: {err.strerror or err}", code=cli.EXIT_FAILED)
    step = f" at step {loaded.step}" if loaded.step is not None else ""
    print(f"wrote {written} ({args.format}, {args.weights if loaded.step is not None else 'stored'} weights of "
          f"{loaded.source}{step})")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
