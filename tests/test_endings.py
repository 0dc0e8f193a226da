"""How commands end when asked to stop: SIGTERM during a build checkpoints and says how to go on
(exit 143), Ctrl-C anywhere else is one line and exit 130, SIGTERM there exits 143 quietly; a spec
path that is a FIFO is refused, not read for ever."""

import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from maskdit.app import cli
from maskdit.app.commands.build import main as build
from maskdit.io import checkpoint as ckpt
from maskdit.io.jsonl import read_jsonl
from tests.test_run_folder import ROOT, TINY, spec_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
COMMANDS = ("build", "sample", "evaluate", "export", "fid", "latents", "ema")


def start(args, **popen):
    """A maskdit command in a child process whose Ctrl-C is Python's own (a shell's background job
    ignores SIGINT, and a child inherits that)."""
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def wait_for(predicate, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the command ended before it could be stopped: {proc.communicate()}"


def lines_without_bars(text):
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]


def test_sigterm_mid_build_checkpoints_says_how_and_the_printed_command_resumes(tmp_path):
    spec = spec_file(tmp_path, train={**TINY["train"], "steps": 2000, "checkpoint_every": 5})
    runs = tmp_path / "my runs"
    proc = start(["maskdit.build", spec, "--runs", str(runs)])
    metrics = runs / "tiny" / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 12, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("terminated (SIGTERM); checkpoint "))
    named, command = line.removeprefix("terminated (SIGTERM); checkpoint ").split("; continue with: ")
    assert ckpt.latest_checkpoint(runs / "tiny" / "checkpoints") == ckpt.step_dir(runs / "tiny" / "checkpoints",
                                                                                     int(named[-8:]))
    stopped_at = int(named[-8:])
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "maskdit.build"] and argv[3] == str(runs / "tiny")
    resumed = subprocess.run([sys.executable, *argv[1:], "--set", f"train.steps={stopped_at + 3}"], cwd=ROOT,
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {stopped_at}" in resumed.stderr
    assert [r["step"] for r in read_jsonl(metrics)] == list(range(1, stopped_at + 4))  # every step once


DRIVER = """
import os, signal, sys
from maskdit.app.commands.build import main
from maskdit.train import loop
real = loop.Trainer._step
def step(self, phase, index):
    if index == 6:  # as a scheduler's SIGTERM between two optimizer updates
        os.kill(os.getpid(), signal.SIGTERM)
    return real(self, phase, index)
loop.Trainer._step = step
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_between_updates_writes_the_checkpoint_of_the_last_step(tmp_path):
    spec = spec_file(tmp_path)  # 8 steps, a checkpoint every 4
    done = subprocess.run([sys.executable, "-c", DRIVER, spec, "--runs", str(tmp_path)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    newest = ckpt.latest_checkpoint(tmp_path / "tiny" / "checkpoints")
    assert newest.name == "step-00000006"
    assert f"terminated (SIGTERM); checkpoint {newest}; continue with: " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run to sample and evaluate."""
    root = tmp_path_factory.mktemp("trained")
    assert build([spec_file(root), "--runs", str(root)]) == 0
    return root / "tiny"


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_sample_is_one_line_or_quiet_never_a_traceback(trained, tmp_path, stop, code):
    proc = start(["maskdit.sample", str(trained), "--n", "20000", "--steps", "40", "--out", str(tmp_path / "g.png")])
    assert proc.stdout.readline().startswith("sampling ")  # inside the command: its handlers are in place
    time.sleep(0.5)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert lines_without_bars(err) == (["interrupted"] if stop == signal.SIGINT else [])
    assert not (tmp_path / "g.png").exists()


def test_ctrl_c_during_evaluate_is_one_line(trained):
    proc = start(["maskdit.evaluate", str(trained), "--set", "eval.num_samples=20000", "--set", "sampler.steps=40"])
    assert proc.stdout.readline().startswith("evaluating ")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and lines_without_bars(err) == ["interrupted"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_turns_ctrl_c_into_130_and_sigterm_into_143(name, monkeypatch, capsys):
    command = importlib.import_module(f"maskdit.app.commands.{name}")
    for stop, code, said in [(KeyboardInterrupt, 130, ["interrupted"]), (cli.Terminated, 143, [])]:
        def interrupted(*args, stop=stop, **kwargs):
            raise stop()

        monkeypatch.setattr(cli, "load_plugins", interrupted)  # the first thing a command does after parsing
        argv = {"latents": ["encode", "--vae", "v", "--data", "d", "--out", "o"], "fid": ["a.npz", "b.npz"],
                "export": ["run", "--format", "native", "--out", "o"]}.get(name, ["run"])
        try:
            assert command.main(argv) == code
        except KeyboardInterrupt:
            pytest.fail(f"{name}: the interrupt escaped as a traceback")
        assert capsys.readouterr().err.split() == said


def test_sigterm_handler_is_the_commands_only_while_one_runs(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body(_args):
        seen.append(signal.getsignal(signal.SIGTERM))
        return cli.EXIT_OK

    main = cli.command(lambda argv: type("Args", (), {"plugins": []})())(body)
    assert main([]) == 0
    assert seen[0] is not before and callable(seen[0])
    assert signal.getsignal(signal.SIGTERM) is before  # put back: library users keep theirs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_the_spec_is_refused_not_read_for_ever(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "maskdit.build", str(fifo), "--runs", str(tmp_path)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {fifo}: not a regular file (a FIFO); give the path of a JSON file"


def test_ctrl_c_in_a_build_still_says_how_to_continue(tmp_path, capsys, monkeypatch):
    from maskdit.train import loop

    real_step = loop.Trainer._step

    def interrupt_at_3(self, phase, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, phase, step)

    monkeypatch.setattr(loop.Trainer, "_step", interrupt_at_3)
    assert build([spec_file(tmp_path), "--runs", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    run = tmp_path / "tiny"
    assert f"interrupted; checkpoint {run / 'checkpoints' / 'step-00000003'}; continue with: " \
           f"python -m maskdit.build {run} --resume" in err
    assert json.loads((run / "spec.json").read_text())["name"] == "tiny"


def test_an_interrupt_before_a_steps_metrics_line_keeps_every_step_logged_once(tmp_path, capsys, monkeypatch):
    from maskdit.train import loop

    real_log = loop.Trainer._log

    def interrupt_before_line_6(self, result, images_per_second):
        if result.step == 6:  # step 6 applied and counted, its line not yet written
            raise cli.Terminated()
        return real_log(self, result, images_per_second)

    monkeypatch.setattr(loop.Trainer, "_log", interrupt_before_line_6)
    spec = spec_file(tmp_path)  # 8 steps, a checkpoint every 4
    assert build([spec, "--runs", str(tmp_path)]) == 143
    run = tmp_path / "tiny"
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000004"  # not 6: its line is missing
    monkeypatch.setattr(loop.Trainer, "_log", real_log)
    assert build([str(run), "--resume"]) == 0
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 9))
