"""The held-out denoising loss: its sigma grid for each noise distribution, its labels, its errors."""

import math

import pytest
import torch

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.eval.heldout import HeldOutLoss, sigma_grid
from maskdit.losses import build_noise, edm_weight
from maskdit.losses.specs import DDPMNoiseSpec, LognormalNoiseSpec, LoguniformNoiseSpec

MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 16, "num_heads": 1,
         "decoder_depth": 0, "num_classes": 10}
LOSSES = {"terms": [{"name": "dsm"}]}  # a model without a decoder: no MAE


def test_lognormal_grid_is_the_studys_quantiles_bit_for_bit():
    noise = LognormalNoiseSpec(p_mean=-0.8, p_std=1.6)
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(8, dtype=torch.float64) + 0.5) / 8)
    study = torch.exp(noise.p_mean + noise.p_std * quantiles).tolist()  # the study's formula, as committed
    assert sigma_grid(build_noise(noise), 8) == study


def test_loguniform_grid_is_evenly_spaced_in_log_sigma_at_the_midpoints():
    grid = sigma_grid(build_noise(LoguniformNoiseSpec(sigma_min=0.01, sigma_max=100.0)), 4)
    # ln sigma in [ln 0.01, ln 100], quarters' midpoints: 10^(-2 + 4 (i + 0.5) / 4) = 10^-1.5, 10^-0.5, ...
    assert grid == pytest.approx([10 ** -1.5, 10 ** -0.5, 10 ** 0.5, 10 ** 1.5], rel=1e-12)


@pytest.mark.parametrize(("timesteps", "size", "expected"), [(8, 8, list(range(8))), (1000, 4, [124, 374, 624, 874]),
                                                             (4, 8, [0, 0, 1, 1, 2, 2, 3, 3])])
def test_ddpm_grid_is_the_discrete_uniform_timesteps_quantiles(timesteps, size, expected):
    spec = DDPMNoiseSpec(num_timesteps=timesteps)
    noise = build_noise(spec)
    assert sigma_grid(noise, size) == noise.table[expected].tolist()


def test_a_plugin_distribution_with_quantiles_works_and_one_without_is_refused():
    class Exponential:
        def quantile(self, q):
            return -torch.log1p(-q)

    assert sigma_grid(Exponential(), 2) == pytest.approx([-math.log(0.75), -math.log(0.25)])
    with pytest.raises(ValueError, match="needs the training noise distribution's quantiles"):
        sigma_grid(object(), 8)


def test_a_dataset_without_a_heldout_split_is_refused():
    spec = ExperimentSpec.model_validate({"model": {**MODEL, "in_channels": 3}, "losses": LOSSES,
                                          "data": {"name": "imagefolder", "path": "/nowhere", "num_classes": 10,
                                                   "resolution": 32}})
    with pytest.raises(ValueError, match="needs a dataset with a held-out split"):
        HeldOutLoss(spec)


class Recorder(torch.nn.Module):
    """Returns zeros and keeps what it was given; the loss is then sum(w(sigma) y^2) / n per sigma."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def forward(self, x, sigma, *, labels=None):
        self.labels.append(labels)
        return torch.zeros_like(x)


@pytest.mark.parametrize("num_classes", [0, 10])
def test_labels_go_only_to_a_class_conditional_model_and_the_loss_is_the_weighted_mse(num_classes):
    spec = ExperimentSpec.model_validate({"model": {**MODEL, "num_classes": num_classes}, "losses": LOSSES})
    heldout = HeldOutLoss(spec, grid_size=3, limit=6, batch_size=4)
    model = Recorder()
    loss, per_sigma = heldout(model)
    assert len(model.labels) == 3 * 2  # 3 sigmas x 2 batches of at most 4
    assert all((labels is None) == (num_classes == 0) for labels in model.labels)
    mse = heldout.images.square().flatten(1).mean(1).mean().item()
    expected = [float(edm_weight(torch.tensor(s), spec.model.sigma_data)) * mse for s in heldout.sigmas]
    assert per_sigma == pytest.approx(expected, rel=1e-5) and loss == pytest.approx(sum(expected) / 3, rel=1e-5)
