"""``python -m maskdit.ema``: scores post-hoc profiles of a tiny run, writes the JSON, saves a loadable average."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskdit import load_run
from maskdit.app.commands.ema import main
from maskdit.app.commands.sample import main as sample
from maskdit.train import posthoc_ema
from tests.train.posthoc_run import train_tiny_run

SCORE = ["--set", "eval.num_samples=20", "--set", "eval.metrics=[\"fid\",\"class_accuracy\"]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("ema_cli"))


def test_scores_each_profile_and_the_runs_own_ema(run, tmp_path, capsys):
    out = tmp_path / "table.json"
    assert main([str(run), "--sigma-rel", "0.05", "0.2", "--decay", "0.9", "--out", str(out), *SCORE]) == 0
    document = json.loads(out.read_text())
    rows = {row["profile"]: row for row in document["rows"]}
    assert list(rows) == ["ema", "power-0.05", "power-0.2", "ema-0.9"]
    assert document["step"] == 12 and document["snapshots"] == 12 and document["num_samples"] == 20
    assert all(row["fid"] > 0 and 0 <= row["class_accuracy"] <= 1 for row in rows.values())
    # the run's own decay rebuilt from every-step snapshots is its EMA: the same samples, the same FID
    assert rows["ema-0.9"]["fid"] == pytest.approx(rows["ema"]["fid"], rel=1e-3)
    assert rows["power-0.05"]["fid"] != pytest.approx(rows["power-0.2"]["fid"], rel=1e-3)
    printed = capsys.readouterr().out
    assert "| profile | weight before first | fid | class_accuracy |" in printed and f"wrote {out}" in printed
    assert not (run / "posthoc").exists()  # nothing saved unless asked


def test_saved_profile_loads_with_load_run_and_samples(run, tmp_path, capsys):
    assert main([str(run), "--sigma-rel", "0.1", "--save", "power-0.1", "--set", "eval.num_samples=0"]) == 0
    assert json.loads((run / "posthoc_ema.json").read_text())["rows"][1] == {"profile": "power-0.1",
                                                                             "weight_before_first": 0.0}
    saved = run / "posthoc" / "power-0.1.safetensors"
    denoiser, spec = load_run(saved)
    assert spec is None and denoiser.spec == load_run(run)[1].model
    expected = posthoc_ema(run, sigma_rel=0.1).denoiser().state_dict()
    assert expected.keys() == denoiser.state_dict().keys()
    for name, value in denoiser.state_dict().items():
        assert torch.equal(value, expected[name]), name
    grid = tmp_path / "grid.png"
    assert sample([str(saved), "--n", "4", "--steps", "2", "--out", str(grid), "--no-progress"]) == 0
    assert grid.stat().st_size > 0


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("args, says", [
    (["--sigma-rel", "0.5"], "--sigma-rel: sigma_rel 0.5 is outside"),
    (["--decay", "1.5"], "--decay: EMA decay must be in [0, 1)"),
    (["--save", "power-0.3"], "--save power-0.3: no such profile"),
    (["--set", "model.depth=2"], "cannot change the model"),
    (["--decay", "0.9", "--max-lost", "0"], "ema-0.9: 0.0% of its weight lies before the first snapshot"),
    (["--max-lost", "2"], "max_lost is a share"),
])
def test_bad_options_exit_2_with_one_line(run, args, says, capsys):
    assert main([str(run), *args, "--set", "eval.num_samples=0"]) == 2
    assert says in one_error(capsys)


def test_bad_runs_exit_2_with_one_line(run, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "0 checkpoint(s)" in one_error(capsys)
    one = tmp_path / "one"
    shutil.copytree(run, one)
    for folder in sorted((one / "checkpoints").iterdir())[:-1]:
        shutil.rmtree(folder)
    assert main([str(one)]) == 2
    assert "1 checkpoint(s)" in one_error(capsys)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    broken = corrupt / "checkpoints" / "step-00000005" / "tensors.safetensors"
    broken.write_bytes(broken.read_bytes()[:-8] + b"garbage!")
    assert main([str(corrupt), "--sigma-rel", "0.1", "--set", "eval.num_samples=0"]) == 2
    assert "step-00000005" in one_error(capsys)


def test_python_dash_m_runs_the_command(run):
    done = subprocess.run([sys.executable, "-m", "maskdit.ema", str(run), "--sigma-rel", "0.4"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: --sigma-rel")
