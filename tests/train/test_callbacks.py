"""The Trainer is given each phase's objective and typed callbacks: what it calls, when, with what."""

import json

import pytest
import torch

from maskdit.io import checkpoint as ckpt
from maskdit.train.callbacks import Callbacks, Every, StepResult
from maskdit.train.loop import Trainer
from tests.train.test_loop import ToyData, ToyNet, denoise_loss, make_spec

PHASES = [{"name": "first", "steps": 4}, {"name": "second", "steps": 3, "lr": 0.001}]


def toy_trainer(tmp_path, objectives, callbacks=None, **train):
    torch.manual_seed(0)  # only the toy net's init uses the global RNG
    spec = make_spec(**{"steps": None, "phases": PHASES, "log_every": 1, "checkpoint_every": 3,
                        "keep_checkpoints": 10, **train})
    return Trainer(spec.train, ToyNet(), ToyData(), objectives, tmp_path / "run", seed=spec.seed,
                   callbacks=callbacks)


def test_each_phase_trains_on_its_own_objective(tmp_path):
    calls = []

    def spy(name, objective):
        def call(*args, **kwargs):
            calls.append((name, kwargs["step"]))
            return objective(*args, **kwargs)

        return call

    objectives = denoise_loss(phases=("first", "second"))
    toy_trainer(tmp_path, {name: spy(name, objective) for name, objective in objectives.items()}).fit()
    assert calls == [("first", s) for s in range(4)] + [("second", s) for s in range(4, 7)]


def test_objectives_must_name_every_phase_and_return_an_objective_output(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['second'\], unknown \['third'\]"):
        toy_trainer(tmp_path, denoise_loss(phases=("first", "third")))
    bad = {"first": lambda *a, **k: (torch.ones(8),), "second": lambda *a, **k: None}
    with pytest.raises(TypeError, match="returns an ObjectiveOutput, got tuple"):
        toy_trainer(tmp_path, bad).fit()


def test_on_step_gets_a_named_record_of_every_step_matching_the_metrics_lines(tmp_path):
    seen: list[StepResult] = []
    t = toy_trainer(tmp_path, denoise_loss(nan_at={5}, phases=("first", "second")),
                    Callbacks(on_step=[seen.append]))
    t.fit()
    assert [r.step for r in seen] == list(range(1, 8))
    assert [r.phase for r in seen] == ["first"] * 4 + ["second"] * 3
    assert [r.skipped for r in seen] == [False] * 5 + [True, False] and seen[-1].total_skipped == 1
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {line["step"]: line for line in lines if "loss" in line}
    for result in seen:
        if result.skipped:
            continue
        line = logged[result.step]
        assert (line["loss"], line["parts"], line["lr"], line["grad_norm"], line["mask_ratio"]) == (
            result.loss, result.parts, result.lr, result.grad_norm, result.mask_ratio)
    assert seen[5].parts == {} and seen[5].loss != seen[5].loss  # NaN
    assert [r.lr for r in seen[4:]] == [0.001] * 3


def test_every_n_hook_gets_the_ema_weights_of_its_step_and_checkpoints_are_announced(tmp_path):
    points, saved = {}, []

    def at(step, model):
        assert not model.training
        points[step] = {k: v.clone() for k, v in model.state_dict().items()}

    callbacks = Callbacks(on_evaluation=[Every(3, at)], on_checkpoint=[lambda step, path: saved.append((step, path))])
    t = toy_trainer(tmp_path, denoise_loss(phases=("first", "second")), callbacks)
    t.fit()
    root = tmp_path / "run" / "checkpoints"
    assert saved == [(3, ckpt.step_dir(root, 3)), (6, ckpt.step_dir(root, 6)), (7, ckpt.step_dir(root, 7))]
    assert sorted(points) == [3, 6]
    for step in (3, 6):
        ema = ckpt.load_checkpoint(ckpt.step_dir(root, step)).tensors["ema"]
        for name, value in ema.items():
            assert torch.equal(points[step][name].float(), value), (step, name)


def test_callbacks_are_checked_when_made():
    with pytest.raises(ValueError, match="steps >= 1"):
        Every(0, lambda step, model: None)
    with pytest.raises(TypeError, match="Every"):
        Callbacks(on_evaluation=[lambda step, model: None])
    with pytest.raises(TypeError, match="callables"):
        Callbacks(on_step=[3])
