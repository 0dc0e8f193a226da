"""``python -m maskdit.build [SPEC] [--dry-run] [--schema] [--set a.b=value ...]``.

SPEC is a path to a JSON spec or the name of a bundled preset (default: ``default``). A bad
spec prints one line per problem (field path and what was expected) and exits with code 2.
Under ``torchrun --nproc_per_node N -m maskdit.build SPEC`` it trains data-parallel; rank 0
prints and writes, the other ranks stay quiet.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from maskdit.jsonio import JSONInputError, short
from maskdit.plugins import PluginLoadError, add_plugin_argument, load_plugins
from maskdit.spec import ExperimentSpec, apply_overrides, json_schema, load_spec_dict, preset_names
from maskdit.summary import format_table, summarize

EXIT_BAD_SPEC = 2
_LONG_QUOTE = re.compile(r"'([^']{200,})'")  # a bad value a validator quoted in full


class SpecError(Exception):
    """A spec problem to report to the user, one line per entry of ``lines``."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def read_spec(spec: str, overrides: list[str]) -> ExperimentSpec:
    """Read, override and validate a spec; every failure becomes a SpecError with readable lines."""
    try:
        data = load_spec_dict(spec)
    except JSONInputError as err:
        raise SpecError([str(err)]) from None
    except (OSError, ValueError) as err:
        raise SpecError([f"{spec}: {err.strerror if isinstance(err, OSError) and err.strerror else err}"]) from None
    try:
        data = apply_overrides(data, overrides)
    except ValueError as err:
        raise SpecError([f"--set: {err}"]) from None
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(validation_lines(err, data)) from None


def validation_lines(err: ValidationError, data: Any = None) -> list[str]:
    """One 'path: problem (got value)' line per pydantic error; paths are the user's field names."""
    lines = []
    for problem in err.errors(include_url=False):
        path = user_path(problem["loc"], data) or "spec"
        if problem["type"] == "union_tag_not_found" and "()" in problem["ctx"]["discriminator"]:
            message = "expected a number or an object with a 'name' field"  # a callable discriminator
        elif problem["type"] == "union_tag_not_found":
            message = f"needs a '{problem['ctx']['discriminator'].strip(chr(39))}' field naming the plugin"
        elif problem["type"] == "union_tag_invalid":
            message = (f"unknown name {short(problem['ctx']['tag'])}; valid names: {problem['ctx']['expected_tags']} "
                       "(a plugin's name needs its module: --plugin MODULE)")
        else:
            message = _LONG_QUOTE.sub(lambda m: short(m.group(1)), problem["msg"].removeprefix("Value error, "))
        given = problem.get("input")
        shown = "" if problem["type"] in ("missing", "model_type") or isinstance(given, (dict, list)) else f" (got {short(given)})"
        lines.append(f"{path}: {message}{shown}")
    return list(dict.fromkeys(lines))  # a union can report one problem twice


def user_path(loc: tuple, data: Any) -> str:
    """Drop the parts of a pydantic error location that are not in the user's document
    (union tags such as 'heun' or 'number'), keeping a missing field's own name."""
    parts: list[str] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (isinstance(node, dict) and index == len(loc) - 1 and part != node.get("name")):
            continue
        parts.append(str(part))
    return ".".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskdit.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default="default", help=f"spec path or preset ({', '.join(preset_names())})")
    parser.add_argument("--dry-run", action="store_true", help="validate and build, print a summary, do not train")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema of specs and exit")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run")
    parser.add_argument("--runs", default="runs", help="folder that holds run folders (default: runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. --set train.steps=2000 (repeatable)")
    add_plugin_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from maskdit.train.distributed import DistributedSetupError, context_from_env

    args = parse_args(argv)
    try:
        main_rank = context_from_env().is_main  # torchrun's RANK; only rank 0 prints
    except DistributedSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    try:
        load_plugins(args.plugins)
    except PluginLoadError as err:
        if main_rank:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if args.schema:
        if main_rank:
            print(json.dumps(json_schema(), indent=2))
        return 0
    try:
        spec = read_spec(args.spec, args.overrides)
    except SpecError as err:
        for line in err.lines if main_rank else []:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if main_rank:
        print(format_table(summarize(spec)))
    if args.dry_run:
        return 0
    try:
        run_dir = run_folder(Path(args.runs), spec.name)
    except ValueError as err:
        if main_rank:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    return run(spec, run_dir, resume=args.resume, runs=Path(args.runs))


def run_folder(runs: Path, name: str) -> Path:
    """``runs/name``, which must resolve to a folder directly inside ``runs`` (a name such as '..'
    or a link out of ``runs`` would write over someone else's files)."""
    folder = runs / name
    if name in ("", ".", "..") or Path(name).name != name or folder.resolve().parent != runs.resolve():
        raise ValueError(f"name: run folder {folder} does not lie inside {runs}; choose a plain folder name")
    return folder


def resume_lines(info) -> list[str]:
    """What --resume found: the checkpoints passed over (and why), then where training starts."""
    lines = [f"warning: passing over {path.name}: {reason}" for path, reason in info.rejected]
    if info:
        lines.append(f"resuming from step {info.step} ({info.path})")
    else:
        lines.append("no checkpoint to resume: starting from step 0")
    return lines


def run(spec: ExperimentSpec, run_dir: Path, *, resume: bool, runs: Path | None = None) -> int:
    """Train, sample and evaluate; print where everything is and the final metrics. Under torchrun
    this opens the process group (NCCL on CUDA, gloo on CPU) and closes it at the end."""
    from maskdit.data.errors import DataError
    from maskdit.job import run_experiment
    from maskdit.train.checkpoint import CheckpointError
    from maskdit.train.distributed import (DistributedSetupError, check_batch, context_from_env, init_distributed,
                                           shutdown)
    from maskdit.train.loop import NonFiniteError
    from maskdit.train.runlock import RunLockedError

    try:  # the batch check needs only the environment: fail before any rendezvous
        check_batch(spec.train.batch_size, spec.train.grad_accumulation, context_from_env().world_size)
        dist = init_distributed(spec.train.device)
    except DistributedSetupError as err:
        if context_from_env().is_main:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    logging.basicConfig(level=logging.WARNING if dist.is_main else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")

    def report(info) -> None:
        for line in resume_lines(info):
            print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        result = run_experiment(spec, run_dir, resume=resume, progress=dist.is_main, dist=dist,
                                on_resume=report if resume else None)
    except (CheckpointError, FileExistsError, NonFiniteError, DistributedSetupError, RunLockedError, DataError,
            OSError) as err:
        if dist.is_main:  # every rank meets the same problem; one report is enough
            print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_SPEC if isinstance(err, (FileExistsError, DistributedSetupError, RunLockedError,
                                                 DataError)) else 1
    except KeyboardInterrupt:
        if dist.is_main:
            print(interrupted_line(run_dir, runs), file=sys.stderr)
        return 130
    finally:
        shutdown(dist)
    if not dist.is_main:
        return 0
    minutes = (time.perf_counter() - started) / 60
    print(f"\ntrained {result.state.step} steps in {minutes:.1f} min ({result.state.skipped} skipped)")
    print(f"run folder:  {run_dir}")
    for name in ("spec.json", "metrics.jsonl", "loss.png", "samples.png", "eval.json"):
        if (run_dir / name).exists():
            print(f"  {name:<14} {run_dir / name}")
    if result.eval is not None:
        shown = {k: v for k, v in result.eval.items() if isinstance(v, float) and k != "clipped_fraction"}
        print("metrics:     " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return 0


def one_line(err: BaseException) -> str:
    """An exception as one line: its message (or strerror and file) without a traceback."""
    text = str(err)
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return " ".join(text.split()) or type(err).__name__


def interrupted_line(run_dir: Path, runs: Path | None) -> str:
    """The Ctrl-C message: the command that continues this run (its saved spec, its --runs)."""
    from maskdit.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir / "checkpoints")
    if latest is None or not (run_dir / "spec.json").is_file():
        return "\ninterrupted before the first checkpoint; nothing to resume"
    runs = runs if runs is not None else run_dir.parent
    command = shlex.join(["python", "-m", "maskdit.build", str(run_dir / "spec.json"), "--runs", str(runs), "--resume"])
    return f"\ninterrupted; checkpoint {latest}; continue with: {command}"


if __name__ == "__main__":
    sys.exit(main())
