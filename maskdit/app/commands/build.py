"""``python -m maskdit.build [SPEC] [--dry-run] [--schema] [--set a.b=value ...]``.

SPEC is a path to a JSON spec or the name of a bundled preset (default: ``default``), or with
``--resume`` a run folder, continued in place with its own spec.json (plus any ``--set``). A bad
spec prints one line per problem (field path and what was expected) and exits with code 2.
Ctrl-C or SIGTERM between optimizer updates writes a checkpoint, prints the command that
continues the run and exits with 130 (Ctrl-C) or 143 (SIGTERM).
Under ``torchrun --nproc_per_node N -m maskdit.build SPEC`` it trains data-parallel; rank 0
prints and writes, the other ranks stay quiet.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from maskdit.app import cli
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, json_schema, preset_names, read_spec
from maskdit.app.resume import (
    check_same_run,
    check_spec_file_home,
    folder_spec,
    is_run_folder,
    resume_command,
    same_folder,
)
from maskdit.app.run_loading import missing_plugins, plugin_advice
from maskdit.app.summary import format_table, summarize
from maskdit.app.training_run import train_run
from maskdit.config.errors import InputError
from maskdit.io.checkpoint import CheckpointError, latest_checkpoint
from maskdit.train.distributed import (
    check_batch,
    context_from_env,
    init_distributed,
    shutdown,
)
from maskdit.train.loop import NonFiniteError, ResumeInfo


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default="default",
                        help=f"spec path or preset ({', '.join(preset_names())}); with --resume also a run folder")
    parser.add_argument("--dry-run", action="store_true", help="validate and build, print a summary, do not train")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema of specs and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run "
                        "(given a run folder: that folder, in place, with its own spec.json)")
    parser.add_argument("--runs", default=None, help="folder that holds run folders (default: runs)")
    cli.add_set_argument(parser, "train.steps=2000")
    cli.add_plugin_argument(parser)
    return parser.parse_args(argv)


@cli.command(parse_args)
def main(args: argparse.Namespace) -> int:
    main_rank = context_from_env().is_main  # torchrun's RANK; only rank 0 prints
    if args.schema:
        if main_rank:
            print(json.dumps(json_schema(), indent=2))
        return cli.EXIT_OK
    given = Path(args.spec)
    if given.is_dir():  # a run folder: continued in place with its own spec
        spec, run_dir, note = continue_folder(given, args)
    else:
        spec = read_spec_with_advice(args.spec, args.overrides, given.parent if given.is_file() else None)
        runs = Path(args.runs if args.runs is not None else "runs")
        run_dir, note = run_folder(runs, spec.name), None
        if args.resume:
            check_spec_file_home(args.spec, run_dir, runs, args.overrides, args.plugins)
    if args.resume:
        check_same_run(run_dir, spec, args.overrides, plugins=args.plugins, renamed=note is not None)
    experiment = Experiment(spec)
    if main_rank:
        print(format_table(summarize(experiment)))
        if note:
            print(note, file=sys.stderr)
    if args.dry_run:
        return cli.EXIT_OK
    return run(experiment, run_dir, resume=args.resume)


def read_spec_with_advice(spec: str, overrides: list[str], home: Path | None) -> ExperimentSpec:
    """:func:`read_spec`, whose errors name the --plugin options a run folder ``home`` records."""
    try:
        return read_spec(spec, overrides)
    except InputError as err:  # a run's saved spec.json can say which --plugin it needs
        advice = plugin_advice(missing_plugins(home)) if home is not None else ""
        raise InputError(*err.lines, *([f"{spec}: {advice}"] if advice else [])) from None


def continue_folder(folder: Path, args: argparse.Namespace) -> tuple[ExperimentSpec, Path, str | None]:
    """(spec, run folder, note) for ``build RUN_FOLDER --resume``: the folder's own spec with the
    ``--set``s, the folder itself (which must be a plain folder, not a link out of its parent)."""
    if not is_run_folder(folder):
        raise InputError(f"{args.spec}: a folder, not a spec file or a run folder (no spec.json or checkpoints/)")
    if not args.resume:
        raise InputError(f"{args.spec}: a run folder; continue it with: "
                         f"{resume_command(folder, args.overrides, args.plugins)}")
    folder = Path(os.path.abspath(folder))  # `build . --resume` inside the folder: its own name
    if args.runs is not None and not same_folder(args.runs, folder.parent):
        raise InputError(f"--runs: {args.spec} continues where it is, not under {args.runs}; drop --runs")
    run_dir = run_folder(folder.parent, folder.name)
    try:
        spec, note = folder_spec(folder, args.overrides)
    except InputError as err:
        advice = plugin_advice(missing_plugins(folder))
        raise InputError(*err.lines, *([f"{args.spec}: {advice}"] if advice else [])) from None
    return spec, run_dir, note


def run_folder(runs: Path, name: str) -> Path:
    """``runs/name``, which must resolve to a folder directly inside ``runs`` (a name such as '..'
    or a link out of ``runs`` would write over someone else's files)."""
    folder = runs / name
    if name in ("", ".", "..") or Path(name).name != name or folder.resolve().parent != runs.resolve():
        raise InputError(f"name: run folder {folder} does not lie inside {runs}; choose a plain folder name")
    return folder


def resume_lines(info: ResumeInfo) -> list[str]:
    """What --resume found: the checkpoints passed over (and why), then where training starts."""
    lines = [f"warning: passing over {path.name}: {reason}" for path, reason in info.rejected]
    if info:
        lines.append(f"resuming from step {info.step} ({info.path})")
    else:
        lines.append("no checkpoint to resume: starting from step 0")
    return lines


def run(experiment: Experiment, run_dir: Path, *, resume: bool) -> int:
    """The command's side of :func:`~maskdit.app.training_run.train_run`: open the process group
    under torchrun (NCCL on CUDA, gloo on CPU) and close it at the end, print where everything is
    and the final metrics, and turn errors into one line and an exit code (Ctrl-C: 130, SIGTERM:
    143, each after the checkpoint the loop writes and the command that continues the run)."""
    train = experiment.spec.train
    # the batch check needs only the environment: fail before any rendezvous
    check_batch(train.batch_size, train.grad_accumulation, context_from_env().world_size)
    dist = init_distributed(train.device)
    logging.basicConfig(level=logging.WARNING if dist.is_main else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")

    def report(info: ResumeInfo) -> None:
        for line in resume_lines(info):
            print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        result = train_run(experiment, run_dir, resume=resume, progress=dist.is_main, dist=dist,
                           on_resume=report if resume else None)
    except CheckpointError as err:  # an InputError too, but a checkpoint that cannot be written or resumed fails the run
        return cli.report(err, code=cli.EXIT_FAILED, quiet=not dist.is_main)
    except (InputError, FileExistsError) as err:  # every rank meets the same problem; one report is enough
        return cli.report(err, quiet=not dist.is_main)
    except (NonFiniteError, OSError) as err:
        return cli.report(err, code=cli.EXIT_FAILED, quiet=not dist.is_main)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as cli.Terminated
        terminated = isinstance(stop, cli.Terminated)
        if dist.is_main:
            print(interrupted_line(run_dir, experiment.run_record["plugins"], terminated=terminated), file=sys.stderr)
        return cli.EXIT_TERMINATED if terminated else cli.EXIT_INTERRUPTED
    finally:
        shutdown(dist)
    if not dist.is_main:
        return cli.EXIT_OK
    minutes = (time.perf_counter() - started) / 60
    print(f"\ntrained {result.state.step} steps in {minutes:.1f} min ({result.state.skipped} skipped)")
    print(f"run folder:  {run_dir}")
    written = [name for name in ("spec.json", "metrics.jsonl", "loss.png", "samples.png", "eval.json",
                                 "eval_metrics.png") if (run_dir / name).exists()]
    width = max([14, *map(len, written)])  # 14: the column of a run without eval.every's plot
    for name in written:
        print(f"  {name:<{width}} {run_dir / name}")
    if result.eval is not None:
        shown = {k: v for k, v in result.eval.items() if isinstance(v, float) and k != "clipped_fraction"}
        print("metrics:     " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return cli.EXIT_OK


def interrupted_line(run_dir: Path, plugins: Sequence[str] = (), *, terminated: bool = False) -> str:
    """The message of Ctrl-C (or SIGTERM): the checkpoint and the command that continues the run."""
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is None or not (run_dir / "spec.json").is_file():
        return f"\n{what} before the first checkpoint; nothing to resume"
    return f"\n{what}; checkpoint {latest}; continue with: {resume_command(run_dir, plugins=plugins)}"


if __name__ == "__main__":
    sys.exit(main())
