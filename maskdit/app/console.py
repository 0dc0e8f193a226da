"""The ``maskdit`` console script: ``maskdit COMMAND [ARGS ...]``, one subcommand per command module.

``maskdit build spec.json`` is ``python -m maskdit.build spec.json``: the same parser, exit codes,
``--plugin`` and ``--set``. A command's module is imported only when that command runs.
"""

from __future__ import annotations

import importlib
import sys

from maskdit.app.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK

#: subcommand -> what it does (its module is maskdit.app.commands.<name>)
COMMANDS = {
    "build": "validate a spec, build the experiment and train, sample and evaluate it",
    "sample": "draw samples from a run, a checkpoint, an export or a reference checkpoint",
    "evaluate": "score a run's model with its spec's sampler and metrics",
    "export": "write a run's weights as a native, reference DiT/MaskDiT or diffusers model",
    "fid": "Frechet distance between two sets of images (.npz) or their statistics",
    "latents": "encode an image folder to VAE latent shards, or decode sampled latents to images",
    "ema": "post-hoc EMA: rebuild and score weight averages of a run's kept snapshots",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items())
    return (f"usage: maskdit COMMAND [ARGS ...]\n\ncommands:\n{rows}\n\n"
            "`maskdit COMMAND --help` shows a command's options; `python -m maskdit.COMMAND` is the same command.")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK if args else EXIT_BAD_INPUT
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:  # deferred: only the command that runs is imported (with the optional dependencies it defers)
        command = importlib.import_module(f"maskdit.app.commands.{name}")
    except KeyboardInterrupt:  # Ctrl-C while torch loads: as inside a command, one line
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return command.main(rest)


if __name__ == "__main__":
    sys.exit(main())
