"""What every maskdit command line shares: exit codes, ``--plugin``, ``--set``, and error reports.

A command is ``main(argv) -> exit code`` made by :func:`command` from its argument parser and
its body: the arguments are parsed, the ``--plugin`` modules loaded, and an :class:`InputError`
that escapes is printed as one ``error: ...`` line per problem (by rank 0 alone under torchrun:
every rank meets the same bad input) and exits with :data:`EXIT_BAD_INPUT`. While a command runs,
SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) where Ctrl-C would raise KeyboardInterrupt,
so both end it the same way: a command that escapes either exits 130 after one ``interrupted``
line, or 143 quietly. Commands import the library and this module, never each other.
"""

from __future__ import annotations

import argparse
import functools
import math
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from maskdit.config.errors import InputError, escaped
from maskdit.config.plugins import ENTRY_POINT_GROUP, load_plugins
from maskdit.train.distributed import DistributedSetupError, context_from_env

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C's KeyboardInterrupt is, so code that stops cleanly on Ctrl-C (the
    training loop's checkpoint between optimizer updates) stops the same way on SIGTERM."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, the first SIGTERM raises :class:`Terminated` in the main thread; later ones
    are ignored, so they cannot cut short the checkpoint the first one leads to. The previous
    handler is put back on leaving. Outside the main thread (where Python cannot handle signals),
    or when SIGTERM is ignored (the parent chose that), nothing changes."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:  # None: a handler set outside Python, which cannot be put back; the default is
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def shell_command(words: Sequence[str]) -> str:
    """A command line to print for copying into a shell: every word quoted as the shell needs, and
    characters that are not printable shown as escapes, so a name read from a file can neither run
    as a command nor drive the terminal."""
    return " ".join(shlex.quote(escaped(str(word))) for word in words)


def finite_float(text: str) -> float:
    """argparse ``type`` for a number option: NaN and infinities are refused (``float`` takes them)."""
    value = float(text)  # argparse turns the ValueError of a non-number into its own error line
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


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
    returns ``code``. An InputError gives one line per problem, any other error one line. The last
    guard of terminal safety: a control character that reached a message prints as its escape."""
    if not quiet:
        lines = err.lines if isinstance(err, InputError) else [err if isinstance(err, str) else one_line(err)]
        for line in lines:
            print(f"error: {escaped(line)}", file=sys.stderr)
    return code


def warn(line: str) -> None:
    """Print ``warning: line`` on stderr (by rank 0 alone under torchrun)."""
    if is_main_rank():
        print(f"warning: {escaped(line)}", file=sys.stderr)


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
            with sigterm_as_interrupt():
                try:
                    args = parse_args(argv)  # argparse exits 2 itself on an unknown flag
                    load_plugins(args.plugins, warn=warn)
                    return body(args)
                except InputError as err:
                    return report(err, quiet=not is_main_rank())
                except Terminated:  # asked to stop (a scheduler, `kill`): no traceback, no message
                    return EXIT_TERMINATED
                except KeyboardInterrupt:
                    if is_main_rank():
                        print("interrupted", file=sys.stderr)  # progress bars close (end their line) first
                    return EXIT_INTERRUPTED

        return main

    return decorate
