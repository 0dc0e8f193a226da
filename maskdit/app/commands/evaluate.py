"""``python -m maskdit.evaluate CHECKPOINT [--set eval.num_samples=200 ...] [--weights ema|model] [--out DIR]``.

CHECKPOINT is a training checkpoint folder (``runs/<name>/checkpoints/step-00002000``), a run
folder (its latest checkpoint is used), or a native ``model.safetensors`` export (with its
``model.json``). The experiment spec saved in a training checkpoint says how to sample
(``sampler``) and what to compute (``eval``); a native export carries only the model, so the
other sections come from ``--spec`` (a spec file or preset, default ``default``). ``--set``
overrides any field, validated like a spec file. Training checkpoints sample with the EMA
weights unless ``--weights model``.

Prints the metrics, appends them to the run's ``metrics.jsonl`` and writes ``samples.png``
(one row per class) and ``eval.json`` next to it (in ``--out`` if given); with several
evaluations in the metrics file, ``eval_metrics.png`` plots them over training steps.
Exit codes: 0 ok, 2 bad checkpoint / spec / option, 1 evaluation failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from maskdit.app import cli
from maskdit.app.evaluation import check_outputs, evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, load_spec_dict, validate_spec
from maskdit.app.run_loading import LoadedRun, open_run
from maskdit.config.errors import InputError
from maskdit.io.checkpoint import check_writable
from maskdit.io.runlock import RunLock
from maskdit.train.distributed import check_device


def load(args: argparse.Namespace) -> tuple[ExperimentSpec, LoadedRun]:
    """(the experiment spec to evaluate with, the loaded model). A training checkpoint's spec with
    ``--set`` applied; a native export's model in the ``--spec`` experiment. ``--set`` may change
    sampling and evaluation, not the model its weights fix."""
    path: Path = args.checkpoint
    if path.suffix == ".safetensors":
        loaded = open_run(path, device=args.device, format="native")
        try:
            data = load_spec_dict(args.spec)
        except (OSError, ValueError) as err:
            raise InputError(str(err)) from None
        spec = validate_spec({**data, "model": loaded.denoiser.spec.model_dump(mode="json")}, args.overrides)
        if spec.model != loaded.denoiser.spec:
            raise InputError("--set cannot change the model of a native export (its weights fix it)")
        return spec, loaded
    if path.is_file():
        raise InputError(f"{path}: a file; give a run or checkpoint folder, or a native .safetensors export")
    loaded = open_run(path, args.weights, device=args.device, format="train")
    if loaded.spec is None:
        raise InputError(f"{path}: holds no experiment spec (a diffusers folder?); export it natively first")
    spec = validate_spec(loaded.spec.model_dump(mode="json"), args.overrides)
    if spec.model != loaded.spec.model:
        raise InputError("--set cannot change the model of a checkpoint (its weights fix it)")
    return spec, loaded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder, run folder, or native .safetensors export")
    cli.add_set_argument(parser, "eval.num_samples=200")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights sample (default ema)")
    parser.add_argument("--spec", default="default",
                        help="experiment spec (file or preset) for a native export's sampler/eval/data (default: default)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the run folder)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_plugin_argument(parser)
    return parser.parse_args(argv)


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    lock = None
    try:
        check_device(args.device, field="--device")
        spec, loaded = load(args)
        denoiser, step = loaded.denoiser, loaded.step
        if spec.eval.num_samples < 1:
            raise InputError("eval.num_samples is 0: nothing to evaluate (use --set eval.num_samples=N)")
        out_dir = args.out or loaded.run_dir
        check_writable(out_dir, needed_bytes=2**20)  # before sampling, not after an hour of it
        lock = RunLock(out_dir).acquire()  # a training run or another evaluation writing there refuses us
        check_outputs(out_dir)  # a link planted among the outputs is refused now, not after sampling
        experiment = Experiment(spec)
        evaluator = experiment.evaluator(device=args.device)
    except (OSError, ValueError) as err:  # InputErrors (CheckpointErrors too), and files or networks that fail
        if lock is not None:
            lock.release()
        return cli.report(err)
    print(f"evaluating {args.checkpoint} (step {step}, {args.weights} weights): {spec.eval.num_samples} samples, "
          f"{spec.sampler.name} {spec.sampler.steps} steps, metrics {', '.join(spec.eval.metrics)}", flush=True)
    bar = None
    if not args.no_progress:
        bar = tqdm(total=spec.eval.num_samples, unit="img", desc="sampling", file=sys.stderr)
    try:
        record = evaluate_denoiser(denoiser, experiment, step=step, out_dir=out_dir, evaluator=evaluator,
                                   device=args.device, on_batch=None if bar is None else bar.update)
    except (ValueError, OSError) as err:
        return cli.report(err, code=cli.EXIT_FAILED)
    finally:
        lock.release()
        if bar is not None:
            bar.close()
    for key in ("fid", "class_accuracy", "precision", "recall"):
        if key in record:
            print(f"{key:>15}: {record[key]:.4f}")
    print(f"{'samples':>15}: {record['num_samples']} in {record['seconds']:.1f}s")
    print(f"wrote {out_dir / 'samples.png'}, {out_dir / 'eval.json'}; appended to {out_dir / 'metrics.jsonl'}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
