"""The hostile test of a run folder, its files, its values and users' plugins, as one script.

Each attack plays a user or an attacker on tiny runs (a 1-block model, 8 training steps) and
reports whether maskdit's promise held: nothing outside a run folder touched through it, one
``error:`` line and exit 2 for every malformed input, values that validate also run, seeds that
do not fold, clean endings on SIGTERM / Ctrl-C, plugins checked, resume that helps, and a Python
API that refuses misuse. It prints a table, writes ``results.json`` next to itself, and exits 0
(the tally is the result, not the exit code).

    python benchmarks/attacks/run.py [--only ID ...] [--out results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import maskdit
from maskdit.core import ModelSpec
from maskdit.io import atomic_write

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
TINY = {
    "name": "tiny", "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 16, "num_heads": 1,
              "decoder_depth": 0, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5}, "sampler": {"name": "euler", "steps": 2},
    "losses": {"terms": [{"name": "dsm"}]},
    "train": {"steps": 8, "batch_size": 8, "lr": 1e-3, "log_every": 1, "checkpoint_every": 4},
    "eval": {"num_samples": 0},
}
TINY_MODEL = ModelSpec(**TINY["model"])
LABELS = torch.zeros(2, dtype=torch.int64)


@dataclass
class Outcome:
    held: bool
    detail: str


@dataclass
class Attack:
    id: str
    item: int
    what: str
    run: Callable[[Path], Outcome]


ATTACKS: list[Attack] = []


def attack(id: str, item: int, what: str):
    def register(fn: Callable[[Path], Outcome]) -> Callable[[Path], Outcome]:
        ATTACKS.append(Attack(id, item, what, fn))
        return fn
    return register


# --- running the commands ------------------------------------------------------------------------

def env(**extra: str) -> dict[str, str]:
    paths = [str(ROOT), *filter(None, [extra.pop("PYTHONPATH", None)])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1", **extra}


def maskdit_cmd(command: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"maskdit.{command}", *map(str, args)]


def cli(command: str, *args: str | Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(maskdit_cmd(command, *args), capture_output=True, text=True, timeout=timeout,
                          env=env(**extra), cwd=ROOT)


def one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> Outcome:
    """Held when the command exited 2 with exactly one ``error:`` line (argparse's ``prog: error:``
    for a flag), no traceback, naming ``fragments``."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:") or ": error: " in line]
    named = all(f in done.stderr for f in fragments)
    held = done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr and named
    return Outcome(held, f"rc {done.returncode}; " + (errors[0][:150] if errors else tail(done.stderr)))


def tail(text: str, n: int = 150) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:n]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 (or 'dir' / 'link') of everything under ``folder``, the lock left out."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.name == ".lock":
            continue
        found[rel] = "link" if path.is_symlink() else "dir" if path.is_dir() else hashlib.sha256(
            path.read_bytes()).hexdigest()
    return found


def write_spec(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return path


_BASE: dict[str, Path] = {}


def tiny_run(work: Path) -> tuple[Path, Path]:
    """A copy of one tiny trained run (``runs/tiny``) and its spec file, made once per script run."""
    if "run" not in _BASE:
        base = Path(tempfile.mkdtemp(prefix="maskdit-attacks-base-"))
        spec = write_spec(base / "in")
        done = cli("build", spec, "--runs", base / "runs")
        if done.returncode != 0:
            raise RuntimeError(f"the tiny run failed: {tail(done.stderr, 400)}")
        _BASE["run"] = base / "runs" / "tiny"
    runs = work / "runs"
    shutil.copytree(_BASE["run"], runs / "tiny", symlinks=True)
    return runs / "tiny", write_spec(work / "in")


def newest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*"))[-1]


def edit_state(checkpoint: Path, change: Callable[[dict], None]) -> None:
    state = json.loads((checkpoint / "state.json").read_text())
    change(state)
    (checkpoint / "state.json").write_text(json.dumps(state))


def outside_file(work: Path) -> Path:
    path = work / "outside" / "bashrc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("export KEEP=1\n")
    return path


def still(path: Path) -> bool:
    return path.read_bytes() == b"export KEEP=1\n"


# --- 1. links inside a run folder ----------------------------------------------------------------

@attack("1-lock-link", 1, "evaluate a run whose .lock links to ~/.bashrc")
def lock_link(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    victim = outside_file(work)
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    done = cli("evaluate", run, "--set", "eval.num_samples=4", "--no-progress")
    return Outcome(still(victim), f"rc {done.returncode}; outside file {'intact' if still(victim) else 'CHANGED'}")


@attack("1-checkpoints-link", 1, "build into a run folder whose checkpoints/ links outside")
def checkpoints_link(work: Path) -> Outcome:
    outside = work / "outside"
    (outside / "step-00000001").mkdir(parents=True)
    (outside / "step-00000001" / "photo.jpg").write_bytes(b"jpeg")
    (outside / ".tmp-x").write_text("mine")
    run = work / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "checkpoints").symlink_to(outside)
    done = cli("build", write_spec(work / "in"), "--runs", work / "runs")
    kept = sorted(p.name for p in outside.iterdir())
    held = kept == [".tmp-x", "step-00000001"] and (outside / "step-00000001" / "photo.jpg").exists()
    return Outcome(held, f"rc {done.returncode}; outside holds {kept}")


def linked_file_on_resume(work: Path, name: str) -> Outcome:
    run, spec = tiny_run(work)
    victim = outside_file(work)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(victim)
    done = cli("build", spec, "--runs", run.parent, "--resume", "--set", "train.steps=12")
    return Outcome(still(victim), f"rc {done.returncode}; outside file {'intact' if still(victim) else 'CHANGED'}")


@attack("1-metrics-link-resume", 1, "resume a run whose metrics.jsonl links outside")
def metrics_link(work: Path) -> Outcome:
    return linked_file_on_resume(work, "metrics.jsonl")


@attack("1-metrics-link-evaluate", 1, "evaluate a run whose metrics.jsonl links outside")
def metrics_link_evaluate(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    victim = outside_file(work)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    done = cli("evaluate", run, "--set", "eval.num_samples=4", "--no-progress")
    return Outcome(still(victim), f"rc {done.returncode}; outside file {'intact' if still(victim) else 'CHANGED'}")


@attack("1-loss-png-link", 1, "resume a run whose loss.png links outside")
def loss_png_link(work: Path) -> Outcome:
    return linked_file_on_resume(work, "loss.png")


# --- 2. export onto a run ------------------------------------------------------------------------

def export_onto(work: Path, fmt: str, out: Callable[[Path], Path]) -> Outcome:
    run, _ = tiny_run(work)
    before = snapshot(run)
    done = cli("export", newest(run), "--format", fmt, "--out", out(run))
    after = snapshot(run)
    return Outcome(before == after and done.returncode == 2,
                   f"rc {done.returncode}; run folder {'unchanged' if before == after else 'CHANGED'}")


@attack("2-export-into-checkpoint", 2, "export --format native --out RUN/checkpoints/step-N/tensors")
def export_into_checkpoint(work: Path) -> Outcome:
    return export_onto(work, "native", lambda run: newest(run) / "tensors")


@attack("2-export-onto-spec", 2, "export --format native --out RUN/spec")
def export_onto_spec(work: Path) -> Outcome:
    return export_onto(work, "native", lambda run: run / "spec")


@attack("2-export-diffusers-into-checkpoints", 2, "export --format diffusers --out RUN/checkpoints")
def export_into_checkpoints(work: Path) -> Outcome:
    return export_onto(work, "diffusers", lambda run: run / "checkpoints")


# --- 3. values that validate but break the run ---------------------------------------------------

def value_runs(work: Path, setting: str) -> Outcome:
    spec = write_spec(work / "in")
    dry = cli("build", spec, "--runs", work / "runs", "--dry-run", "--set", setting)
    if dry.returncode == 2:
        return one_error_line(dry)
    done = cli("build", spec, "--runs", work / "runs", "--set", setting, "--set", "eval.num_samples=4")
    saved = work / "runs" / "tiny" / "spec.json"
    again = cli("build", saved, "--runs", work / "runs2", "--dry-run") if saved.exists() else None
    held = done.returncode == 0 and again is not None and again.returncode == 0
    return Outcome(held, f"accepted; run rc {done.returncode}, saved spec re-validates: "
                         f"{again is not None and again.returncode == 0}")


@attack("3-s-tmin-inf", 3, "sampler.s_tmin=Infinity")
def s_tmin_inf(work: Path) -> Outcome:
    return value_runs(work, "sampler.s_tmin=Infinity")


@attack("3-cfg-interval-inf", 3, "sampler.cfg_interval=[0, Infinity]")
def cfg_interval_inf(work: Path) -> Outcome:
    return value_runs(work, "sampler.cfg_interval=[0, Infinity]")


@attack("3-lr-nan", 3, "train.lr=NaN")
def lr_nan(work: Path) -> Outcome:
    return value_runs(work, "train.lr=NaN")


# --- 4. seeds that fold ----------------------------------------------------------------------------

@attack("4-seed-2-32-train", 4, "seed=0 and seed=2**32 train identical weights")
def seed_train(work: Path) -> Outcome:
    spec = write_spec(work / "in")
    dry = cli("build", spec, "--dry-run", "--set", f"seed={2**32}")
    if dry.returncode == 2:
        return one_error_line(dry, "seed")
    losses = []
    for seed in (0, 2**32):
        done = cli("build", spec, "--runs", work / f"runs-{seed}", "--set", f"seed={seed}")
        if done.returncode != 0:
            return Outcome(False, f"seed {seed}: rc {done.returncode}; {tail(done.stderr)}")
        lines = (work / f"runs-{seed}" / "tiny" / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line).get("loss") for line in lines])
    return Outcome(losses[0] != losses[1], "accepted; " + ("distinct runs" if losses[0] != losses[1] else "IDENTICAL"))


@attack("4-sample-seed-2-32", 4, "sample --seed 2**32 equals --seed 0")
def seed_sample(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    outs = []
    for seed in (0, 2**32):
        out = work / f"grid-{seed}.png"
        done = cli("sample", run, "--n", "4", "--steps", "2", "--seed", str(seed), "--out", out, "--no-progress")
        if done.returncode == 2 and seed:
            return one_error_line(done, "seed")
        if done.returncode != 0:
            return Outcome(False, f"seed {seed}: rc {done.returncode}; {tail(done.stderr)}")
        outs.append(out.read_bytes())
    return Outcome(outs[0] != outs[1], "accepted; " + ("distinct grids" if outs[0] != outs[1] else "IDENTICAL"))


# --- 5. an npz bomb --------------------------------------------------------------------------------

def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    pad = 64 - (10 + len(header) + 1) % 64
    return b"\x93NUMPY\x01\x00" + (len(header) + pad + 1).to_bytes(2, "little") + header + b" " * pad + b"\n"


def run_measured(command: list[str], timeout: float) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in GB) of one command."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=ROOT)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0) if proc.returncode is None else (0, 0, None)
    code = proc.returncode if proc.returncode is not None else os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1e6 if usage is not None else float("nan")
    return code, stderr, peak


@attack("5-npz-bomb", 5, "fid on an .npz whose header claims 40000x40000 images")
def npz_bomb(work: Path) -> Outcome:
    bomb = work / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("arr_0.npy", npy_header((4, 40000, 40000, 3)) + bytes(1 << 20))
    reference = work / "ref.npz"
    with zipfile.ZipFile(reference, "w") as archive:
        archive.writestr("arr_0.npy", npy_header((2, 8, 8, 3)) + bytes(2 * 8 * 8 * 3))
    proc = subprocess.Popen(maskdit_cmd("fid", bomb, reference, "--no-progress", "--device", "cpu"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    outcome = one_error_line(done, "bomb.npz")
    return outcome


# --- 6. tracebacks instead of one error line ---------------------------------------------------------

@attack("6-pt-int-key", 6, "sample a .pt reference checkpoint with an int key")
def pt_int_key(work: Path) -> Outcome:
    path = work / "ref.pt"
    torch.save({0: torch.zeros(2), "x_embedder.proj.weight": torch.zeros(2)}, path)
    return one_error_line(cli("sample", path, "--n", "1", "--out", work / "g.png", "--no-progress"), "ref.pt")


def latent_folder(work: Path, corrupt: Callable[[dict], None]) -> Path:
    """A one-shard latent folder whose safetensors header was passed through ``corrupt``."""
    folder = work / "lat"
    folder.mkdir()
    shard = folder / "shard-00000.safetensors"
    save_file({"mean": torch.zeros(2, 4, 8, 8), "logvar": torch.zeros(2, 4, 8, 8),
               "label": torch.zeros(2, dtype=torch.int64), "index": torch.arange(2)}, str(shard))
    raw = shard.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    corrupt(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    shard.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length:])
    record = {"file": shard.name, "start": 0, "stop": 2, "count": 2, "bytes": shard.stat().st_size,
              "sha256": hashlib.sha256(shard.read_bytes()).hexdigest(), "key": "k"}
    manifest = {"vae": {"path": "vae", "config_sha256": "0", "scaling_factor": 0.18215},
                "scale": 0.18215, "source": {"path": "img", "resolution": 64, "num_images": 2, "listing_sha256": "0"},
                "classes": ["a", "b"], "latent_shape": [4, 8, 8], "dtype": "float32", "flip": False,
                "shard_size": 2, "key": "k", "count": 2, "shards": [record]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def train_on_latents(work: Path, corrupt: Callable[[dict], None]) -> Outcome:
    folder = latent_folder(work, corrupt)
    spec = write_spec(work / "in", model={**TINY["model"], "input_size": 8, "in_channels": 4, "patch_size": 2,
                                           "num_classes": 2},
                      data={"name": "latents", "path": str(folder), "resolution": 8, "num_classes": 2, "channels": 4},
                      train={**TINY["train"], "batch_size": 2})
    return one_error_line(cli("build", spec, "--runs", work / "runs"), "shard-00000")


@attack("6-shard-short-view", 6, "a latent shard whose header gives a short byte range")
def shard_short(work: Path) -> Outcome:
    def short(header: dict) -> None:
        header["mean"]["data_offsets"][1] -= 4
    return train_on_latents(work, short)


@attack("6-shard-float-offsets", 6, "a latent shard with float data offsets")
def shard_float(work: Path) -> Outcome:
    def floats(header: dict) -> None:
        header["mean"]["data_offsets"] = [x + 0.5 for x in header["mean"]["data_offsets"]]
    return train_on_latents(work, floats)


@attack("6-shard-string-shape", 6, "a latent shard with a string shape")
def shard_string_shape(work: Path) -> Outcome:
    def string(header: dict) -> None:
        header["mean"]["shape"] = ["2", "4", "8", "8"]
    return train_on_latents(work, string)


@attack("6-shard-huge-shape", 6, "a latent shard with a 10^30 shape")
def shard_huge_shape(work: Path) -> Outcome:
    def huge(header: dict) -> None:
        header["mean"]["shape"] = [10**30, 4, 8, 8]
    return train_on_latents(work, huge)


def diffusers_export(work: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> Outcome:
    run, _ = tiny_run(work)
    out = work / "exported"
    done = cli("export", run, "--format", "diffusers", "--out", out)
    if done.returncode != 0:
        return Outcome(False, f"export failed: {tail(done.stderr)}")
    [weights] = list(out.rglob("*.safetensors"))
    tensors = load_file(str(weights))
    change(tensors)
    save_file(tensors, str(weights))
    return one_error_line(cli("sample", out, "--n", "1", "--out", work / "g.png", "--no-progress"))


@attack("6-diffusers-qkv-mismatch", 6, "a diffusers folder with mismatched q/k/v")
def diffusers_qkv(work: Path) -> Outcome:
    def cut(tensors: dict[str, torch.Tensor]) -> None:
        key = next(k for k in tensors if k.endswith("to_k.weight"))
        tensors[key] = tensors[key][:-1].contiguous()
    return diffusers_export(work, cut)


@attack("6-diffusers-0d-class-table", 6, "a diffusers folder with a 0-d class table")
def diffusers_0d(work: Path) -> Outcome:
    def zero_d(tensors: dict[str, torch.Tensor]) -> None:
        key = next(k for k in tensors if "class_embedder" in k or "embedding_table" in k)
        tensors[key] = torch.tensor(1.0)
    return diffusers_export(work, zero_d)


@attack("6-state-betas-strings", 6, "resume from a state.json whose optimizer betas are strings")
def betas_strings(work: Path) -> Outcome:
    def strings(state: dict) -> None:
        for group in state["param_groups"]:
            group["betas"] = ["a", "b"]
    return tampered_state(work, strings)


def fake_distribution(work: Path, value: str) -> Path:
    site = work / "site"
    info = site / "evil-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[maskdit.plugins]\nevil = {value}\n")
    return site


@attack("6-entry-point-empty", 6, "an installed entry point with an empty value; then --schema")
def entry_point_empty(work: Path) -> Outcome:
    done = cli("build", "--schema", PYTHONPATH=str(fake_distribution(work, "")))
    return Outcome(done.returncode == 0 and "Traceback" not in done.stderr,
                   f"rc {done.returncode}; {tail(done.stderr)}")


@attack("6-entry-point-path", 6, "an installed entry point with a path-like value; then --dry-run default")
def entry_point_path(work: Path) -> Outcome:
    done = cli("build", "default", "--dry-run", PYTHONPATH=str(fake_distribution(work, "../../etc/passwd")))
    return Outcome(done.returncode == 0 and "Traceback" not in done.stderr,
                   f"rc {done.returncode}; {tail(done.stderr)}")


def interrupt(command: list[str], wait_for: Callable[[], bool], sig: int, timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=ROOT)
    deadline = time.monotonic() + timeout
    while not wait_for() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    return proc.returncode, stderr


def started_after(seconds: float) -> Callable[[], bool]:
    until = time.monotonic() + seconds
    return lambda: time.monotonic() > until


@attack("6-ctrl-c-sample", 6, "Ctrl-C during sample")
def ctrl_c_sample(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    code, stderr = interrupt(maskdit_cmd("sample", run, "--n", "20000", "--steps", "200", "--out", work / "g.png"),
                             started_after(12), signal.SIGINT)
    return Outcome(code == 130 and "Traceback" not in stderr, f"rc {code}; {tail(stderr)}")


@attack("6-ctrl-c-evaluate", 6, "Ctrl-C during evaluate")
def ctrl_c_evaluate(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    code, stderr = interrupt(maskdit_cmd("evaluate", run, "--set", "eval.num_samples=20000"), started_after(12),
                             signal.SIGINT)
    return Outcome(code == 130 and "Traceback" not in stderr, f"rc {code}; {tail(stderr)}")


@attack("6-fifo-spec", 6, "a spec path that is a FIFO")
def fifo_spec(work: Path) -> Outcome:
    fifo = work / "spec.json"
    os.mkfifo(fifo)
    try:
        done = cli("build", fifo, "--dry-run", timeout=60)
    except subprocess.TimeoutExpired:
        return Outcome(False, "hung for 60 s")
    return one_error_line(done, "spec.json")


# --- 7. state.json outside the checksum --------------------------------------------------------------

def refused_checkpoint(done: subprocess.CompletedProcess, checkpoint: Path) -> Outcome:
    """Held when the resume refused the tampered checkpoint: exit 2, or a warning that it passed
    over it and resumed from the one before."""
    passed_over = f"passing over {checkpoint.name}" in done.stderr and "resuming from step 4" in done.stderr
    held = "Traceback" not in done.stderr and (done.returncode == 2 or (done.returncode == 0 and passed_over))
    said = next((line for line in done.stderr.splitlines() if line.startswith(("error:", "warning:"))), "")
    return Outcome(held, f"rc {done.returncode}; {said[:150] or tail(done.stderr)}")


def tampered_state(work: Path, change: Callable[[dict], None]) -> Outcome:
    run, spec = tiny_run(work)
    checkpoint = newest(run)
    edit_state(checkpoint, change)
    done = cli("build", spec, "--runs", run.parent, "--resume", "--set", "train.steps=12")
    return refused_checkpoint(done, checkpoint)


@attack("7-maximize", 7, "state.json param_groups maximize: true")
def maximize(work: Path) -> Outcome:
    def ascend(state: dict) -> None:
        for group in state["param_groups"]:
            group["maximize"] = True
    return tampered_state(work, ascend)


@attack("7-step-edited", 7, "state.json step edited")
def step_edited(work: Path) -> Outcome:
    return tampered_state(work, lambda state: state.update(step=2))


@attack("7-checksums-deleted", 7, "state.json checksums deleted and tensors tampered")
def checksums_deleted(work: Path) -> Outcome:
    run, spec = tiny_run(work)
    checkpoint = newest(run)
    edit_state(checkpoint, lambda state: state.pop("checksums", None))
    [weights] = list(checkpoint.glob("*.safetensors"))
    tensors = load_file(str(weights))
    key = next(iter(tensors))
    tensors[key] = tensors[key] + 1
    save_file(tensors, str(weights))
    done = cli("build", spec, "--runs", run.parent, "--resume", "--set", "train.steps=12")
    return refused_checkpoint(done, checkpoint)


# --- 8. debris and metrics integrity ------------------------------------------------------------------

@attack("8-temp-debris", 8, "temp files of killed writers are removed on the next start")
def temp_debris(work: Path) -> Outcome:
    run, spec = tiny_run(work)
    debris = [run / ".metrics.jsonl.12345.tmp", run / ".spec.json.k3j9x_q2.tmp", run / ".loss.png.a8zz0m1c.tmp"]
    for path in debris:
        path.write_text("partial")
    mine = run / "notes.tmp"
    mine.write_text("user's")
    done = cli("build", spec, "--runs", run.parent, "--resume", "--set", "train.steps=12")
    left = [p.name for p in debris if p.exists()]
    return Outcome(done.returncode == 0 and not left and mine.exists(),
                   f"rc {done.returncode}; left {left}; user's file {'kept' if mine.exists() else 'DELETED'}")


NAN_PLUGIN = '''
from typing import Any, Literal
import torch
from maskdit.config import SpecModel, register

class NaNOnSecondCall:
    def __init__(self):
        self.calls = 0

    def __call__(self, inputs):
        self.calls += 1
        value = float("nan") if self.calls == 2 else 0.0
        return (inputs.denoised - inputs.y).pow(2).flatten(1).mean(1) + value

@register("loss")
class NaNOnce(SpecModel):
    name: Literal["nan_once"] = "nan_once"
    weight: float = 1.0

    def build(self, **context: Any):
        return NaNOnSecondCall()
'''


def run_with_a_skipped_step(work: Path) -> tuple[subprocess.CompletedProcess, Path]:
    (work / "plug").mkdir()
    (work / "plug" / "nan_plugin.py").write_text(NAN_PLUGIN)
    spec = write_spec(work / "in", losses={"terms": [{"name": "nan_once"}]})
    done = cli("build", spec, "--runs", work / "runs", "--plugin", "nan_plugin", PYTHONPATH=str(work / "plug"))
    return done, work / "runs" / "tiny" / "metrics.jsonl"


@attack("8-skipped-step-once", 8, "a skipped non-finite step appears in metrics.jsonl once")
def skipped_once(work: Path) -> Outcome:
    done, metrics = run_with_a_skipped_step(work)
    if not metrics.exists():
        return Outcome(False, f"rc {done.returncode}; no metrics; {tail(done.stderr)}")
    steps = [json.loads(line, parse_constant=lambda c: None).get("step") for line in metrics.read_text().splitlines()]
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    return Outcome(done.returncode == 0 and not repeated, f"rc {done.returncode}; steps repeated: {repeated}")


@attack("8-strict-json", 8, "metrics.jsonl is strict JSON after a non-finite step")
def strict_json(work: Path) -> Outcome:
    done, metrics = run_with_a_skipped_step(work)
    if not metrics.exists():
        return Outcome(False, f"rc {done.returncode}; no metrics")
    bad = []
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        try:
            json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as err:
            bad.append(f"line {number}: {err}")
    return Outcome(not bad, f"{len(bad)} non-strict lines" + (f", first {bad[0]}" if bad else ""))


@attack("8-append-after-cut-line", 8, "evaluate appends after a metrics.jsonl cut mid-line")
def append_after_cut(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 9, "lo')
    done = cli("evaluate", run, "--set", "eval.num_samples=4", "--no-progress")
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    evals = [r for r in records if "fid" in r or r.get("kind") == "eval" or "eval" in json.dumps(r)[:40]]
    return Outcome(done.returncode == 0 and bool(evals), f"rc {done.returncode}; eval records readable: {len(evals)}")


@attack("8-sigterm-build", 8, "SIGTERM during build")
def sigterm_build(work: Path) -> Outcome:
    spec = write_spec(work / "in", train={**TINY["train"], "steps": 100000, "checkpoint_every": 100000})
    metrics = work / "runs" / "tiny" / "metrics.jsonl"
    code, stderr = interrupt(maskdit_cmd("build", spec, "--runs", work / "runs"),
                             lambda: metrics.exists() and metrics.stat().st_size > 2000, signal.SIGTERM)
    saved = list((work / "runs" / "tiny" / "checkpoints").glob("step-*"))
    return Outcome(code == 143 and bool(saved) and "Traceback" not in stderr,
                   f"rc {code}; checkpoints {len(saved)}; {tail(stderr)}")


# --- 9. terminal and shell ----------------------------------------------------------------------------

def native_with_keys(work: Path, keys: list[str]) -> Path:
    denoiser = maskdit.build_denoiser(TINY_MODEL)
    path = maskdit.save_native(denoiser, work / "net")
    tensors = load_file(str(path))
    tensors.update({key: torch.zeros(1) for key in keys})
    save_file(tensors, str(path))
    return path


@attack("9-escape-codes", 9, "tensor key names with terminal escape codes")
def escape_codes(work: Path) -> Outcome:
    path = native_with_keys(work, ["\x1b[2K\rerror: forged line"])
    done = cli("sample", path, "--n", "1", "--out", work / "g.png", "--no-progress")
    raw = "\x1b" in done.stderr or "\r" in done.stderr
    return Outcome(done.returncode == 2 and not raw, f"rc {done.returncode}; raw escape reached the terminal: {raw}")


@attack("9-junk-keys", 9, "20,000 junk keys")
def junk_keys(work: Path) -> Outcome:
    path = native_with_keys(work, [f"junk.{i}" for i in range(20000)])
    done = cli("sample", path, "--n", "1", "--out", work / "g.png", "--no-progress")
    lines = len(done.stderr.splitlines())
    return Outcome(done.returncode == 2 and lines < 50, f"rc {done.returncode}; {lines} stderr lines")


@attack("9-plugin-name-shell", 9, "a plugin name from state.json echoed as a shell suggestion")
def plugin_shell(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    edit_state(newest(run), lambda state: state.update(plugins=["x; touch pwned"]))
    saved = json.loads((run / "spec.json").read_text())
    (run / "spec.json").write_text(json.dumps({**saved, "masking": {"name": "centre", "ratio": 0.5}}))
    done = cli("build", run / "spec.json", "--runs", run.parent, "--resume")
    unquoted = "--plugin x; touch pwned" in done.stderr
    return Outcome(done.returncode == 2 and not unquoted,
                   f"rc {done.returncode}; unquoted suggestion: {unquoted}; {tail(done.stderr)}")


# --- 10-12. users' plugins and noise-adaptive masking ---------------------------------------------------

LAZY_BLOCK = '''
from typing import Any, Literal
import torch
from torch import nn
from maskdit.config import SpecModel, register
from maskdit.core import DiTBlock

class LazyBlock(DiTBlock):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.empty(self.mlp.fc2.out_features))

    def forward(self, x, c):
        return super().forward(x, c) * self.gain

@register("block")
class LazySpec(SpecModel):
    name: Literal["lazy"] = "lazy"

    def build(self, **context: Any):
        return LazyBlock
'''


@attack("10-uninitialised-parameter", 10, "a block plugin whose init_weights leaves a parameter unwritten")
def uninitialised(work: Path) -> Outcome:
    (work / "plug").mkdir()
    (work / "plug" / "lazy_block.py").write_text(LAZY_BLOCK)
    code = textwrap.dedent(f"""
        import lazy_block, maskdit, torch
        from maskdit.core import ModelSpec
        spec = ModelSpec(**{TINY["model"]!r}, block="lazy")
        try:
            denoiser = maskdit.build_denoiser(spec)
        except Exception as err:
            print("refused:", type(err).__name__, err)
        else:
            print("built; gain finite:", bool(torch.isfinite(denoiser.net.blocks[0].gain).all()))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(
        PYTHONPATH=str(work / "plug")), cwd=ROOT, timeout=120)
    held = done.stdout.startswith("refused:") and "gain" in done.stdout
    return Outcome(held, (done.stdout.strip() or tail(done.stderr))[:150])


@attack("11-testing-ships", 11, "maskdit.testing ships and checks a user's plugin")
def testing_ships(work: Path) -> Outcome:
    done = subprocess.run([sys.executable, "-c", "import maskdit.testing"], capture_output=True, text=True,
                          env=env(), cwd=work, timeout=120)
    return Outcome(done.returncode == 0, "importable" if done.returncode == 0 else tail(done.stderr))


@attack("11-readme-plugin-example", 11, "the README's plugin example takes a ratio schedule")
def readme_plugin(work: Path) -> Outcome:
    readme = (ROOT / "README.md").read_text()
    start = readme.find("`my_plugins.py`")
    block = readme[readme.find("```python", start) + len("```python"):]
    block = block[:block.find("```")]
    (work / "my_plugins.py").write_text(block)
    code = textwrap.dedent("""
        import my_plugins
        from maskdit.masking import MASKING
        for name in sorted(set(MASKING.names()) - {"random", "block", "grid", "none"}):
            MASKING.get(name).model_validate({"name": name, "ratio": {"name": "uniform", "low": 0.25, "high": 0.75}})
            print("ok", name)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(PYTHONPATH=str(work)), cwd=work, timeout=120)
    return Outcome(done.returncode == 0 and "ok" in done.stdout, (done.stdout.strip() or tail(done.stderr))[:150])


@attack("12-noise-adaptive-per-sample", 12, "SigmaRatio drops per sample, following each sample's sigma")
def noise_adaptive(work: Path) -> Outcome:
    spec = maskdit.load_spec(ROOT / "examples" / "digits-noise-adaptive-masking.json")
    strategy = maskdit.build_masking(spec.masking)
    generator = torch.Generator().manual_seed(0)
    sigma = torch.cat([torch.full((8,), 0.01), torch.full((8,), 50.0)])
    mask = strategy(16, (4, 4), sigma=sigma, step=0, generator=generator)
    dropped = per_sample_dropped(mask, sigma.numel())
    low, high = sum(dropped[:8]) / 8, sum(dropped[8:]) / 8
    return Outcome(abs(high - low) > 0.3, f"drop fraction at sigma 0.01: {low:.2f}, at sigma 50: {high:.2f}")


def per_sample_dropped(mask, batch: int) -> list[float]:
    """Each sample's dropped fraction, for a plain Mask or one that holds sigma groups."""
    if hasattr(mask, "dropped") and mask.dropped.shape[0] == batch:
        return mask.dropped.float().mean(1).tolist()
    fractions = [0.0] * batch
    for index, part in mask.groups:
        for i, row in zip(index.tolist(), part.dropped.float().mean(1).tolist()):
            fractions[i] = row
    return fractions


# --- 13. resume -----------------------------------------------------------------------------------------

@attack("13-resume-run-folder", 13, "build RUN_FOLDER --resume")
def resume_folder(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    done = cli("build", run, "--resume", "--set", "train.steps=12")
    return Outcome(done.returncode == 0, f"rc {done.returncode}; {tail(done.stderr)}")


@attack("13-resume-without-sets", 13, "resume without repeating --set: the differing field is named")
def resume_mismatch(work: Path) -> Outcome:
    spec = write_spec(work / "in")
    first = cli("build", spec, "--runs", work / "runs", "--set", "model.hidden_size=32")
    if first.returncode != 0:
        return Outcome(False, f"setup failed: {tail(first.stderr)}")
    done = cli("build", spec, "--runs", work / "runs", "--resume")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    named = [line for line in errors if "hidden_size" in line]
    return Outcome(done.returncode == 2 and "Traceback" not in done.stderr and bool(named),
                   f"rc {done.returncode}; {len(errors)} error lines; " + (named[0][:120] if named else tail(done.stderr)))


@attack("13-copied-run-folder", 13, "resume a copied run folder: the original stays untouched")
def copied_folder(work: Path) -> Outcome:
    run, _ = tiny_run(work)
    copy = run.parent / "copy"
    shutil.copytree(run, copy)
    before = snapshot(run)
    done = cli("build", copy / "spec.json", "--runs", run.parent, "--resume", "--set", "train.steps=12")
    return Outcome(snapshot(run) == before, f"rc {done.returncode}; original "
                   f"{'untouched' if snapshot(run) == before else 'CONTINUED'}; {tail(done.stderr)}")


# --- 14. Python API -------------------------------------------------------------------------------------

def raises_clearly(call: Callable[[], object], *words: str) -> Outcome:
    try:
        result = call()
    except (TypeError, ValueError, maskdit.InputError) as err:
        named = all(w.lower() in str(err).lower() for w in words)
        return Outcome(named, f"{type(err).__name__}: {str(err)[:120]}")
    except Exception as err:
        return Outcome(False, f"{type(err).__name__}: {str(err)[:120]}")
    return Outcome(False, f"accepted, returned {type(result).__name__}")


def tiny_denoiser():
    return maskdit.build_denoiser(TINY_MODEL)


@attack("14-int64-input", 14, "an int64 input to the denoiser")
def int64_input(work: Path) -> Outcome:
    net = tiny_denoiser()
    x = torch.zeros(2, 1, 32, 32, dtype=torch.int64)
    return raises_clearly(lambda: net(x, torch.ones(2), labels=LABELS), "float")


@attack("14-sigma-zero", 14, "sigma 0 to the denoiser")
def sigma_zero(work: Path) -> Outcome:
    net = tiny_denoiser()
    return raises_clearly(lambda: net(torch.zeros(2, 1, 32, 32), torch.zeros(2), labels=LABELS), "sigma")


@attack("14-sigma-nan", 14, "sigma NaN to the denoiser")
def sigma_nan(work: Path) -> Outcome:
    net = tiny_denoiser()
    sigma = torch.full((2,), float("nan"))
    return raises_clearly(lambda: net(torch.zeros(2, 1, 32, 32), sigma, labels=LABELS), "sigma")


@attack("14-build-denoiser-dict", 14, "build_denoiser(dict)")
def denoiser_dict(work: Path) -> Outcome:
    try:
        denoiser = maskdit.build_denoiser(dict(TINY["model"]))
    except TypeError as err:
        return Outcome("ModelSpec" in str(err), f"TypeError: {err}")
    except Exception as err:
        return Outcome(False, f"{type(err).__name__}: {err}"[:150])
    return Outcome(isinstance(denoiser, torch.nn.Module), "accepted and validated")


@attack("14-build-sampler-dict", 14, "build_sampler(dict)")
def sampler_dict(work: Path) -> Outcome:
    try:
        sampler = maskdit.build_sampler({"name": "euler", "steps": 2})
    except TypeError as err:
        return Outcome("spec" in str(err).lower(), f"TypeError: {err}")
    except Exception as err:
        return Outcome(False, f"{type(err).__name__}: {err}"[:150])
    return Outcome(callable(sampler), "accepted and validated")


@attack("14-bool-mask", 14, "a bool tensor passed as the mask")
def bool_mask(work: Path) -> Outcome:
    net = tiny_denoiser()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    return raises_clearly(lambda: net(torch.zeros(2, 1, 32, 32), torch.ones(2), labels=LABELS, mask=mask), "Mask")


@attack("14-save-native-nan", 14, "save_native of NaN weights")
def save_nan(work: Path) -> Outcome:
    net = tiny_denoiser()
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    return raises_clearly(lambda: maskdit.save_native(net, work / "nan"), "finite")


@attack("14-native-int8-weights", 14, "native weights stored as int8 / bool")
def native_int8(work: Path) -> Outcome:
    path = maskdit.save_native(tiny_denoiser(), work / "net")
    tensors = load_file(str(path))
    tensors = {k: (v.to(torch.int8) if i % 2 else v.bool()) if v.is_floating_point() else v
               for i, (k, v) in enumerate(tensors.items())}
    save_file(tensors, str(path))
    return raises_clearly(lambda: maskdit.load_native(path))


@attack("14-init-seed", 14, "build_denoiser says that its init ignores torch.manual_seed")
def init_seed(work: Path) -> Outcome:
    names = set(inspect.signature(maskdit.build_denoiser).parameters)
    doc = inspect.getdoc(maskdit.build_denoiser) or ""
    said = "manual_seed" in doc or "global" in doc.lower()
    return Outcome(bool(names & {"generator", "seed"}) and said,
                   f"parameters: {sorted(names)}; docstring names the global RNG: {said}")


# --- the table ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="attack ids (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="JSON to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [a for a in ATTACKS if args.only is None or a.id in args.only]
    rows = []
    for case in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"maskdit-attack-{case.id}-"))
        started = time.perf_counter()
        try:
            outcome = case.run(work)
        except Exception as err:  # the attack itself broke: counts as not held, and says why
            outcome = Outcome(False, f"attack raised {type(err).__name__}: {str(err)[:120]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append({"id": case.id, "item": case.item, "what": case.what, "held": outcome.held,
                     "detail": outcome.detail, "seconds": round(time.perf_counter() - started, 1)})
        print(f"{'held  ' if outcome.held else 'BROKEN'} {case.id:<36} {outcome.detail}", flush=True)
    held = sum(r["held"] for r in rows)
    print(f"\n{held} of {len(rows)} attacks held")
    result = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=ROOT).stdout.strip(),
              "held": held, "total": len(rows), "attacks": rows}
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    shutil.rmtree(_BASE["run"].parents[1], ignore_errors=True) if "run" in _BASE else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
