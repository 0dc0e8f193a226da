"""``torchrun --nproc_per_node 2 -m maskdit.build SPEC`` on CPU (gloo): the same weights as one
process with the same global batch, and its checkpoints resume on one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.app.experiment import Experiment
from maskdit.app.training_run import train_run
from maskdit.io import checkpoint as ckpt
from maskdit.io.jsonl import read_jsonl

SPEC = {
    "name": "tiny", "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 32, "num_heads": 2,
              "decoder_depth": 1, "decoder_hidden_size": 16, "decoder_num_heads": 2, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5},
    "losses": {"terms": [{"name": "dsm", "weight": 1.0}, {"name": "mae", "weight": 0.1}], "label_dropout": 0.2},
    "data": {"name": "mnist5k", "split": "train", "resolution": 32},
    # an unmasked phase leaves the mask token unused: DDP and FSDP2 must cope
    "train": {"phases": [{"name": "masked", "steps": 2}, {"name": "unmask", "steps": 2, "masking": {"name": "none"}}],
              "batch_size": 8, "grad_accumulation": 2, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2,
              "keep_checkpoints": 5, "ema": {"decay": 0.5}, "sample_every": 4},
    "sampler": {"name": "heun", "steps": 2},
    "eval": {"num_samples": 0, "grid_per_class": 1},
}
TOL = {"rtol": 1e-4, "atol": 1e-6}  # all-reduced means add in another order than one process's


def torchrun(spec_path: Path, runs: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "maskdit.build", str(spec_path), "--runs", str(runs)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    spec_path = root / "tiny.json"
    spec_path.write_text(json.dumps(SPEC))
    single = train_run(Experiment(ExperimentSpec.model_validate(SPEC)), root / "one" / "tiny")
    return root, spec_path, single


def checkpoint(run_dir: Path, step: int) -> ckpt.Checkpoint:
    return ckpt.load_checkpoint(ckpt.step_dir(run_dir / "checkpoints", step))


def assert_close_groups(got: ckpt.Checkpoint, want: ckpt.Checkpoint) -> None:
    for group in ("model", "ema", "optimizer"):
        assert got.tensors[group].keys() == want.tensors[group].keys(), group
        for name, value in want.tensors[group].items():
            torch.testing.assert_close(got.tensors[group][name], value, **TOL, msg=f"{group}/{name}")
    assert torch.equal(got.tensors["rng"]["generator"], want.tensors["rng"]["generator"])


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_match_one_and_resume_on_one(setup, parallel):
    root, spec_path, single = setup
    done = torchrun(spec_path, root / parallel, f"train.parallel={parallel}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 steps") == 1  # rank 0 alone prints
    two = root / parallel / "tiny"
    one = single.run_dir
    assert (two / "samples" / "step-00000004.png").exists()  # rank 0 wrote the EMA grid (FSDP2: gathered)

    # same weights, EMA and optimizer moments after 2 and 4 steps; same logged losses
    for step in (2, 4):
        assert_close_groups(checkpoint(two, step), checkpoint(one, step))
    two_losses = [r["loss"] for r in read_jsonl(two / "metrics.jsonl") if "loss" in r]
    assert two_losses == pytest.approx(single.state.history, rel=1e-5)

    # saved on 2 ranks at step 2, resumed on 1: the loss trace continues as the 1-process run's
    resumed_dir = root / f"{parallel}-resumed" / "tiny"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt.step_dir(two / "checkpoints", 2), ckpt.step_dir(resumed_dir / "checkpoints", 2))
    resumed = train_run(Experiment(ExperimentSpec.model_validate(SPEC)), resumed_dir, resume=True)
    assert resumed.state.history == pytest.approx(single.state.history[2:], rel=1e-5)
    assert_close_groups(checkpoint(resumed_dir, 4), checkpoint(one, 4))


REPA_SPEC = {**SPEC, "name": "tiny-repa",
             "losses": {**SPEC["losses"], "terms": [*SPEC["losses"]["terms"], {
                 "name": "repa", "encoder": {"name": "digits_ssl", "weights": "random"}, "depth": 1, "projector_dim": 16,
                 "cache_features": True}]}}


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_an_alignment_head_trains_on_two_ranks_as_on_one(tmp_path, parallel):
    """The repa projector is a head on the denoiser: the ranks all-reduce its gradients with the
    network's, so two ranks give one process's weights, head included, and its checkpoints."""
    spec_path = tmp_path / "tiny-repa.json"
    spec_path.write_text(json.dumps(REPA_SPEC))
    single = train_run(Experiment(ExperimentSpec.model_validate(REPA_SPEC)), tmp_path / "one" / "tiny-repa")
    done = torchrun(spec_path, tmp_path / parallel, f"train.parallel={parallel}")
    assert done.returncode == 0, done.stderr[-3000:]
    two, one = tmp_path / parallel / "tiny-repa", single.run_dir
    for step in (2, 4):
        got, want = checkpoint(two, step), checkpoint(one, step)
        assert any(name.startswith("heads.repa.") for name in want.tensors["model"])
        assert_close_groups(got, want)
    two_losses = [r["parts"]["repa"] for r in read_jsonl(two / "metrics.jsonl") if "parts" in r]
    one_losses = [r["parts"]["repa"] for r in read_jsonl(one / "metrics.jsonl") if "parts" in r]
    assert two_losses == pytest.approx(one_losses, rel=1e-5) and all(value < 0 for value in one_losses)
