"""Run folders someone else gave us: links planted inside never carry a write or a delete outside,
export never lands on a run's own files, and what a run writes stays strict and whole."""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from maskdit import load_run
from maskdit.app.commands.build import main as build
from maskdit.app.commands.evaluate import main as evaluate
from maskdit.app.commands.export import main as export
from maskdit.io import checkpoint as ckpt
from maskdit.io.jsonl import read_metrics
from tests.test_run_folder import hold_lock, spec_file

PRECIOUS = "my own file, not maskdit's\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One tiny finished run (8 steps, checkpoints at 4 and 8), copied by :func:`run` per test."""
    runs = tmp_path_factory.mktemp("safety")
    assert build([spec_file(runs), "--runs", str(runs)]) == 0
    return runs / "tiny"


@pytest.fixture
def run(built, tmp_path) -> Path:
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(built, copy)
    return copy


def outside_file(tmp_path) -> Path:
    target = tmp_path / "outside" / "bashrc"
    target.parent.mkdir(exist_ok=True)
    target.write_text(PRECIOUS)
    return target


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ---- links planted in a run folder ------------------------------------------------------------

def test_a_symlinked_lock_is_refused_and_its_target_keeps_every_byte(run, tmp_path, capsys):
    target = outside_file(tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(target)
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress"]) == 2
    assert f"{run / '.lock'} is a symbolic link" in error_of(capsys)
    assert target.read_text() == PRECIOUS
    assert build([spec_file(tmp_path), "--runs", str(run.parent), "--resume"]) == 2
    assert ".lock is a symbolic link" in error_of(capsys) and target.read_text() == PRECIOUS


def test_a_hard_linked_or_foreign_lock_file_is_refused_untouched(run, tmp_path, capsys):
    target = outside_file(tmp_path)
    (run / ".lock").unlink(missing_ok=True)
    os.link(target, run / ".lock")
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress"]) == 2
    assert "has 2 hard links" in error_of(capsys) and target.read_text() == PRECIOUS
    (run / ".lock").unlink()
    (run / ".lock").write_text(PRECIOUS)  # a regular file, but not a lock's contents
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress"]) == 2
    assert "is not a maskdit lock file" in error_of(capsys) and (run / ".lock").read_text() == PRECIOUS


def test_a_symlinked_checkpoints_folder_is_refused_and_nothing_there_is_deleted(tmp_path, capsys):
    outside = tmp_path / "photos"
    (outside / "step-00000001").mkdir(parents=True)
    (outside / "step-00000001" / "photo.jpg").write_bytes(b"\xff\xd8 a photo")
    (outside / ".tmp-x").write_text(PRECIOUS)
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "checkpoints").symlink_to(outside)
    assert build([spec_file(tmp_path), "--runs", str(runs)]) == 2
    assert f"{runs / 'tiny' / 'checkpoints'} is a symbolic link" in error_of(capsys)
    assert sorted(p.name for p in outside.iterdir()) == [".tmp-x", "step-00000001"]
    assert (outside / "step-00000001" / "photo.jpg").read_bytes() == b"\xff\xd8 a photo"


@pytest.mark.parametrize("name", ["metrics.jsonl", "loss.png", "spec.json", "eval.json", "samples.png"])
def test_a_symlinked_run_file_is_refused_before_training(tmp_path, capsys, name):
    target = outside_file(tmp_path)
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / name).symlink_to(target)
    assert build([spec_file(tmp_path), "--runs", str(runs)]) == 2
    assert f"{runs / 'tiny' / name} is a symbolic link" in error_of(capsys)
    assert target.read_text() == PRECIOUS and not (runs / "tiny" / "checkpoints").exists()


def test_a_symlinked_samples_folder_is_refused(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "samples").symlink_to(outside, target_is_directory=True)
    assert build([spec_file(tmp_path, train={**json.loads(Path(spec_file(tmp_path)).read_text())["train"],
                                             "sample_every": 4}), "--runs", str(runs)]) == 2
    assert "samples is a symbolic link" in error_of(capsys) and not any(outside.iterdir())


def test_a_hard_linked_metrics_file_is_refused_by_evaluate(run, tmp_path, capsys):
    target = outside_file(tmp_path)
    (run / "metrics.jsonl").unlink()
    os.link(target, run / "metrics.jsonl")
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress"]) == 2
    assert "metrics.jsonl has 2 hard links" in error_of(capsys)
    assert target.read_text() == PRECIOUS and not (run / "eval.json").exists()


def test_evaluate_refuses_a_linked_output_in_its_out_folder(run, tmp_path, capsys):
    target = outside_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").symlink_to(target)
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress", "--out", str(out)]) == 2
    assert "eval.json is a symbolic link" in error_of(capsys) and target.read_text() == PRECIOUS


# ---- export never lands on a run's own files --------------------------------------------------

@pytest.mark.parametrize("fmt,out,fragment", [
    ("native", "{ckpt}/tensors", "lies inside the checkpoint"),
    ("native", "{run}/spec", "would replace the run's own spec.json"),
    ("native", "{run}/eval", "would replace the run's own eval.json"),
    ("diffusers", "{run}/checkpoints", "would replace the run's own checkpoints"),
    ("diffusers", "{run}", "is the run folder"),
    ("reference-maskdit", "{run}/checkpoints/mine.pt", "lies inside the checkpoints folder"),
    ("native", "{run}/samples/grid", "would replace the run's own samples"),
])
def test_export_refuses_an_out_on_the_runs_own_files(run, capsys, fmt, out, fragment):
    newest = ckpt.latest_checkpoint(run / "checkpoints")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    path = out.format(run=run, ckpt=newest)
    assert export([str(newest), "--format", fmt, "--out", path]) == 2
    assert fragment in error_of(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    denoiser, spec = load_run(run)  # still loads, checksums and all
    assert spec is not None and ckpt.load_checkpoint(newest).step == 8


def test_export_next_to_the_run_is_fine_and_a_run_in_use_refuses(run, capsys):
    assert export([str(run), "--format", "native", "--out", str(run / "export")]) == 0
    assert (run / "export.safetensors").is_file() and (run / "export.json").is_file()
    holder = hold_lock(run)
    try:
        assert export([str(run), "--format", "native", "--out", str(run / "again")]) == 2
        assert f"in use by process {holder.pid}" in error_of(capsys)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert not (run / "again.safetensors").exists()


# ---- state.json is covered by the checksum ----------------------------------------------------

@pytest.mark.parametrize("edit,fragment", [
    (lambda s: s["param_groups"][0].update(maximize=True), "fails its SHA-256 check"),
    (lambda s: s.update(skipped=3), "fails its SHA-256 check"),
    (lambda s: s.pop("checksums"), "no SHA-256 recorded for tensors.safetensors and state.json"),
    (lambda s: s["checksums"].pop("state.json"), "no SHA-256 recorded for state.json"),
    (lambda s: s["param_groups"][0].update(betas=["0.9", "0.99"]), "param_groups.0.betas.0: Input should be a valid"),
])
def test_an_edited_state_json_is_refused_by_every_command(run, tmp_path, capsys, edit, fragment):
    newest = ckpt.latest_checkpoint(run / "checkpoints")
    state = json.loads((newest / ckpt.STATE).read_text())
    edit(state)
    (newest / ckpt.STATE).write_text(json.dumps(state))
    assert export([str(newest), "--format", "native", "--out", str(tmp_path / "x")]) == 2
    assert fragment in error_of(capsys)
    assert evaluate([str(newest), "--set", "eval.num_samples=4", "--no-progress"]) == 2
    assert fragment in error_of(capsys)


# ---- what a run writes: strict JSON lines, one per step, appends after a cut line -------------

def test_evaluate_appends_after_a_cut_last_line_without_losing_its_neighbours(run, capsys):
    metrics = run / "metrics.jsonl"
    whole = metrics.read_text()
    with open(metrics, "a") as handle:
        handle.write('{"step": 9, "phase": "train", "lo')  # a kill mid-write
    assert evaluate([str(run), "--set", "eval.num_samples=4", "--no-progress"]) == 0
    records = read_metrics(metrics)  # strict: raises on any malformed line
    assert metrics.read_text().startswith(whole)
    assert [r["step"] for r in records] == [*range(1, 9), 8] and records[-1]["kind"] == "eval"


def test_stale_temp_files_are_removed_on_the_next_start_and_nothing_else(run, tmp_path):
    stale = [run / ".metrics.jsonl.4242.tmp", run / ".spec.json.k2j3h4g5.tmp", run / ".write-test-4242",
             run / "samples" / ".step-00000004.png.a1b2c3d4.tmp"]
    kept = [run / "notes.tmp", run / ".hidden.tmp", run / "samples" / "mine.png",
            run / "checkpoints" / ".tmp-x"]
    (run / "samples").mkdir(exist_ok=True)
    for path in stale + kept:
        path.write_text("x")
    assert build([spec_file(tmp_path), "--runs", str(run.parent), "--resume", "--set", "train.steps=9"]) == 0
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)


def test_a_skipped_step_is_logged_once_by_its_own_number_in_strict_json(tmp_path):
    from tests.train.test_loop import denoise_loss, trainer

    def strict(text):
        def refuse(name):
            raise ValueError(f"non-JSON literal {name}")

        return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]

    t = trainer(tmp_path, denoise_loss(nan_at={2}), steps=6, log_every=1)  # step 3 (index 2) is non-finite
    assert t.fit().skipped == 1
    records = strict((tmp_path / "run" / "metrics.jsonl").read_text())  # no NaN / Infinity literal anywhere
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2] == {"step": 3, "event": "skipped_nonfinite", "loss": None, "skipped": 1}
    assert all(isinstance(r["loss"], float) for r in records if r["step"] != 3)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0  # the null loss is left out of the plot


def test_a_resume_cuts_back_past_a_skipped_step_exactly(tmp_path):
    from tests.train.test_loop import denoise_loss, trainer

    t = trainer(tmp_path, denoise_loss(nan_at={4}), steps=8, log_every=1, checkpoint_every=4, keep_checkpoints=3)
    t.fit()
    (tmp_path / "run" / "checkpoints" / "step-00000008").rename(tmp_path / "moved")
    resumed = trainer(tmp_path, denoise_loss(nan_at={4}), steps=8, log_every=1, checkpoint_every=4)
    assert resumed.resume().step == 4
    resumed.fit()
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert steps == list(range(1, 9))


def test_ema_save_refuses_a_linked_posthoc_folder_or_table(run, tmp_path, capsys):
    from maskdit.app.commands.ema import main as ema

    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "posthoc").symlink_to(outside, target_is_directory=True)
    args = [str(run), "--sigma-rel", "0.2", "--max-lost", "1", "--set", "eval.num_samples=0", "--save", "ema"]
    assert ema(args) == 2
    assert "posthoc is a symbolic link" in error_of(capsys) and not any(outside.iterdir())
    (run / "posthoc").unlink()
    target = outside_file(tmp_path)
    (run / "posthoc_ema.json").symlink_to(target)
    assert ema(args) == 2
    assert "posthoc_ema.json is a symbolic link" in error_of(capsys) and target.read_text() == PRECIOUS
    (run / "posthoc_ema.json").unlink()
    assert ema(args) == 0 and (run / "posthoc" / "ema.safetensors").is_file()
