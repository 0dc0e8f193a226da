"""Attacks on a run folder through the CLIs: two writers, kill -9, names that escape --runs,
Ctrl-C, and what --resume says."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskdit.app.commands.build import main
from maskdit.app.commands.evaluate import main as evaluate_main
from maskdit.io import checkpoint as ckpt
from maskdit.io.jsonl import read_jsonl
from maskdit.io.runlock import RunLock, RunLockedError

ROOT = Path(__file__).parents[1]
TINY = {
    "name": "tiny", "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 16, "num_heads": 1,
              "decoder_depth": 0, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5}, "sampler": {"name": "euler", "steps": 2},
    "losses": {"terms": [{"name": "dsm"}]},  # a DiT under a mask predicts nothing at dropped positions: no MAE
    "train": {"steps": 8, "batch_size": 8, "lr": 1e-3, "log_every": 1, "checkpoint_every": 4},
    "eval": {"num_samples": 0},
}


def spec_file(tmp_path, **changes):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return str(path)


def hold_lock(folder):
    """Another process holding ``folder`` (as a running build would); returns the Popen."""
    code = (f"from maskdit.io.runlock import RunLock; import time; RunLock({str(folder)!r}).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_refuses_naming_the_holder_and_kill_9_frees_the_folder(tmp_path, capsys):
    run = tmp_path / "tiny"
    holder = hold_lock(run)
    try:
        assert main([spec_file(tmp_path), "--runs", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid}" in err and "Traceback" not in err
        assert not (run / "checkpoints").exists() and not (run / "spec.json").exists()
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            RunLock(run).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunLock(run):  # the OS dropped the lock with the process: nothing stale
        pass
    assert main([spec_file(tmp_path), "--runs", str(tmp_path)]) == 0


def test_evaluate_into_a_folder_in_use_refuses(tmp_path, capsys):
    assert main([spec_file(tmp_path), "--runs", str(tmp_path)]) == 0
    holder = hold_lock(tmp_path / "tiny")
    try:
        assert evaluate_main([str(tmp_path / "tiny"), "--set", "eval.num_samples=4", "--no-progress"]) == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_kill_9_mid_training_then_resume_logs_every_step_once(tmp_path):
    spec = spec_file(tmp_path, train={**TINY["train"], "steps": 400, "checkpoint_every": 5})
    proc = subprocess.Popen([sys.executable, "-m", "maskdit.build", spec, "--runs", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "tiny" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (root / "step-00000010").is_dir() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.latest_checkpoint(root)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    (root / ".tmp-step-99999999-1").mkdir()  # as a kill during a save leaves it
    resumed = subprocess.run([sys.executable, "-m", "maskdit.build", spec, "--runs", str(tmp_path), "--resume",
                              "--set", "train.steps=30"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step" in resumed.stderr and "Traceback" not in resumed.stderr
    steps = [r["step"] for r in read_jsonl(tmp_path / "tiny" / "metrics.jsonl")]
    assert steps == list(range(1, 31))  # every step once, none repeated after the resume
    assert not list(root.glob(".tmp-*"))


@pytest.mark.parametrize("name", ["..", "."])
def test_names_that_are_path_components_are_refused(tmp_path, capsys, name):
    (tmp_path / "in").mkdir()
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "spec.json").write_text("mine")  # the user's own file next to --runs
    assert main([spec_file(tmp_path / "in", name=name), "--runs", str(work / "runs")]) == 2
    assert "is a path component, not a run name" in capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == ["runs", "spec.json"] and not any((work / "runs").iterdir())
    assert (work / "spec.json").read_text() == "mine"


def test_a_link_out_of_runs_is_refused(tmp_path, capsys):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    outside.mkdir()
    (runs / "tiny").symlink_to(outside)
    assert main([spec_file(tmp_path), "--runs", str(runs)]) == 2
    assert "does not lie inside" in capsys.readouterr().err and not any(outside.iterdir())


def test_resume_says_where_it_starts_and_falls_back_past_a_corrupt_checkpoint(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main([spec, "--runs", str(tmp_path), "--resume"]) == 0
    assert "no checkpoint to resume: starting from step 0" in capsys.readouterr().err
    newest = ckpt.latest_checkpoint(tmp_path / "tiny" / "checkpoints")
    data = bytearray((newest / ckpt.TENSORS).read_bytes())
    data[-50] ^= 1  # one flipped bit in the newest checkpoint's tensors
    (newest / ckpt.TENSORS).write_bytes(bytes(data))
    assert main([spec, "--runs", str(tmp_path), "--resume", "--set", "train.steps=10"]) == 0
    err = capsys.readouterr().err
    assert "passing over step-00000008" in err and "fails its SHA-256 check" in err
    assert "resuming from step 4" in err
    assert [r["step"] for r in read_jsonl(tmp_path / "tiny" / "metrics.jsonl")] == list(range(1, 11))


def test_resume_with_no_valid_checkpoint_fails_with_exit_1(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main([spec, "--runs", str(tmp_path)]) == 0
    for folder in ckpt.list_checkpoints(tmp_path / "tiny" / "checkpoints"):
        (folder / ckpt.TENSORS).write_bytes(b"not safetensors")  # every checkpoint fails its checksum
    capsys.readouterr()
    assert main([spec, "--runs", str(tmp_path), "--resume"]) == 1  # a failed run, not bad input (2)
    err = capsys.readouterr().err
    assert "error: no valid checkpoint under" in err and "Traceback" not in err


def test_ctrl_c_saves_and_prints_a_resume_command_that_works(tmp_path, capsys, monkeypatch):
    from maskdit.train import loop

    real_step = loop.Trainer._step

    def interrupt_at_6(self, loss_fn, step):
        if step == 6:
            raise KeyboardInterrupt
        return real_step(self, loss_fn, step)

    monkeypatch.setattr(loop.Trainer, "_step", interrupt_at_6)
    runs = tmp_path / "my runs"
    assert main([spec_file(tmp_path), "--runs", str(runs)]) == 130
    err = capsys.readouterr().err
    assert ckpt.latest_checkpoint(runs / "tiny" / "checkpoints").name == "step-00000006"
    command = next(line for line in err.splitlines() if "continue with: " in line).split("continue with: ")[1]
    monkeypatch.setattr(loop.Trainer, "_step", real_step)
    import shlex

    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "maskdit.build"]
    assert main(argv[3:]) == 0
    assert "resuming from step 6" in capsys.readouterr().err


def test_disk_full_during_a_run_is_one_line_and_leaves_no_temp_folder(tmp_path, capsys, monkeypatch):
    import errno

    def full_disk(tensors, filename):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    assert main([spec_file(tmp_path), "--runs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: could not write checkpoint {tmp_path / 'tiny' / 'checkpoints' / 'step-00000004'}: "
                     "No space left on device"] and "Traceback" not in err
    assert not list((tmp_path / "tiny" / "checkpoints").iterdir())
    assert all(line.endswith("}") for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines())
