"""Preconditioning: EDM's formulas and the DDPM epsilon wrapper, on a stand-in network with known output."""

import math

import pytest
import torch

from maskdit.core import DDPMDenoiser, Denoiser, build_denoiser
from maskdit.core.layers import FinalLayer
from maskdit.processes import ddpm_alphas_cumprod

from .helpers import Recorder, random_mask, randomize_, tiny_spec


def test_edm_preconditioning_formulas():
    spec = tiny_spec(sigma_data=0.7)
    out = torch.randn(2, 3, 8, 8)
    net = Recorder(out)
    denoiser = Denoiser(net, spec)
    x = torch.randn(2, 3, 8, 8)
    sigma = torch.tensor([0.1, 5.0])
    d = denoiser(x, sigma, labels=torch.tensor([1, 5]))
    x_in, c_noise, labels, _ = net.calls[0]
    sd = 0.7
    for i, s in enumerate(sigma.tolist()):
        c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / math.sqrt(s**2 + sd**2), 1 / math.sqrt(s**2 + sd**2)
        torch.testing.assert_close(x_in[i], c_in * x[i])
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4)
        torch.testing.assert_close(d[i], c_skip * x[i] + c_out * out[i])
    assert labels.tolist() == [1, 5]


def test_edm_uses_first_channels_with_learned_sigma_and_scalar_sigma():
    spec = tiny_spec(learn_sigma=True)
    out = torch.randn(2, 6, 8, 8)
    x = torch.randn(2, 3, 8, 8)
    d = Denoiser(Recorder(out), spec)(x, 2.0)
    torch.testing.assert_close(d, 0.25 / 4.25 * x + 2 * 0.5 / math.sqrt(4.25) * out[:, :3])
    with pytest.raises(ValueError, match="sigma"):
        Denoiser(Recorder(out), spec)(x, torch.ones(3))


def test_ddpm_sigma_to_timestep_and_epsilon_formula():
    spec = tiny_spec(precond="ddpm")
    eps = torch.randn(3, 3, 8, 8)
    net = Recorder(eps)
    denoiser = DDPMDenoiser(net, spec)
    abar = ddpm_alphas_cumprod()
    assert abar[0].item() == pytest.approx(1 - 1e-4) and len(abar) == 1000
    sigmas = ((1 - abar) / abar).sqrt()
    t = torch.tensor([0, 499, 999])
    x = torch.randn(3, 3, 8, 8)
    d = denoiser(x, sigmas[t].float())
    x_in, t_in, _, _ = net.calls[0]
    torch.testing.assert_close(t_in, t.float(), atol=2e-3, rtol=0)
    s = sigmas[t].float().reshape(-1, 1, 1, 1)
    torch.testing.assert_close(x_in, x / (s**2 + 1).sqrt())
    torch.testing.assert_close(d, x - s * eps)
    # half way between two table entries in log sigma -> half way in t
    mid = ((sigmas[10].log() + sigmas[11].log()) / 2).exp()
    assert denoiser.sigma_to_t(mid[None]).item() == pytest.approx(10.5)
    assert denoiser.sigma_to_t(torch.tensor([1e-5, 1e5], dtype=torch.float64)).tolist() == [0.0, 999.0]


@pytest.mark.parametrize("precond", ["edm", "ddpm"])
def test_built_denoiser_with_mask_returns_full_image(precond):
    spec = tiny_spec(precond=precond, learn_sigma=precond == "ddpm")
    denoiser = build_denoiser(spec)
    randomize_(denoiser.net)
    x = torch.randn(4, 3, 8, 8)
    d = denoiser(x, torch.full((4,), 1.5), labels=torch.tensor([0, 1, 2, 5]), mask=random_mask(spec, 4, 0.5))
    assert d.shape == x.shape and d.dtype == x.dtype
    assert denoiser(x.double(), torch.full((4,), 1.5)).dtype == torch.float64
    assert (denoiser.in_channels, denoiser.input_size, denoiser.num_classes, denoiser.null_label) == (3, 8, 5, 5)
    assert denoiser.spec == spec


def test_fresh_edm_denoiser_is_the_skip_connection():
    """Zero-initialised F: D(x; sigma) = c_skip x (EDM eq. 7)."""
    spec = tiny_spec()
    x = torch.randn(2, 3, 8, 8)
    d = build_denoiser(spec)(x, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(d[0], 0.5 * x[0])
    torch.testing.assert_close(d[1], 0.2 * x[1])
