"""The flow-matching wrapper: sigma-space denoiser and velocity field, both conventions, every
parameterisation, on a stand-in network with known output and on the real backbone."""

import pytest
import torch

from maskdit.core import FlowDenoiser, ModelSpec, build_denoiser
from maskdit.core.layers import FinalLayer
from maskdit.processes import interpolate, sigma_to_t, t_to_sigma, v_to_x0, velocity

from .helpers import Recorder, random_mask, randomize_, tiny_spec

FLOW = {"name": "flow", "convention": "sit"}


def wrapper(convention, prediction, out):
    spec = tiny_spec(num_classes=0, process={"name": "flow", "convention": convention, "prediction": prediction})
    return FlowDenoiser(Recorder(out), spec, convention=convention, prediction=prediction)


@pytest.mark.parametrize("convention", ["sit", "repa"])
@pytest.mark.parametrize("prediction", ["v", "x0", "eps"])
def test_sigma_space_call_is_the_flow_prediction_mapped_to_x0(convention, prediction):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    denoiser = wrapper(convention, prediction, out)
    x0, eps = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 3, 8, 8, generator=g,
                                                                                    dtype=torch.float64)
    sigma = torch.tensor([0.05, 7.0], dtype=torch.float64)
    t = sigma_to_t(sigma, convention)
    d = denoiser(x0 + sigma.view(-1, 1, 1, 1) * eps, sigma, labels=torch.tensor([1, 5]))
    x_in, fed_time, labels, _ = denoiser.net.calls[0]
    x_t = interpolate(x0, eps, t, convention)
    torch.testing.assert_close(x_in.double(), x_t, rtol=1e-6, atol=1e-6)  # the network sees x_t (in float32)
    torch.testing.assert_close(fed_time.double(), t, rtol=1e-6, atol=0)  # and its own time t, as is
    assert labels.tolist() == [1, 5]
    noise_time = t if convention == "repa" else 1 - t
    if prediction == "v":
        expected = v_to_x0(x_t, out, t, convention)
    elif prediction == "x0":
        expected = out
    else:
        expected = (x_t - noise_time.view(-1, 1, 1, 1) * out) / (1 - noise_time.view(-1, 1, 1, 1))
    torch.testing.assert_close(d, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_a_perfect_velocity_gives_the_data_back_in_sigma_space(convention):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(3, 3, 8, 8, generator=g,
                                                                                    dtype=torch.float64)
    denoiser = wrapper(convention, "v", velocity(x0, eps, convention))
    sigma = torch.tensor([1e-3, 1.0, 1e3], dtype=torch.float64)
    torch.testing.assert_close(denoiser(x0 + sigma.view(-1, 1, 1, 1) * eps, sigma), x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_velocity_is_the_network_output_at_both_ends(convention):
    out = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    denoiser = wrapper(convention, "v", out)
    noise_end, data_end = (0.0, 1.0) if convention == "sit" else (1.0, 0.0)
    for t in (noise_end, data_end):
        v = denoiser.velocity(torch.randn(2, 3, 8, 8, dtype=torch.float64), t)
        assert torch.equal(v, out)
        assert denoiser.net.calls[-1][1].tolist() == [t, t]


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_x0_and_eps_models_give_the_velocity_where_it_exists_and_refuse_where_not(convention):
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 3, 8, 8, generator=g,
                                                                                    dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    x_t = interpolate(x0, eps, t, convention)
    target = velocity(x0, eps, convention)
    torch.testing.assert_close(wrapper(convention, "x0", x0).velocity(x_t, t), target)
    torch.testing.assert_close(wrapper(convention, "eps", eps).velocity(x_t, t), target)
    noise_end, data_end = (0.0, 1.0) if convention == "sit" else (1.0, 0.0)
    with pytest.raises(ValueError, match="data end"):
        wrapper(convention, "x0", x0).velocity(x_t, data_end)
    with pytest.raises(ValueError, match="pure noise"):
        wrapper(convention, "eps", eps).velocity(x_t, noise_end)
    # an eps model at the data end: v = eps - x0 with x0 = x_t there (REPA's sign)
    v = wrapper(convention, "eps", eps).velocity(x0, data_end)
    torch.testing.assert_close(v, velocity(x0, eps, convention))


def test_bad_times_and_sigmas_are_refused():
    denoiser = wrapper("sit", "v", torch.zeros(2, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    for t, match in ((1.5, r"\[0, 1\]"), (float("nan"), r"\[0, 1\]"), (torch.zeros(3), "shape"), (True, "number")):
        with pytest.raises((ValueError, TypeError), match=match):
            denoiser.velocity(x, t)
    with pytest.raises(ValueError, match="finite noise levels"):
        denoiser(x, torch.tensor([1.0, float("inf")]))  # pure noise goes through velocity(), not the sigma space


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_real_backbone_agrees_with_itself_in_both_views_and_under_a_mask(convention):
    spec = tiny_spec(process={"name": "flow", "convention": convention}, decoder_depth=0, learn_sigma=True,
                     label_embedder="table")
    denoiser = build_denoiser(spec, seed=3)
    randomize_(denoiser, seed=4)  # zero-init output layers would make every check trivial
    assert isinstance(denoiser, FlowDenoiser) and denoiser.precond == "flow"
    g = torch.Generator().manual_seed(5)
    x_t = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0.1, 0.4, 0.6, 0.95])
    labels = torch.tensor([0, 1, 2, 5])
    with torch.no_grad():
        v = denoiser.velocity(x_t, t, labels=labels)
        sigma = t_to_sigma(t, convention)
        d = denoiser(x_t * (1 + sigma).view(-1, 1, 1, 1), sigma, labels=labels)
    torch.testing.assert_close(d, v_to_x0(x_t, v, t, convention), rtol=1e-4, atol=1e-4)
    mask = random_mask(spec, 4, 0.5)
    with torch.no_grad():
        assert denoiser.velocity(x_t, t, labels=labels, mask=mask).shape == x_t.shape


def test_process_plugins_build_their_wrappers_and_read_older_specs():
    assert ModelSpec(precond="ddpm").process.name == "vp"
    assert ModelSpec(sigma_data=0.3).process.sigma_data == 0.3
    assert ModelSpec(precond="ddpm", sigma_data=0.5).precond == "ddpm"  # older saved specs hold both
    assert ModelSpec(process=FLOW).precond == "flow" and ModelSpec(process=FLOW).sigma_data is None
    assert ModelSpec(precond="edm", sigma_data=0.5) == ModelSpec()
    with pytest.raises(ValueError, match="contradicts"):
        ModelSpec(precond="ddpm", process=FLOW)
    with pytest.raises(ValueError, match="unknown precond"):
        ModelSpec(precond="velocity")
    with pytest.raises(ValueError, match="convention"):
        ModelSpec(process={"name": "flow", "convention": "rf"})


@pytest.mark.parametrize("fields, match", [
    ({"precond": ["edm"]}, "unknown precond"),
    ({"preset": ["SiT-S/2"]}, "unknown model preset"),
    ({"process": FLOW, "sigma_data": 0.7}, "sigma_data is EDM's"),
    ({"preset": "SiT-S/2", "sigma_data": 0.5}, "sigma_data is EDM's"),
])
def test_odd_legacy_fields_are_validation_errors_not_crashes(fields, match):
    with pytest.raises(ValueError, match=match):  # pydantic's ValidationError, not a TypeError traceback
        ModelSpec(**fields)
    assert ModelSpec(precond="ddpm", sigma_data=0.7).process.name == "vp"  # an old saved DDPM spec still reads


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_integer_times_at_the_ends_are_times(convention):
    out = torch.randn(2, 3, 8, 8)
    denoiser = wrapper(convention, "v", out)
    for t in (0, 1):  # velocity(x, 1): pure noise under 'repa', the data under 'sit'
        assert torch.equal(denoiser.velocity(torch.randn(2, 3, 8, 8), t), out)
        assert denoiser.net.calls[-1][1].tolist() == [float(t)] * 2
    with pytest.raises(TypeError, match="float tensor"):  # an integer tensor is still refused
        denoiser.velocity(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))


def test_reversed_vp_betas_are_a_spec_error():
    with pytest.raises(ValueError, match=r"beta_start \(0.02\) must not exceed beta_end"):
        ModelSpec(process={"name": "vp", "beta_start": 0.02, "beta_end": 1e-4})  # was: fine until the model is built
    assert ModelSpec(process={"name": "vp", "beta_start": 0.01, "beta_end": 0.01}).process.beta_end == 0.01


def test_a_presets_process_takes_the_fields_given_one_by_one():
    spec = ModelSpec(preset="SiT-S/2", process={"name": "flow", "prediction": "x0"})
    assert (spec.process.convention, spec.process.prediction) == ("sit", "x0")  # SiT's time kept
    assert ModelSpec(preset="SiT-S/2", process={"prediction": "eps"}).process.convention == "sit"
    assert ModelSpec(preset="SiT-S/2", process={"name": "edm"}).process.name == "edm"  # another process: replaced
