"""What every maskdit command line shares: exit codes, ``--plugin``, ``--set``, and error reports.

A command is ``main(argv) -> exit code`` made by :func:`command` from its argument parser and
its body: the arguments are parsed, the ``--plugin`` modules loaded, and an :class:`InputError`
that escapes is printed as one ``error: ...`` line per problem (by rank 0 alone under torchrun:
every rank meets the same bad input) and exits with :data:`EXIT_BAD_INPUT`. Commands import the
library and this module, never each other.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from maskdit.config.errors import InputError
from maskdit.config.plugins import ENTRY_POINT_GROUP, load_plugins
from maskdit.train.distributed import DistributedSetupError, context_from_env

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable), loaded by :func:`command` before the command runs."""
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so the plugins it registers can be named in specs (repeatable); "
                             f"installed packages' '{ENTRY_POINT_GROUP}' entry points are loaded too")


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set FIELD=VALUE`` (repeatable): a spec field by its full path, list entries by index."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override a spec field by its full path (list entries by index, e.g. "
                             f"train.phases.0.steps=8; the value is JSON, else a string), e.g. --set {example} "
                             "(repeatable)")


def is_main_rank() -> bool:
    """False on the ranks other than 0 of a torchrun launch (unreadable ranks: True, so it is said)."""
    try:
        return context_from_env().is_main
    except DistributedSetupError:
        return True


def report(err: BaseException | str, *, code: int = EXIT_BAD_INPUT, quiet: bool = False) -> int:
    """Print an error (or a message) as ``error: ...`` lines on stderr, nothing when ``quiet``;
    returns ``code``. An InputError gives one line per problem, any other error one line."""
    if not quiet:
        lines = err.lines if isinstance(err, InputError) else [err if isinstance(err, str) else one_line(err)]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
    return code


def warn(line: str) -> None:
    """Print ``warning: line`` on stderr (by rank 0 alone under torchrun)."""
    if is_main_rank():
        print(f"warning: {line}", file=sys.stderr)


def one_line(err: BaseException) -> str:
    """An exception as one line: its message (or strerror and file) without a traceback."""
    text = str(err)
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return " ".join(text.split()) or type(err).__name__


def command(parse_args: Callable[[list[str] | None], argparse.Namespace]):
    """``@command(parse_args)`` on ``body(args) -> exit code`` gives ``main(argv=None) -> exit code``."""

    def decorate(body: Callable[[argparse.Namespace], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(body)
        def main(argv: list[str] | None = None) -> int:
            try:
                args = parse_args(argv)  # argparse exits 2 itself on an unknown flag
                load_plugins(args.plugins, warn=warn)
                return body(args)
            except InputError as err:
                return report(err, quiet=not is_main_rank())

        return main

    return decorate
