"""``python -m maskdit.export RUN --format native|reference-maskdit|reference-dit|diffusers --out PATH [--weights ema|model]``.

RUN is anything :func:`maskdit.app.run_loading.load_run` reads (a run folder, a checkpoint folder, a native
export, a diffusers DiT folder). Formats:

* ``native``: ``PATH.safetensors`` + ``PATH.json`` (our ModelSpec), read by ``load_native``.
* ``reference-maskdit``: the reference MaskDiT layout (keys ``model.*``) under ``ema`` (or
  ``model`` with ``--weights model``), as its sampling script reads it; EDM models only.
* ``reference-dit``: DiT's layout, a bare state dict as DiT's released checkpoints; DDPM
  (epsilon) models with a label table and no decoder only.
* ``diffusers``: a folder ``diffusers.DiTTransformer2DModel.from_pretrained(PATH)`` loads (DiT
  layout only; a MaskDiT decoder is refused), see :mod:`maskdit.interop.diffusers`.

Reference files are written with ``torch.save`` of plain tensors (``.pt``/``.pth``, readable with
``weights_only=True``) or as safetensors when PATH ends in ``.safetensors``. Exit codes: 0 ok,
2 bad input or a model the format cannot express, 1 write failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from maskdit.app import cli
from maskdit.app.run_loading import open_run
from maskdit.config.errors import CheckpointError, InputError
from maskdit.interop import export_reference_dit, export_reference_maskdit, save_native
from maskdit.interop.diffusers import save_diffusers

FORMATS = ("native", "reference-maskdit", "reference-dit", "diffusers")


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
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def _write_tensors(state: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        save_file(state, str(out))
    else:
        torch.save(state, out)
    return out


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
    loaded = open_run(args.run, args.weights, format="train")  # what this library wrote, not a reference file
    if args.out.exists() and args.out.resolve() in (loaded.source.resolve(), loaded.run_dir.resolve()):
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
