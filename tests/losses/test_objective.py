"""The Objective: pinned inputs against hand computation, r = 0 is plain EDM, draws, label
dropout, gradients through the mask token, registry contract, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from maskdit.losses import (
    LOSS_TERMS,
    NOISE_DISTRIBUTIONS,
    DDPMNoise,
    DSMLoss,
    LogNormalNoise,
    LogUniformNoise,
    MAELoss,
    Objective,
    WeightedTerm,
    build_objective,
    drop_labels,
    maskdit_objective,
    specs,
)
from maskdit.masking import Mask, NoMasking, RandomMasking
from maskdit.masking.ratio_schedules import ConstantRatio
from maskdit.samplers import ddpm_sigmas
from tests.losses.toys import TinyMaskedDenoiser, fixed_denoiser


def _paper(masking=None, **kwargs):
    terms = [WeightedTerm("dsm", 1.0, DSMLoss()), WeightedTerm("mae", 0.1, MAELoss())]
    return Objective(terms, LogNormalNoise(), masking=masking, patch_size=2, **kwargs)


@pytest.mark.parametrize("name", NOISE_DISTRIBUTIONS.names())
def test_every_noise_distribution_draws_positive_sigmas(name):
    dist = NOISE_DISTRIBUTIONS.get(name)().build()
    sigma = dist(5, generator=torch.Generator().manual_seed(0), device="cpu", dtype=torch.float32)
    assert sigma.shape == (5,) and bool((sigma > 0).all())


def test_pinned_sigma_noise_mask_hand_computed():
    y = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 2.0]]).view(1, 1, 2, 4)  # tokens [1,2,3,4], [0,0,0,2]
    noise = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]).view(1, 1, 2, 4)
    sigma = torch.tensor([2.0])  # lambda = (4 + 0.25) / (4 * 0.25) = 4.25
    output = torch.zeros(1, 1, 2, 4)
    mask = Mask.from_dropped(torch.tensor([[False, True]]))  # token 0 visible, token 1 dropped
    out = _paper()(fixed_denoiser(output), y, sigma=sigma, noise=noise, mask=mask)
    # DSM over the visible token 0: values 1, 2, 3, 4 against D = 0 -> mean square 30 / 4
    dsm = 4.25 * 30 / 4
    # MAE over dropped token 1: x_t = y + 2 n = [0 + 2, 0 + 2, 0 + 2, 2 + 2] = [2, 2, 2, 4]: mean 2.5,
    # unbiased var (3 * 0.25 + 2.25) / 3 = 1; normalised target squared sums to 3, mean 3 / 4 / (1 + 1e-6)
    mae = 0.75 / (1 + 1e-6)
    assert math.isclose(out.parts["dsm"].item(), dsm, rel_tol=1e-6)
    assert math.isclose(out.parts["mae"].item(), mae, rel_tol=1e-6)
    assert math.isclose(out.total.item(), dsm + 0.1 * mae, rel_tol=1e-6)
    assert out.mask is mask and torch.equal(out.sigma, sigma)


def test_r_zero_is_the_plain_edm_loss():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(4, 2, 4, 4, generator=gen)
    sigma, noise = torch.rand(4, generator=gen) * 3 + 0.1, torch.randn(4, 2, 4, 4, generator=gen)
    model = TinyMaskedDenoiser()
    with torch.no_grad():
        d = model(y + sigma.view(-1, 1, 1, 1) * noise, sigma)
    plain = ((sigma**2 + 0.25) / (sigma * 0.5) ** 2) * ((d - y) ** 2).flatten(1).mean(1)
    for objective, mask in ((_paper(), None), (_paper(), Mask.identity(4, 4)), (_paper(NoMasking()), None)):
        with torch.no_grad():
            out = objective(model, y, sigma=sigma, noise=noise, mask=mask)
        assert torch.allclose(out.total, plain, rtol=1e-5) and torch.equal(out.parts["mae"], torch.zeros(4))
        assert model.calls[-1]["mask"] is None  # an all-kept mask runs the inference path


def test_defaults_are_drawn_from_the_generator_in_a_fixed_order():
    objective = _paper(RandomMasking(ConstantRatio(0.5)), label_dropout=0.5, num_classes=3)
    y, labels = torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    runs = []
    for _ in range(2):
        model = TinyMaskedDenoiser()
        out = objective(model, y, labels, generator=torch.Generator().manual_seed(5))
        runs.append((out, model.calls[-1]))
    (a, call_a), (b, call_b) = runs
    assert torch.equal(a.total, b.total) and torch.equal(a.sigma, b.sigma)
    assert torch.equal(a.mask.dropped, b.mask.dropped) and a.mask.num_kept == 2
    gen = torch.Generator().manual_seed(5)  # sigma, then noise, then label dropout, then the mask
    sigma = LogNormalNoise()(8, generator=gen)
    torch.randn(y.shape, generator=gen)
    dropped_labels = drop_labels(labels, 0.5, 3, generator=gen)
    assert torch.equal(a.sigma, sigma) and torch.equal(call_a["labels"], dropped_labels)
    assert torch.equal(a.labels, dropped_labels) and bool((dropped_labels == 3).any())


def test_label_dropout():
    labels = torch.arange(1000) % 7
    assert drop_labels(labels, 0.0, 7) is labels
    assert torch.equal(drop_labels(labels, 1.0, 7, generator=torch.Generator()), torch.full((1000,), 7))
    dropped = drop_labels(labels, 0.1, 7, generator=torch.Generator().manual_seed(0))
    rate = (dropped == 7).float().mean().item()
    assert abs(rate - 0.1) < 5 * math.sqrt(0.1 * 0.9 / 1000)
    assert torch.equal(dropped[dropped != 7], labels[dropped != 7])
    def anonymous(x, sigma, labels=None, mask=None):  # a denoiser that does not say its num_classes
        return x

    with pytest.raises(ValueError, match="label dropout needs num_classes"):
        _paper(label_dropout=0.1)(anonymous, torch.randn(2, 2, 4, 4), torch.zeros(2, dtype=torch.long),
                                  generator=torch.Generator())


def test_mask_token_gets_gradient_only_from_a_masked_step():
    y = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    model = TinyMaskedDenoiser()
    _paper(RandomMasking(ConstantRatio(0.5)))(model, y, generator=torch.Generator().manual_seed(1)).total.mean().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    model = TinyMaskedDenoiser()
    _paper(NoMasking())(model, y, generator=torch.Generator().manual_seed(1)).total.mean().backward()
    assert model.mask_token.grad is None or model.mask_token.grad.abs().sum() == 0
    assert model.encode.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dist", [LogNormalNoise(), LogUniformNoise(0.01, 10.0), DDPMNoise()])
def test_noise_distributions(dist):
    sigma = dist(20_000, generator=torch.Generator().manual_seed(0))
    again = dist(20_000, generator=torch.Generator().manual_seed(0))
    assert sigma.shape == (20_000,) and sigma.dtype == torch.float32 and torch.equal(sigma, again)
    assert bool((sigma > 0).all()) and bool(torch.isfinite(sigma).all())
    log_sigma = sigma.double().log()
    if isinstance(dist, LogNormalNoise):
        se = 1.2 / math.sqrt(20_000)
        assert abs(log_sigma.mean().item() + 1.2) < 5 * se and abs(log_sigma.std().item() - 1.2) < 5 * se
    elif isinstance(dist, LogUniformNoise):
        lo, hi = math.log(0.01), math.log(10.0)
        assert lo <= log_sigma.min() and log_sigma.max() <= hi
        assert abs(log_sigma.mean().item() - (lo + hi) / 2) < 5 * (hi - lo) / math.sqrt(12 * 20_000)
    else:
        table = ddpm_sigmas().float()
        assert bool(torch.isin(sigma, table).all()) and len(torch.unique(sigma)) > 900


def test_build_objective_from_spec_and_maskdit_objective():
    objective = maskdit_objective()
    assert [(t.name, t.weight) for t in objective.terms] == [("dsm", 1.0), ("mae", 0.1)]
    assert isinstance(objective.noise, LogNormalNoise) and (objective.noise.p_mean, objective.noise.p_std) == (-1.2, 1.2)
    assert objective.masking.max_ratio == 0.5 and objective.patch_size is None  # None: the denoiser's
    assert objective.label_dropout == 0.1 and objective.num_classes is None
    tuned = maskdit_objective(mask_ratio=0.0, mae_weight=0.0, num_classes=10, patch_size=4)
    assert tuned.masking.max_ratio == 0.0 and tuned.terms[1].weight == 0.0 and tuned.patch_size == 4
    with pytest.raises(ValidationError):
        maskdit_objective(mask_ratio=1.5)
    with pytest.raises(TypeError):
        maskdit_objective(ratio=0.5)
    spec = specs.LossesSpec(terms=[specs.DSMSpec(sigma_data=1.0)], noise=specs.LoguniformNoiseSpec(), label_dropout=0.2)
    built = build_objective(spec, num_classes=0)
    assert built.masking is None and built.label_dropout == 0.0  # unconditional: nothing to drop
    assert isinstance(built.noise, LogUniformNoise) and built.terms[0].term.sigma_data == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda o, m: o(m, torch.randn(2, 8, 8)), "y must be"),
        (lambda o, m: o(m, torch.zeros(2, 2, 4, 4, dtype=torch.long)), "y must be"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), sigma=torch.tensor([1.0, float("nan")])), "finite, positive"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), sigma=torch.tensor([1.0, 0.0])), "finite, positive"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), sigma=torch.ones(3)), "sigma must be"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), sigma=torch.ones(2), noise=torch.randn(2, 2, 4)), "noise must be"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), sigma=torch.ones(2), noise=torch.full((2, 2, 4, 4), float("nan"))),
         "NaN"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), torch.tensor([0.0, 1.0])), "labels must be"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), torch.tensor([0, 4])), r"labels must lie in \[0, 3\]"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), mask=Mask.identity(3, 4)), "mask must be"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), mask=Mask.identity(2, 3)), "cannot be cut"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), mask=Mask.identity(2, 16)), "disagrees"),
        (lambda o, m: o(m, torch.randn(2, 2, 5, 5)), "does not tile"),
        (lambda o, m: o(lambda x, s, labels=None, mask=None: x[:, :1], torch.randn(2, 2, 4, 4)), "shaped like y"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), rows=slice(0, 2)), "rows and total go together"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), rows=slice(0, 1), total=4), "do not match a batch of 2"),
        (lambda o, m: o(m, torch.randn(2, 2, 4, 4), rows=slice(2, 4), total=4, sigma=torch.ones(2)),
         "without rows"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    objective = _paper(RandomMasking(ConstantRatio(0.5)), num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(objective, TinyMaskedDenoiser())


def test_bad_construction_raises():
    term = [WeightedTerm("dsm", 1.0, DSMLoss())]
    for bad in (lambda: Objective([], LogNormalNoise()), lambda: Objective(term * 2, LogNormalNoise()),
                lambda: Objective([WeightedTerm("dsm", -1.0, DSMLoss())], LogNormalNoise()),
                lambda: Objective(term, LogNormalNoise(), label_dropout=2.0),
                lambda: Objective(term, LogNormalNoise(), patch_size=0), lambda: LogNormalNoise(p_std=0.0),
                lambda: LogUniformNoise(1.0, 0.5), lambda: DSMLoss(sigma_data=0.0), lambda: MAELoss(eps=-1.0),
                lambda: LogNormalNoise()(0)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValidationError):
        specs.LossesSpec(terms=[specs.DSMSpec(), specs.DSMSpec()])
