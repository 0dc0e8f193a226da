"""The `maskdit` console script: one entry point, a subcommand per command module."""

import subprocess
import sys
import tomllib
from pathlib import Path

from maskdit.app import console

ROOT = Path(__file__).parents[1]


def test_the_console_script_is_the_dispatcher():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"maskdit": "maskdit.app.console:main"}


def test_help_lists_every_subcommand_and_each_has_a_module_with_main(capsys):
    assert console.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("build", "sample", "evaluate", "export", "fid", "latents", "ema"):
        assert f"\n  {name} " in out, name
        module = __import__(f"maskdit.app.commands.{name}", fromlist=["main"])
        assert callable(module.main) and callable(module.parse_args)
        shim = (ROOT / "maskdit" / f"{name}.py").read_text(encoding="utf-8")  # python -m maskdit.<name>
        assert f"from maskdit.app.commands.{name} import main" in shim


def test_no_command_and_an_unknown_one_exit_2(capsys):
    assert console.main([]) == 2
    assert console.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_subcommand_equals_python_dash_m(capsys):
    """`maskdit build X --dry-run` prints what `python -m maskdit.build X --dry-run` prints."""
    assert console.main(["build", "default", "--dry-run", "--set", "train.batch_size=32"]) == 0
    ours = capsys.readouterr().out
    theirs = subprocess.run([sys.executable, "-m", "maskdit.build", "default", "--dry-run", "--set",
                             "train.batch_size=32"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert ours == theirs and "batch 32" in ours


def test_a_command_keeps_its_exit_codes():
    assert console.main(["build", "no-such-preset-or-file", "--dry-run"]) == 2
