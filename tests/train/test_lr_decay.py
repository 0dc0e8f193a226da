"""Learning-rate decay over the end of a phase: the schedule's values, and the trainer using them."""

import math

import pytest
from pydantic import ValidationError

from maskdit.train.phases import decay_factor, learning_rate, phase_at, phases_of
from maskdit.train.specs import LRDecaySpec, TrainSpec
from tests.train.test_loop import denoise_loss, record_lrs, trainer


def lrs_of(train: TrainSpec) -> list[float]:
    phases = phases_of(train)
    return [learning_rate(train, phase_at(phases, step), step) for step in range(train.total_steps)]


def test_linear_decay_over_the_whole_phase_ends_at_final():
    train = TrainSpec(steps=4, lr=1.0, lr_decay={"shape": "linear", "final": 0.2})
    assert lrs_of(train) == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_warmup_stable_decay_holds_the_lr_then_cools_down():
    train = TrainSpec(steps=10, lr=0.2, lr_decay={"fraction": 0.3})  # the last 3 steps decay (0.3 x 10 > 3 in floats)
    assert lrs_of(train) == pytest.approx([0.2] * 7 + [0.2 * 2 / 3, 0.2 / 3, 0.0])


def test_cosine_decay_is_half_a_cosine():
    spec = LRDecaySpec(shape="cosine")
    factors = [decay_factor(spec, i, 8) for i in range(8)]
    assert factors == pytest.approx([0.5 * (1 + math.cos(math.pi * (i + 1) / 8)) for i in range(8)])
    assert factors[3] == pytest.approx(0.5) and factors[-1] == pytest.approx(0.0)


def test_each_phase_decays_from_its_own_lr_and_a_phase_can_override():
    phases = [{"name": "a", "steps": 4},
              {"name": "b", "steps": 2, "lr": 0.5, "lr_decay": {"final": 1.0}}]  # b: constant
    train = TrainSpec(phases=phases, lr=1.0, lr_decay={"fraction": 0.5})
    assert lrs_of(train) == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.5, 0.5])
    train = TrainSpec(phases=[{"name": "a", "steps": 2}, {"name": "b", "steps": 2, "lr_decay": {}}], lr=1.0)
    assert lrs_of(train) == pytest.approx([1.0, 1.0, 0.5, 0.0])  # only b decays


def test_warmup_multiplies_the_decayed_lr():
    train = TrainSpec(steps=4, lr=1.0, warmup_steps=2, lr_decay={})
    assert lrs_of(train) == pytest.approx([0.75 * 0.5, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("bad", [{"fraction": 0}, {"fraction": 1.5}, {"final": -0.1}, {"final": 2},
                                 {"shape": "step"}, {"rate": 0.5}])
def test_bad_decay_is_refused_by_field(bad):
    with pytest.raises(ValidationError) as info:
        TrainSpec(steps=4, lr_decay=bad)
    assert "lr_decay" in str(info.value)


def test_trainer_sets_the_decayed_lr_on_the_optimizer(tmp_path):
    t = trainer(tmp_path, denoise_loss(), steps=4, lr=1e-2, lr_decay={"final": 0.5})
    seen = record_lrs(t)
    t.fit()
    assert seen == pytest.approx([1e-2 * f for f in (0.875, 0.75, 0.625, 0.5)])


def test_dry_run_summary_names_each_decay():
    from maskdit.app.experiment import Experiment
    from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict
    from maskdit.app.summary import summarize

    data = apply_overrides(load_spec_dict("maskdit-demo"), ['train.phases.1.lr_decay={"shape": "cosine"}'])
    rows = dict(summarize(Experiment(ExperimentSpec.model_validate(data))))
    assert "unmasking 300 cosine lr decay to 0x over the last 100%" in rows["train"]
    assert "in each phase" not in rows["train"]
