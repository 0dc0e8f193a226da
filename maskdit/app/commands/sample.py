"""``python -m maskdit.sample CHECKPOINT [--n/--num-samples 64] [--sampler heun] [--steps 40] [--cfg 1.5] [--path-drop null] [--seed 0] [--out grid.png] [--npz samples.npz]``.

CHECKPOINT is one of (``--format auto`` tells them apart):
  * a training checkpoint folder or run folder (its latest checkpoint; EMA weights unless
    ``--weights model``); its saved spec supplies the default sampler;
  * our native ``.safetensors`` file (with its ``.json`` sidecar);
  * a reference MaskDiT checkpoint (``model.``-prefixed keys) or a DiT checkpoint (torch file);
    architecture fields the shapes do not determine come from ``--preset`` / ``--arch KEY=VALUE``.
Sampler fields not covered by the flags are set with ``--set sampler.FIELD=VALUE``, the full spec
path as in evaluate (e.g. ``--set sampler.eta=0.5``, ``--set sampler.schedule.name=loglinear``);
a reference checkpoint's architecture with ``--set model.FIELD=VALUE`` (``--arch FIELD=VALUE`` for
short). Image i is drawn from its own generator seeded by (seed, i), so
the same seed gives the same image at any batch size. Labels cycle over the classes unless
``--class-label`` fixes one. Writes a PNG grid and optionally an ``.npz`` in ADM's evaluation
format (``arr_0``: uint8 NHWC images, ``arr_1``: labels). ``--latents PATH`` instead writes the
raw float samples (``latents`` [N, C, H, W], ``labels``) for any channel count, e.g. a latent
model's, for ``python -m maskdit.latents decode``. Exit codes: 0 ok, 2 bad input, 1 failure.

Under ``torchrun --nproc_per_node N -m maskdit.sample ... --num-samples 50000`` the ranks share the batches (rank r
draws batches r, r + N, ...; ``--device cuda`` means GPU LOCAL_RANK), rank 0 gathers them
batch by batch and writes the grid and npz. The images are the same for any number of ranks.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from maskdit.app import cli
from maskdit.app.experiment import sampler_for
from maskdit.app.experiment_spec import override_input
from maskdit.app.run_loading import detect_format, open_run
from maskdit.config import json_input as jsonio
from maskdit.config.errors import InputError
from maskdit.config.spec_model import SEED_MAX
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.eval.generation import generate_batches
from maskdit.io.files import atomic_write
from maskdit.io.images import save_grid, to_uint8_nhwc, write_adm_npz
from maskdit.samplers.flow_specs import follow_process_grid
from maskdit.samplers.specs import SamplerSpec
from maskdit.train.distributed import gather_to_main, init_distributed, shutdown


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="training checkpoint / run folder, .safetensors, or reference file")
    parser.add_argument("--format", default="auto",
                        choices=["auto", "train", "native", "reference-maskdit", "reference-dit", "reference-sit"],
                        help="checkpoint format (default: detected)")
    parser.add_argument("--weights", default="ema", choices=["ema", "model"], help="which weights to sample with")
    parser.add_argument("--preset", default=None, help="architecture preset for a reference checkpoint")
    parser.add_argument("--arch", action="append", default=[], metavar="FIELD=VALUE",
                        help="a reference checkpoint's ModelSpec field, e.g. num_heads=16: short for --set "
                             "model.num_heads=16 (repeatable)")
    # --num-samples: torchrun's parser rejects "--n" as an ambiguous prefix of its own options
    parser.add_argument("--n", "--num-samples", dest="n", type=int, default=64, help="number of samples")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch")
    parser.add_argument("--sampler", default=None,
                        help="a registered sampler's name (default: spec's or heun); checked with the spec")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps")
    parser.add_argument("--cfg", type=cli.finite_float, default=None, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--path-drop", choices=["null", "same"], default=None, metavar="{null,same}",
                        help="path-drop guidance (SPRINT) at the --cfg scale: the weak branch is the model with its "
                             "sparse path dropped, with the null or the same label (a model trained with "
                             "masking.path_drop; --set sampler.path_drop=false turns a saved sampler's off)")
    cli.add_set_argument(parser, "sampler.eta=0.5")
    parser.add_argument("--class-label", type=int, default=None, help="draw every sample from this class")
    parser.add_argument("--seed", type=int, default=0, help=f"run seed, 0..{SEED_MAX}; image i uses seed (seed, i)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("grid.png"), help="PNG grid to write")
    parser.add_argument("--npz", type=Path, default=None, help="also write the samples as an ADM-style .npz")
    parser.add_argument("--latents", type=Path, default=None,
                        help="write the raw float samples (.npz: latents, labels) instead of a grid / ADM npz")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_plugin_argument(parser)
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        parser.error("--n and --batch-size must be >= 1")
    if not 0 <= args.seed <= SEED_MAX:
        parser.error(f"--seed must be in 0..{SEED_MAX} (2**32 - 1, what torch's generators use), got {args.seed}")
    return args


# ---- loading --------------------------------------------------------------------------------
def load(args: argparse.Namespace) -> tuple[Denoiser | DDPMDenoiser, dict[str, Any] | None]:
    """(denoiser in eval mode on the CPU, the training spec's sampler section or None)."""
    fmt = detect_format(args.checkpoint)  # a missing path is reported before any other problem
    fmt = fmt if args.format == "auto" else args.format
    if not fmt.startswith("reference") and (args.preset is not None or model_overrides(args)):
        raise InputError("--preset / --arch / --set model.* apply to reference checkpoints only (the weights of "
                         "a training checkpoint or native export fix the model)")
    architecture = model_overrides(args) | ({} if args.preset is None else {"preset": args.preset})
    loaded = open_run(args.checkpoint, args.weights, format=fmt, architecture=architecture)
    return loaded.denoiser, None if loaded.spec is None else loaded.spec.sampler.model_dump(mode="json")


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelSpec fields ``--arch FIELD=VALUE`` and ``--set model.FIELD=VALUE`` give."""
    items = [f"model.{item}" for item in args.arch] + [item for item in args.overrides if item.startswith("model.")]
    return override_input({"model": {}}, items)["model"]


def sampler_spec(args: argparse.Namespace, base: dict[str, Any] | None, process: Any):
    """The sampler spec: the checkpoint's (or a default for the model's process), then the flags.
    A flow model's euler / heun default to the flow's time grid (see ``follow_process_grid``)."""
    default_name = "ddpm" if getattr(process, "precond", "edm") == "ddpm" else "heun"
    data = dict(base) if base is not None else {"name": default_name}
    if args.sampler is not None and args.sampler != data.get("name"):
        guidance = ("cfg_scale", "cfg_interval", "cfg_interval_t", "cfg_channels", "path_drop", "path_drop_label")
        keep = {k: data[k] for k in guidance if k in data}
        data = {"name": args.sampler, **keep}
    data = follow_process_grid(data, process)
    if args.steps is not None:
        data["steps"] = args.steps
    if args.cfg is not None:
        data["cfg_scale"] = args.cfg
    if args.path_drop is not None:
        data.update(path_drop=True, path_drop_label=args.path_drop)
    wrong = [item for item in args.overrides if not item.startswith(("sampler.", "model."))]
    if wrong:
        raise InputError(f"--set {jsonio.short(wrong[0])}: give the full spec path, as evaluate does, e.g. "
                         f"--set sampler.{wrong[0]} (sample changes only the sampler section, and a reference "
                         "checkpoint's model)")
    sampler_items = [item for item in args.overrides if item.startswith("sampler.")]
    data = override_input({"sampler": data}, sampler_items)["sampler"]
    try:
        return TypeAdapter(SamplerSpec).validate_python(data)
    except ValidationError as err:
        raise InputError.from_validation(err, data, prefix="sampler") from None


# ---- sampling and writing ---------------------------------------------------------------------
def sample_images(denoiser, sampler, *, n: int, batch_size: int, labels: torch.Tensor | None, seed: int,
                  device: str, progress: bool, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """[n, C, H, W] float32 samples on the CPU, image i from generator image_seed(seed, i); with
    ``world_size`` > 1, this rank's batches only (rank, rank + W, ...), concatenated."""
    batches = sample_batches(denoiser, sampler, n=n, batch_size=batch_size, labels=labels, seed=seed, device=device,
                             rank=rank, world_size=world_size)
    return torch.cat(list(tqdm(batches, disable=not progress, desc="sampling", unit="batch", file=sys.stderr)))


def sample_batches(denoiser, sampler, *, n: int, batch_size: int, labels: torch.Tensor | None, seed: int,
                   device: str | torch.device, rank: int = 0, world_size: int = 1, callback=None):
    """Yield this rank's batches [B, C, H, W] (float32, CPU) in order; see :func:`rank_batch_starts`."""
    shape = (denoiser.in_channels, denoiser.input_size, denoiser.input_size)
    for images, _ in generate_batches(denoiser, sampler, num_samples=n, batch_size=batch_size, shape=shape,
                                      num_classes=0, seed=seed, device=device, rank=rank, world_size=world_size,
                                      labels=labels, callback=callback):
        yield images


def gather_batches(batches, convert, *, n: int, batch_size: int, ctx, progress: bool) -> np.ndarray | None:
    """``convert(batch)`` of all ranks' batches in image order on rank 0 (None elsewhere). One
    gather per round of W batches, so no rank holds more than its current batch for long."""
    num_batches = math.ceil(n / batch_size)
    rounds = math.ceil(num_batches / ctx.world_size)
    batches = iter(batches)
    gathered = []
    for _ in tqdm(range(rounds), disable=not (progress and ctx.is_main), desc="sampling", unit="round",
                  file=sys.stderr):
        local = next(batches, None)  # in the last round some ranks have no batch left
        received = gather_to_main(None if local is None else convert(local), ctx)
        if received is not None:
            gathered += [part for part in received if part is not None]  # rank order = batch order
    return np.concatenate(gathered) if ctx.is_main else None


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    ctx = init_distributed(args.device, field="--device")  # a single process unless launched by torchrun
    try:
        return _main(args, ctx)
    finally:
        shutdown(ctx)


def prepare(args: argparse.Namespace) -> tuple[Any, Any, int]:
    """(denoiser, sampler spec, number of classes), every problem with the input an InputError."""
    denoiser, base = load(args)
    process = getattr(getattr(denoiser, "spec", None), "process", None)
    pure_noise = bool(getattr(process, "defined_at_pure_noise", False))
    spec = sampler_spec(args, base, process)
    if math.isinf(spec.sigma_max) and not pure_noise:  # refused here, not after the first batch has started
        model = f"model.process {getattr(process, 'name', '?')!r}" + (
            f" with prediction {process.prediction!r}" if hasattr(process, "prediction") else "")
        raise InputError(f"sampler {spec.name!r}: schedule {spec.schedule.name!r} starts at pure noise (sigma = inf), "
                         f"where this {model} model has no value: --set sampler.schedule='{{\"name\": "
                         f"\"uniform_t\", \"t_max\": 0.99}}' (or a sigma schedule)")
    num_classes = int(getattr(denoiser, "num_classes", 0))
    if args.class_label is not None and not 0 <= args.class_label < max(num_classes, 1):
        raise InputError(f"--class-label must be in [0, {num_classes}) for this model, got {args.class_label}")
    if args.class_label is not None and num_classes == 0:
        raise InputError("--class-label needs a class-conditional model (this one is unconditional)")
    if getattr(spec, "needs_labels", spec.cfg_scale != 1) and num_classes == 0:
        raise InputError("--cfg needs a class-conditional model (this one is unconditional)"
                         + (": or path-drop guidance with the same label, --path-drop same" if getattr(spec, "path_drop", False) else ""))
    routing = getattr(getattr(denoiser, "spec", None), "routing", None)
    if getattr(spec, "path_drop", False) and (routing is None or not routing.rejoins):
        raise InputError("--path-drop guides with the model's sparse path dropped where the dropped tokens rejoin, "
                         "but this model's routing never rejoins (model.routing.end is not set): use --cfg alone "
                         "(--set sampler.path_drop=false)")
    channels = denoiser.in_channels
    if channels not in (1, 3) and args.latents is None:
        raise InputError(f"the model makes {channels}-channel samples (latents?): only 1- or 3-channel images "
                         "can be written as PNG / ADM npz; write them with --latents PATH.npz and turn them "
                         "into images with python -m maskdit.latents decode")
    return denoiser, spec, num_classes


def _count_evaluations(counted: list[int]):
    """A sampler callback that keeps each batch's network evaluations (an adaptive solver's ``nfe``)."""
    def on_step(info: dict) -> None:
        if info.get("i") == 0 or not counted:
            counted.append(0)
        counted[-1] = max(counted[-1], int(info.get("nfe") or 0))
    return on_step


def _main(args: argparse.Namespace, ctx) -> int:
    say = print if ctx.is_main else (lambda *a, **k: None)  # rank 0 alone prints
    denoiser, spec, num_classes = prepare(args)
    device = ctx.device(args.device)
    try:
        denoiser = denoiser.to(device).eval()
        sampler = sampler_for(spec, num_classes)
        if args.class_label is not None:
            labels = torch.full((args.n,), args.class_label, dtype=torch.long)
        else:
            labels = torch.arange(args.n) % num_classes if num_classes else None
        ranks = f" on {ctx.world_size} ranks" if ctx.is_distributed else ""
        adaptive = sampler.num_evaluations is None  # dopri5 picks its own steps: count them
        calls = "an adaptive number of denoiser calls" if adaptive else f"{sampler.num_evaluations} denoiser calls"
        guidance = (f"path-drop guidance {spec.cfg_scale:g} ({spec.path_drop_label} label)"
                    if getattr(spec, "path_drop", False) and spec.cfg_scale != 1 else f"cfg {spec.cfg_scale:g}")
        say(f"sampling {args.n} images with {spec.name}, {'adaptive' if adaptive else spec.steps} steps ({calls} "
            f"each), {guidance}, seed {args.seed}{ranks}", flush=True)
        counted: list[int] = []
        batches = sample_batches(denoiser, sampler, n=args.n, batch_size=args.batch_size, labels=labels,
                                 seed=args.seed, device=device, rank=ctx.rank, world_size=ctx.world_size,
                                 callback=_count_evaluations(counted) if adaptive else None)
        convert = (lambda batch: batch.numpy()) if args.latents is not None else to_uint8_nhwc
        gathered = gather_batches(batches, convert, n=args.n, batch_size=args.batch_size, ctx=ctx,
                                  progress=not args.no_progress)
        if not ctx.is_main:
            return cli.EXIT_OK
        if args.latents is not None:
            arrays = {"latents": gathered} if labels is None else {"latents": gathered, "labels": labels.numpy()}

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **arrays)

            atomic_write(args.latents, write)  # an interrupted write leaves no partial file
            print(f"wrote {args.latents} (latents: float32 {gathered.shape}"
                  + (", labels)" if labels is not None else ")"))
            return cli.EXIT_OK
        if counted:
            print(f"{spec.name}: {min(counted)}-{max(counted)} denoiser calls per batch (median "
                  f"{sorted(counted)[len(counted) // 2]}, {len(counted)} batches on this rank)")
        pixels = gathered
        save_grid(args.out, pixels)
        print(f"wrote {args.out}")
        if args.npz is not None:
            write_adm_npz(args.npz, pixels, labels)
            print(f"wrote {args.npz} (arr_0: uint8 {pixels.shape} NHWC" + (", arr_1: labels)" if labels is not None else ")"))
    except (RuntimeError, ValueError, OSError) as err:
        print(f"error: sampling failed{f' on rank {ctx.rank}' if ctx.is_distributed else ''}: {err}", file=sys.stderr)
        return cli.EXIT_FAILED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
