"""Experiment: the one place a spec becomes parts (objective per phase, loss, sampler, metrics, record)."""

from typing import Any, Literal

import pytest
import torch

from maskdit.app.evaluation import evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, load_spec
from maskdit.config.registry import register, registry
from maskdit.config.spec_model import SpecModel
from maskdit.masking import NoMasking, RandomMasking
from maskdit.train.phases import phases_of
from tests.losses.toys import TinyMaskedDenoiser

MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 32, "num_heads": 2,
         "decoder_depth": 1, "decoder_hidden_size": 16, "decoder_num_heads": 2, "num_classes": 10}


class Recorder(torch.nn.Module):
    """A denoiser that records the labels it was given and predicts zeros."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def forward(self, x, sigma, *, labels=None, mask=None):
        self.labels.append(labels)
        return torch.zeros_like(x)


def test_the_maskdit_presets_objective_draws_and_scores():
    spec = load_spec("maskdit-demo")
    objective = Experiment(spec).objective()
    assert objective.patch_size == spec.model.patch_size and objective.num_classes == spec.model.num_classes
    size = spec.model.input_size
    y = torch.randn(2, spec.model.in_channels, size, size)
    model = TinyMaskedDenoiser(channels=spec.model.in_channels, patch=spec.model.patch_size,
                               num_classes=spec.model.num_classes)
    out = objective(model, y, torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0), step=0)
    assert out.total.shape == (2,) and set(out.parts) == {"dsm", "mae"}


def test_each_phase_gets_its_masking_and_terms_else_the_experiments():
    experiment = Experiment(load_spec("maskdit-demo"))  # phases: masked (the experiment's), unmasking (its own)
    masked, unmasking = (experiment.objective(phase.spec) for phase in phases_of(experiment.spec.train))
    assert isinstance(masked.masking, RandomMasking) and [t.name for t in masked.terms] == ["dsm", "mae"]
    assert isinstance(unmasking.masking, NoMasking) and [t.name for t in unmasking.terms] == ["dsm"]
    assert isinstance(experiment.masking(), RandomMasking)


def test_the_trainer_is_given_one_objective_per_phase_by_name():
    experiment = Experiment(load_spec("maskdit-demo"))
    objectives = experiment.objectives()
    assert list(objectives) == [phase.name for phase in phases_of(experiment.spec.train)] == ["masked", "unmasking"]
    assert isinstance(objectives["masked"].masking, RandomMasking)
    assert isinstance(objectives["unmasking"].masking, NoMasking)
    trainer = experiment.trainer("unused", model=torch.nn.Linear(1, 1), dataset=[(None, 0)] * 64)
    assert trainer.objectives.keys() == objectives.keys()


@pytest.mark.parametrize("num_classes", [0, 10])
def test_the_trainers_loss_passes_labels_only_to_a_class_conditional_model(num_classes):
    spec = ExperimentSpec.model_validate({"model": {**MODEL, "num_classes": num_classes}, "sampler": {"name": "heun"},
                                          "train": {"steps": 1, "batch_size": 4}})
    experiment = Experiment(spec)
    loss = experiment.objectives()[phases_of(spec.train)[0].name]
    model, labels = Recorder(), torch.tensor([1, 2, 3, 4])
    loss(model, torch.randn(4, 1, 32, 32), labels, step=0, generator=torch.Generator().manual_seed(0))
    assert (model.labels[0] is None) == (num_classes == 0)
    assert ("class_accuracy" in experiment.metrics) == (num_classes > 0)  # needs classes to score
    assert experiment.sampler.null_label == (num_classes or None)


class EveryOtherMaskingSpec(SpecModel):
    """A plugin from outside the package (this test module), registered by the fixture."""

    name: Literal["every_other_test"] = "every_other_test"

    def build(self, **context: Any):
        return RandomMasking(0.5)


@pytest.fixture
def outside_plugin():
    register("masking")(EveryOtherMaskingSpec)
    yield "tests.test_experiment"
    registry("masking").remove("every_other_test")


def test_the_run_record_names_the_plugin_modules_a_spec_uses(outside_plugin):
    plain = Experiment(load_spec("default")).run_record
    assert plain["plugins"] == [] and plain["spec"] == load_spec("default").model_dump(mode="json")
    data = {**load_spec("default").model_dump(mode="json"), "masking": {"name": "every_other_test"}}
    assert Experiment(ExperimentSpec.model_validate(data)).run_record["plugins"] == [outside_plugin]


def test_only_specs_make_experiments_and_evaluations_take_experiments():
    with pytest.raises(TypeError, match="takes an ExperimentSpec"):
        Experiment({"model": MODEL})
    with pytest.raises(TypeError, match=r"takes an Experiment \(maskdit.Experiment\(spec\)\)"):
        evaluate_denoiser(Recorder(), load_spec("default"))
