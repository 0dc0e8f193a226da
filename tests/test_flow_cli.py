"""Flow matching through the application: a flow model's sampler follows its process (the
uniform_t grid from pure noise), ``python -m maskdit.sample`` runs every flow sampler on a flow
checkpoint and reports dopri5's network evaluations, and a pure-noise grid is refused for EDM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from maskdit.app.commands.sample import main as sample_main
from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.core import ModelSpec, build_denoiser
from maskdit.interop import save_native

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = dict(input_size=8, in_channels=1, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=0,
            num_classes=3, label_embedder="table")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def test_a_flow_models_sampler_defaults_to_the_flows_time_grid():
    flow = ExperimentSpec.model_validate(example("digits-flow"))
    assert flow.sampler.name == "euler" and flow.sampler.schedule.name == "uniform_t"
    assert flow.sampler.sigma_max == float("inf")  # SiT's grid starts at pure noise
    edm = ExperimentSpec.model_validate(example("digits-dit"))
    assert edm.sampler.schedule.name == "karras"  # unchanged for EDM
    sit = ExperimentSpec.model_validate({"model": {"preset": "SiT-S/4", "input_size": 32, "in_channels": 1,
                                                   "num_classes": 10}, "data": {"name": "mnist5k", "resolution": 32},
                                         "masking": {"name": "none"},
                                         "losses": {"terms": [{"name": "dsm", "weighting": "v"}],
                                                    "noise": {"name": "uniform_t"}}})
    assert sit.sampler.name == "heun" and sit.sampler.schedule.name == "uniform_t"  # the default section too
    given = example("digits-flow")
    given["sampler"]["schedule"] = {"name": "karras"}
    assert ExperimentSpec.model_validate(given).sampler.schedule.name == "karras"  # a given grid stays


def test_a_pure_noise_grid_is_refused_for_an_edm_model():
    data = example("digits-dit")
    data["sampler"]["schedule"] = {"name": "uniform_t"}
    with pytest.raises(ValidationError, match="starts at pure noise"):
        ExperimentSpec.model_validate(data)
    data["sampler"]["schedule"] = {"name": "uniform_t", "t_max": 0.99}
    assert ExperimentSpec.model_validate(data).sampler.sigma_max == pytest.approx(99.0)


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory):
    spec = ModelSpec(**TINY, process={"name": "flow", "convention": "sit"})
    model = build_denoiser(spec, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero output layers, so the samples depend on the weights
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return save_native(model, tmp_path_factory.mktemp("flow") / "tiny")


@pytest.mark.parametrize("sampler, steps", [("euler", 4), ("heun", 3), ("dopri5", None), ("euler_maruyama", 5)])
def test_sample_runs_each_flow_sampler_on_a_flow_checkpoint(tmp_path, flow_checkpoint, capsys, sampler, steps):
    args = [str(flow_checkpoint), "--sampler", sampler, "--n", "4", "--batch-size", "2", "--out",
            str(tmp_path / "grid.png"), "--no-progress"] + ([] if steps is None else ["--steps", str(steps)])
    assert sample_main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "grid.png").is_file()
    if sampler == "dopri5":
        assert "adaptive" in out and "denoiser calls per batch" in out and "None" not in out
    else:
        assert f"with {sampler}, {steps} steps" in out


def test_sample_picks_the_flow_grid_for_a_flow_checkpoint_without_a_spec(tmp_path, flow_checkpoint, capsys):
    assert sample_main([str(flow_checkpoint), "--n", "2", "--steps", "3", "--out", str(tmp_path / "g.png"),
                        "--no-progress"]) == 0
    assert "with heun, 3 steps (6 denoiser calls each)" in capsys.readouterr().out  # heun2 corrects every step


def test_an_eps_flow_model_is_never_sampled_from_pure_noise():
    """An eps-prediction flow model has no velocity at pure noise: its default sampler keeps the sigma
    schedule, and a grid from pure noise is a spec error naming the prediction, not a crash after training."""
    data = example("digits-flow")
    data["model"]["process"]["prediction"] = "eps"
    spec = ExperimentSpec.model_validate(data)
    assert spec.sampler.schedule.name == "karras" and spec.sampler.sigma_max < float("inf")
    for sampler in ({"name": "euler", "schedule": {"name": "uniform_t"}}, {"name": "dopri5"},
                    {"name": "euler_maruyama"}):
        data["sampler"] = sampler
        with pytest.raises(ValidationError, match="starts at pure noise.*prediction 'eps'.*t_max below 1"):
            ExperimentSpec.model_validate(data)
    data["sampler"] = {"name": "euler_maruyama", "schedule": {"name": "uniform_t", "t_max": 0.99}}
    assert ExperimentSpec.model_validate(data).sampler.sigma_max == pytest.approx(99.0)


@pytest.mark.parametrize("process", [{"name": "edm"}, {"name": "vp"}, {"name": "flow", "prediction": "eps"}])
@pytest.mark.parametrize("sampler", ["dopri5", "euler_maruyama"])
def test_sample_refuses_a_pure_noise_grid_for_a_model_with_no_value_there(tmp_path, capsys, process, sampler):
    path = save_native(build_denoiser(ModelSpec(**TINY, process=process), seed=0), tmp_path / "tiny")
    args = [str(path), "--sampler", sampler, "--n", "2", "--steps", "3", "--out", str(tmp_path / "g.png"),
            "--no-progress"]
    assert sample_main(args) == 2  # a bad input, told before sampling starts
    captured = capsys.readouterr()
    assert "starts at pure noise" in captured.err and "t_max" in captured.err and "sampling " not in captured.out
    below = ["--set", 'sampler.schedule={"name": "uniform_t", "t_max": 0.99}']
    assert sample_main(args + below) == 0 and (tmp_path / "g.png").is_file()
    if process["name"] == "flow":  # its default sampler keeps the sigma schedule
        assert sample_main(args[:1] + args[3:]) == 0
