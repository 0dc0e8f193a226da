"""Flow matching's losses through the sigma-space objective: the v-MSE and LightningDiT's cosine are
exactly what SiT / REPA / LightningDiT compute on the network's velocity; the ideal denoiser of
Gaussian data minimises the v-MSE at its closed-form value; bad process / noise pairs are spec errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.core import FlowDenoiser, ModelSpec
from maskdit.core.layers import FinalLayer
from maskdit.losses import DSMLoss, LossInputs, Objective, VelocityCosineLoss, WeightedTerm
from maskdit.processes import UniformTimeNoise, interpolate, sigma_to_t, velocity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class FixedVelocity(nn.Module):
    """A network whose output is a fixed tensor (the 'velocity' it predicts), recording its inputs."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.final_layer = FinalLayer(4, 4)
        self.calls = []

    def forward(self, x, time, labels=None, mask=None):
        self.calls.append((x, time))
        return self.out


def flow_model(convention, out):
    spec = ModelSpec(input_size=8, in_channels=3, patch_size=2, depth=1, hidden_size=16, num_heads=2,
                     decoder_depth=0, num_classes=0, process={"name": "flow", "convention": convention})
    return FlowDenoiser(FixedVelocity(out), spec, convention=convention)


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_v_weighted_dsm_is_the_velocity_mse_of_the_network(convention):
    g = torch.Generator().manual_seed(0)
    y, eps = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 3, 8, 8, generator=g,
                                                                                   dtype=torch.float64)
    v_hat = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 3.0, 200.0], dtype=torch.float64)
    objective = Objective([WeightedTerm("dsm", 1.0, DSMLoss(weighting="v")),
                           WeightedTerm("velocity_cosine", 1.0, VelocityCosineLoss())], UniformTimeNoise())
    model = flow_model(convention, v_hat)
    out = objective(model, y, sigma=sigma, noise=eps)
    target = velocity(y, eps, convention)
    expected_mse = (v_hat - target).square().flatten(1).mean(1)  # SiT's mean_flat((v_hat - v)^2)
    torch.testing.assert_close(out.parts["dsm"], expected_mse, rtol=1e-9, atol=1e-9)
    cosine = torch.nn.functional.cosine_similarity(v_hat, target, dim=1)  # LightningDiT: over channels
    torch.testing.assert_close(out.parts["velocity_cosine"], (1 - cosine).flatten(1).mean(1), rtol=1e-9, atol=1e-9)
    # the network was fed the interpolant at its own time (in its float32)
    (net_input, fed_time), = model.net.calls
    t = sigma_to_t(sigma, convention)
    torch.testing.assert_close(net_input.double(), interpolate(y, eps, t, convention), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fed_time.double(), t, rtol=1e-6, atol=0)


def test_eps_weighting_is_the_noise_mse():
    g = torch.Generator().manual_seed(1)
    y, eps, eps_hat = (torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    noisy = y + sigma.view(-1, 1, 1, 1) * eps
    denoised = noisy - sigma.view(-1, 1, 1, 1) * eps_hat  # D of a network that predicts eps_hat
    loss = DSMLoss(weighting="eps")(LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=denoised))
    torch.testing.assert_close(loss, (eps_hat - eps).square().flatten(1).mean(1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_the_ideal_denoiser_of_gaussian_data_minimises_the_v_mse_at_its_closed_form_value(sigma):
    """y ~ N(mu, s^2): D*(x) = mu + s^2 / (s^2 + sigma^2) (x - mu), E|D* - y|^2 = s^2 sigma^2 / (s^2 + sigma^2)."""
    mu, s, n = 0.7, 0.5, 200_000
    g = torch.Generator().manual_seed(2)
    y = mu + s * torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float64)
    noisy = y + sigma * torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float64)
    sigmas = torch.full((n,), sigma, dtype=torch.float64)
    gain = s**2 / (s**2 + sigma**2)
    loss = DSMLoss(weighting="v")

    def expected_loss(k):
        return float(loss(LossInputs(y=y, noisy=noisy, sigma=sigmas, denoised=mu + k * (noisy - mu))).mean())

    ideal = expected_loss(gain)
    closed_form = ((1 + sigma) / sigma) ** 2 * s**2 * sigma**2 / (s**2 + sigma**2)
    assert ideal == pytest.approx(closed_form, rel=0.02)
    assert ideal < expected_loss(gain * 0.9) and ideal < expected_loss(gain * 1.1)


def _spec(**changes):
    data = json.loads((EXAMPLES / "digits-dit.json").read_text())
    for path, value in changes.items():
        section, field = path.split(".")
        data[section][field] = value
    return data


@pytest.mark.parametrize("process, noise, fragment", [
    ({"name": "vp"}, {"name": "uniform_t"}, "does not fit model.process 'vp'"),
    ({"name": "vp"}, {"name": "logit_normal_t"}, "does not fit model.process 'vp'"),
    ({"name": "edm"}, {"name": "logit_normal_t", "shift": 3.0}, "time shift"),
    ({"name": "flow"}, {"name": "ddpm"}, "does not fit model.process 'flow'"),
])
def test_bad_process_and_noise_pairs_are_spec_errors_naming_both(process, noise, fragment):
    with pytest.raises(ValidationError, match=fragment) as err:
        ExperimentSpec.model_validate(_spec(**{"model.process": process, "losses.noise": noise}))
    assert "losses.noise" in str(err.value) and "model.process" in str(err.value)


def test_sensible_pairs_validate():
    for process, noise in (({"name": "flow"}, {"name": "logit_normal_t", "shift": 3.0}),
                           ({"name": "flow", "convention": "sit"}, {"name": "uniform_t"}),
                           ({"name": "edm"}, {"name": "logit_normal_t"}),
                           ({"name": "vp"}, {"name": "ddpm"})):
        ExperimentSpec.model_validate(_spec(**{"model.process": process, "losses.noise": noise}))
