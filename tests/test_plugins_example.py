"""The README's "Extend maskdit" example end to end: a masking strategy, a loss term and a
sampler from a user's module, loaded with --plugin and through an entry point."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from maskdit.app.commands import build, sample
from maskdit.config.plugins import PluginLoadError, load_plugins
from maskdit.config.registry import registry

ROOT = Path(__file__).parents[1]
SECTION = (ROOT / "README.md").read_text(encoding="utf-8").split("## Extend maskdit", 1)[1].split("\n## ", 1)[0]
MODULE = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
SPEC = json.loads(re.search(r"```json\n(.*?)```", SECTION, re.S).group(1))
ADDED = {"masking": "centre", "loss": "l1", "sampler": "euler_a"}
CHECK = re.search(r"^PYTHONPATH=\. (python -m pytest --pyargs maskdit\.testing -p my_plugins)$", SECTION, re.M)


@pytest.fixture
def plugin_dir(tmp_path):
    """A folder on sys.path holding the README's module; its registrations are undone afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    _forget_plugins()


def _forget_plugins() -> None:
    """Undo the README module's registrations and import, as a fresh process would start."""
    for kind, name in ADDED.items():
        if name in registry(kind):
            registry(kind).remove(name)
    for module in [m for m in sys.modules if m.startswith("readme_plugins")]:
        del sys.modules[module]


def _spec(tmp_path) -> str:
    path = tmp_path / "my-spec.json"
    path.write_text(json.dumps(SPEC))
    return str(path)


def test_readme_plugins_through_the_plugin_option(plugin_dir, tmp_path, capsys):
    (plugin_dir / "readme_plugins.py").write_text(MODULE)
    spec = _spec(tmp_path)
    assert build.main([spec, "--dry-run"]) == 2  # not loaded: a spec never imports code
    err = capsys.readouterr().err
    assert "masking: unknown name 'centre'; valid names: 'random'" in err and "--plugin MODULE" in err
    assert "readme_plugins" not in sys.modules

    assert build.main([spec, "--dry-run", "--plugin", "readme_plugins"]) == 0
    assert "centre" in capsys.readouterr().out
    assert build.main(["--schema", "--plugin", "readme_plugins"]) == 0
    schema = capsys.readouterr().out
    assert all(f'"const": "{name}"' in schema for name in ADDED.values())
    assert build.main([spec, "--dry-run", "--plugin", "readme_plugins", "--set", "masking.ratio=1.5"]) == 2
    assert "masking.ratio" in capsys.readouterr().err  # the plugin's own bounds, with the field path

    runs = tmp_path / "runs"
    assert build.main([spec, "--plugin", "readme_plugins", "--runs", str(runs), "--set", "train.steps=3"]) == 0
    saved = json.loads((runs / "centre-digits" / "spec.json").read_text())
    assert saved["masking"] == {"name": "centre", "ratio": 0.25}
    assert saved["losses"]["terms"][1] == {"name": "l1", "weight": 0.1}
    assert saved["sampler"]["name"] == "euler_a"
    out = tmp_path / "grid.png"
    assert sample.main([str(runs / "centre-digits"), "--plugin", "readme_plugins", "--sampler", "euler_a",
                        "--n", "2", "--batch-size", "2", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    assert out.is_file()


def test_a_run_says_which_plugin_reading_it_back_needs(plugin_dir, tmp_path, capsys):
    (plugin_dir / "readme_plugins.py").write_text(MODULE)
    runs = tmp_path / "runs"
    assert build.main([_spec(tmp_path), "--plugin", "readme_plugins", "--runs", str(runs), "--set",
                       "train.steps=2"]) == 0
    _forget_plugins()
    capsys.readouterr()
    advice = "the run used plugins from readme_plugins: pass --plugin readme_plugins"
    assert sample.main([str(runs / "centre-digits"), "--n", "2", "--out", str(tmp_path / "g.png")]) == 2
    assert advice in capsys.readouterr().err
    saved = str(runs / "centre-digits" / "spec.json")
    assert build.main([saved, "--runs", str(runs), "--resume", "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "masking: unknown name 'centre'" in err and advice in err
    assert build.main([saved, "--runs", str(runs), "--resume", "--set", "train.steps=3", "--plugin",
                       "readme_plugins"]) == 0


def test_the_readme_masking_plugin_takes_a_ratio_schedule(plugin_dir, tmp_path, capsys):
    (plugin_dir / "readme_plugins.py").write_text(MODULE)
    schedule = "masking.ratio={\"name\": \"cosine\", \"start\": 0.75, \"end\": 0.25, \"total_steps\": 100}"
    assert build.main([_spec(tmp_path), "--dry-run", "--plugin", "readme_plugins", "--set", schedule]) == 0
    assert "centre" in capsys.readouterr().out
    from readme_plugins import CentreMaskingSpec

    spec = CentreMaskingSpec.model_validate({"ratio": {"name": "cosine", "start": 0.75, "end": 0.25, "total_steps": 4}})
    strategy = spec.build()
    assert [strategy(1, (4, 4), step=step).num_kept for step in (0, 4)] == [4, 12]  # int(16 * (1 - r))


@pytest.mark.slow
def test_the_readme_plugins_pass_the_shipped_contract_tests(tmp_path):
    """The README's command for checking plugins, run where my_plugins.py lies (its PYTHONPATH=.)."""
    assert CHECK is not None, "the README shows how to run maskdit.testing on my_plugins"
    (tmp_path / "my_plugins.py").write_text(MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *shlex.split(CHECK.group(1))[1:], "-p", "no:cacheprovider", "-k",
               " or ".join(ADDED.values()), "-v"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for test in ("test_masking_strategy[centre-cosine]", "test_loss_term[l1]", "test_sampler_steps[euler_a]",
                 "test_ready_sampler[euler_a]"):
        assert f"{test} PASSED" in out, out


def test_readme_plugins_through_an_entry_point(plugin_dir, tmp_path, capsys):
    (plugin_dir / "readme_plugins_ep.py").write_text(MODULE)
    dist = plugin_dir / "readme_plugins_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: readme-plugins-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[maskdit.plugins]\nreadme = readme_plugins_ep\n")
    spec = _spec(tmp_path)
    assert build.main([spec, "--dry-run"]) == 0  # the installed package's entry point loads the module
    assert "readme_plugins_ep" in sys.modules
    assert build.main([spec, "--dry-run"]) == 0  # loading again registers nothing twice
    runs = tmp_path / "runs"
    assert build.main([spec, "--runs", str(runs), "--set", "train.steps=2"]) == 0
    assert json.loads((runs / "centre-digits" / "spec.json").read_text())["masking"]["name"] == "centre"


def test_a_missing_plugin_module_is_an_input_error(capsys):
    with pytest.raises(PluginLoadError, match="cannot import no_such_plugin_module"):
        load_plugins(["no_such_plugin_module"], entry_points=False)
    with pytest.raises(PluginLoadError, match="expected a module name"):
        load_plugins(["../evil.py"], entry_points=False)
    assert build.main(["--dry-run", "--plugin", "no_such_plugin_module"]) == 2
    assert "cannot import no_such_plugin_module" in capsys.readouterr().err
    assert sample.main(["nowhere", "--plugin", "no_such_plugin_module"]) == 2
