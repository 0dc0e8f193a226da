"""--dry-run quotes training compute at the expected mask ratio, with the range of the schedule."""

import json
from pathlib import Path

from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, load_spec_dict
from maskdit.app.summary import summarize
from maskdit.core.flops import training_flops
from maskdit.losses import build_noise
from maskdit.masking.expected import estimate_ratio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-noise-adaptive-masking.json"


def _giga(value: int) -> str:
    return f"{value / 1e9:.3g} G"


def test_noise_adaptive_flops_are_quoted_at_the_expected_ratio_with_the_range():
    spec = ExperimentSpec.model_validate(json.loads(EXAMPLE.read_text()))
    experiment = Experiment(spec)
    rows = dict(summarize(experiment))
    estimate = estimate_ratio(experiment.masking(), spec.model.num_tokens, noise=build_noise(spec.losses.noise),
                              batch_size=spec.train.batch_size // spec.train.grad_accumulation,
                              total_steps=spec.train.total_steps)
    expected = round(estimate.mean, 3)
    assert 0.4 < expected < 0.6  # the example's ramp is centred on the training noise levels
    assert rows["train FLOPs"].startswith(f"{_giga(training_flops(spec.model, mask_ratio=expected))} MACs/sample/step "
                                          f"at r = {expected:g} vs")
    assert "r = 0.75" not in rows["train FLOPs"]  # not at the schedule's upper bound
    low, high = training_flops(spec.model, mask_ratio=0.75), training_flops(spec.model, mask_ratio=0.25)
    assert rows["train FLOPs range"].startswith(f"{_giga(low)} (r = 0.75) to {_giga(high)} (r = 0.25)")
    assert f"expected {estimate.mean:.3f}" in rows["masking"] and "seed 0" in rows["masking"]


def test_a_constant_ratio_is_quoted_as_before():
    rows = dict(summarize(Experiment(ExperimentSpec.model_validate(load_spec_dict("maskdit-demo")))))
    assert " at r = 0.5 vs " in rows["train FLOPs"]
    assert "train FLOPs range" not in rows and "expected" not in rows["masking"]
    assert rows["masking"] == "random: up to r = 0.5, encoder sees >= 32 of 64 tokens (step 0 draw: 32)"
