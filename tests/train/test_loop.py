"""Training engine on a toy problem: resume exactness, atomic saves, non-finite skips, phases."""

import json
import math

import pytest
import torch
from torch import nn

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.io import checkpoint as ckpt
from maskdit.losses import ObjectiveOutput
from maskdit.train.loop import NonFiniteError, Trainer

MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 4, "depth": 1, "hidden_size": 8, "num_heads": 1,
         "decoder_depth": 0, "num_classes": 10}


class ToyData:
    def __init__(self, n=48):
        gen = torch.Generator().manual_seed(5)
        self.images = torch.randn(n, 1, 4, 4, generator=gen)
        self.labels = torch.randint(0, 10, (n,), generator=gen)

    def __len__(self):
        return len(self.labels)


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 16))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        return self.net(x).view_as(x)


def denoise_loss(nan_at=(), interrupt_at=None, record=None, phases=("train",)):
    """Denoise with noise from the trainer's generator, so the RNG state matters for resume: the
    objective of each phase in ``phases``; ``record`` receives a phase's name at its first call."""

    def for_phase(name):
        def loss(model, images, labels, *, step, generator):
            if record is not None and name not in record:
                record.append(name)
            if step == interrupt_at:
                raise KeyboardInterrupt
            noise = torch.randn(images.shape, generator=generator)
            err = (model(images + 0.5 * noise) - images).pow(2).flatten(1).mean(1)
            if step in nan_at:
                err = err * float("nan")
            return ObjectiveOutput(total=err, parts={"mse": err}, sigma=torch.full_like(err, 0.5), mask=None,
                                   labels=None)

        return loss

    return {name: for_phase(name) for name in phases}


def make_spec(**train):
    base = {"steps": 12, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 4, "log_every": 2, "keep_checkpoints": 2,
            "ema": {"decay": 0.9}}
    return ExperimentSpec.model_validate({"name": "toy", "seed": 3, "model": MODEL, "masking": {"name": "none"},
                                          "losses": {"terms": [{"name": "dsm"}]}, "train": {**base, **train}})


def trainer(tmp_path, objectives, **train):
    torch.manual_seed(0)  # only the toy net's init uses the global RNG; the library never does
    spec = make_spec(**train)
    return Trainer(spec.train, ToyNet(), ToyData(), objectives, tmp_path / "run", seed=spec.seed)


def record_lrs(t: Trainer) -> list[float]:
    """The list that receives the optimizer's lr at each of ``t``'s steps, as the step sees it."""
    lrs = []
    original = t._step

    def spy(phase, step):
        lrs.append(t.optimizer.param_groups[0]["lr"])
        return original(phase, step)

    t._step = spy
    return lrs


def test_loss_decreases_and_outputs_exist(tmp_path):
    t = trainer(tmp_path, denoise_loss(), steps=40, checkpoint_every=20)
    state = t.fit()
    assert state.step == 40 and state.skipped == 0
    assert sum(state.history[-5:]) < 0.7 * sum(state.history[:5])
    assert (tmp_path / "run" / "metrics.jsonl").exists() and (tmp_path / "run" / "loss.png").exists()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-00000020", "step-00000040"]


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    full = trainer(tmp_path / "a", denoise_loss())
    full_state = full.fit()

    interrupted = trainer(tmp_path / "b", denoise_loss(interrupt_at=9))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in step 10's forward: a checkpoint of step 9
        interrupted.fit()
    assert ckpt.latest_checkpoint(tmp_path / "b" / "run" / "checkpoints").name == "step-00000009"

    resumed = trainer(tmp_path / "b", denoise_loss())
    info = resumed.resume()
    assert info and info.step == 9 and info.rejected == ()
    assert resumed.state.step == 9
    state = resumed.fit()
    assert state.history == full_state.history[9:]  # bit-exact loss trace: the interrupted draws were undone
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in full.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[name]), name


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    t = trainer(tmp_path, denoise_loss(), steps=8)
    t.fit()
    root = tmp_path / "run" / "checkpoints"
    before = ckpt.latest_checkpoint(root)

    def broken_save(tensors, filename):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 10)  # a partial file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", broken_save)
    t.state.step = 12
    with pytest.raises(ckpt.CheckpointError, match="No space left on device"):
        t.save()
    assert ckpt.latest_checkpoint(root) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
    loaded = ckpt.load_checkpoint(before)
    assert loaded.state["step"] == 8 and "net.1.weight" in loaded.tensors["model"]


def test_nonfinite_step_is_skipped_and_never_reaches_weights(tmp_path):
    t = trainer(tmp_path, denoise_loss(nan_at={3}), steps=6)
    snapshots = {}
    original = t._step

    def spy(phase, step):
        snapshots[step] = {k: v.clone() for k, v in t.model.state_dict().items()}
        ema = {k: v.clone() for k, v in t.ema.state_dict().items()}
        out = original(phase, step)
        if step == 3:
            snapshots["after"] = t.model.state_dict()
            snapshots["ema_same"] = all(torch.equal(ema[k], v) for k, v in t.ema.state_dict().items())
        return out

    t._step = spy
    state = t.fit()
    assert state.skipped == 1 and state.step == 6
    assert all(torch.equal(snapshots[3][k], snapshots[4][k]) for k in snapshots[3])
    assert snapshots["ema_same"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "skipped_nonfinite" in lines
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert saved.state["skipped"] == 1
    assert all(torch.isfinite(v).all() for v in saved.tensors["model"].values())


def test_consecutive_nonfinite_steps_stop_the_run(tmp_path):
    t = trainer(tmp_path, denoise_loss(nan_at=set(range(2, 100))), steps=20, max_consecutive_skips=3)
    with pytest.raises(NonFiniteError, match="3 consecutive steps"):
        t.fit()
    assert t.state.step == 4 and t.state.skipped == 3  # steps 2, 3, 4 were skipped; 4 raised


def test_phases_switch_loss_and_lr_at_the_right_step(tmp_path):
    seen = []
    phases = [{"name": "masked", "steps": 5, "masking": {"name": "random", "ratio": 0.5}},
              {"name": "unmask", "steps": 3, "masking": {"name": "none"}, "lr": 0.001}]
    t = trainer(tmp_path, denoise_loss(record=seen, phases=("masked", "unmask")), steps=None, phases=phases,
                log_every=1, warmup_steps=2)
    lrs = record_lrs(t)
    t.fit()
    assert seen == ["masked", "unmask"]
    assert lrs == pytest.approx([0.005, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001])
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert saved.state["phase"] == "unmask"


def test_unwritable_run_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    t = Trainer(make_spec().train, ToyNet(), ToyData(), denoise_loss(), blocker / "run", seed=3)
    with pytest.raises(ckpt.CheckpointError, match="not writable"):
        t.check_outputs()


def test_corrupt_checkpoint_is_refused(tmp_path):
    t = trainer(tmp_path, denoise_loss(), steps=4)
    t.fit()
    path = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    (path / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="tensors.safetensors fails its SHA-256 check"):
        ckpt.load_checkpoint(path)
    (path / "state.json").write_text("{")
    with pytest.raises(ckpt.CheckpointError, match="state.json"):
        ckpt.load_checkpoint(path)


def test_loss_values_reach_the_host_once_per_optimizer_step(tmp_path, monkeypatch):
    """However many micro-batches a step accumulates, its loss and parts are read back once
    (the optimizer's own reads of its step counts are not the loop's)."""
    t = trainer(tmp_path, denoise_loss(), steps=3, grad_accumulation=4, log_every=1)
    reads, counting = [], [False]
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads.extend([1] if counting[0] else [])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def counting_while(function, on):
        def call(*args, **kwargs):
            before, counting[0] = counting[0], on
            try:
                return function(*args, **kwargs)
            finally:
                counting[0] = before
        return call

    t._step, t.optimizer.step = counting_while(t._step, True), counting_while(t.optimizer.step, False)
    state = t.fit()
    assert state.step == 3 and len(reads) == 3
    logged = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())]
    assert logged == state.history and all(math.isfinite(value) for value in logged)
