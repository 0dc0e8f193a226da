"""Noise-adaptive masking adapts per sample: each sample's ratio follows its own sigma."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdit.masking import (
    MASKING,
    BlockMasking,
    ConstantRatio,
    GroupedMask,
    RandomMasking,
    SigmaRatio,
    build_masking,
    kept_per_sample,
    num_kept,
    specs,
)
from maskdit.masking.expected import estimate_ratio
from maskdit.processes.noise import LogNormalNoise
from tests.masking.checks import check_any_mask

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-noise-adaptive-masking.json"
ratios = st.floats(0.0, 0.9, allow_nan=False)


@st.composite
def sigma_case(draw):
    """(a sigma ratio spec, sigma [B]): any ramp direction, 1-14 groups, noise levels beyond both ends."""
    batch = draw(st.integers(1, 12), label="batch")
    log_sigma = draw(st.lists(st.floats(-8, 6), min_size=batch, max_size=batch), label="log_sigma")
    spec = specs.SigmaRatioSpec(r_min=draw(ratios, label="r_min"), r_max=draw(ratios, label="r_max"),
                                groups=draw(st.integers(1, 14), label="groups"))
    return spec, torch.tensor(log_sigma, dtype=torch.float64).exp()


def _follows_sigma(values: list[float], sigma: torch.Tensor, increasing: bool) -> bool:
    """values[i] <= values[j] whenever sigma[i] < sigma[j] (>= when not increasing)."""
    s = sigma.tolist()
    return all((values[i] <= values[j]) if increasing else (values[i] >= values[j])
               for i in range(len(s)) for j in range(len(s)) if s[i] < s[j])


@FAST
@given(case=sigma_case())
def test_per_sample_ratios_follow_sigma_in_groups(case):
    spec, sigma = case
    schedule = spec.build()
    exact = schedule.per_sample(sigma)
    grouped = schedule(sigma=sigma)
    assert grouped.shape == sigma.shape and grouped.dtype == torch.float64
    increasing = schedule.r_max >= schedule.r_min
    assert _follows_sigma(grouped.tolist(), sigma, increasing)
    assert _follows_sigma(exact.tolist(), sigma, increasing)
    # at most `groups` ratios, each the mean of its samples' own: the batch's budget is kept
    assert grouped.unique().numel() <= schedule.groups
    assert grouped.mean().item() == pytest.approx(exact.mean().item(), abs=1e-12)
    for value in grouped.unique():
        members = exact[grouped == value]
        assert members.min() - 1e-12 <= value <= members.max() + 1e-12
    # enough groups: every sample its exact ratio; one group: everyone the batch mean
    assert torch.allclose(SigmaRatio(schedule.r_min, schedule.r_max, groups=len(sigma))(sigma=sigma), exact)
    assert torch.allclose(SigmaRatio(schedule.r_min, schedule.r_max, groups=1)(sigma=sigma),
                          exact.mean().expand(len(sigma)))


WITH_RATIO = [name for name in MASKING.names() if "ratio" in MASKING.get(name).model_fields]


@pytest.mark.parametrize("strategy_name", WITH_RATIO)
@FAST
@given(case=sigma_case(), height=st.integers(1, 8), width=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_adaptive_masks_obey_the_contract(strategy_name, case, height, width, seed):
    spec, sigma = case
    schedule = spec.build()
    strategy = build_masking(MASKING.get(strategy_name)(ratio=spec))
    batch, length = len(sigma), height * width
    try:
        expected = kept_per_sample(length, schedule(sigma=sigma), batch)
    except ValueError:  # some group's ratio leaves no visible token: the strategy refuses too
        with pytest.raises(ValueError, match="no visible token"):
            strategy(batch, (height, width), sigma=sigma, generator=torch.Generator().manual_seed(seed))
        return
    mask = strategy(batch, (height, width), sigma=sigma, generator=torch.Generator().manual_seed(seed))
    check_any_mask(mask, expected)
    # the dropped share of each sample follows its sigma as the schedule says
    drops = mask.dropped.double().mean(dim=1).tolist()
    assert _follows_sigma(drops, sigma, schedule.r_max >= schedule.r_min)
    # kept_counts says the counts without drawing a mask
    assert strategy.kept_counts(batch, length, sigma=sigma, generator=torch.Generator()) == expected
    # determinism under a seeded generator
    again = strategy(batch, (height, width), sigma=sigma, generator=torch.Generator().manual_seed(seed))
    assert type(again) is type(mask) and torch.equal(again.dropped, mask.dropped)
    if isinstance(mask, GroupedMask):
        for one, other in zip(again.groups, mask.groups):
            assert torch.equal(one.ids_keep, other.ids_keep) and torch.equal(one.ids_restore, other.ids_restore)


@pytest.mark.parametrize("strategy_cls", [RandomMasking, BlockMasking])
def test_low_and_high_sigma_samples_drop_at_the_two_bounds(strategy_cls):
    """One batch mixing clean and very noisy samples: each drops at its own end of r 0.25..0.75
    (with the ratio taken at the batch's mean log-sigma they all dropped the same share)."""
    strategy = strategy_cls(SigmaRatio(0.25, 0.75, 0.002, 80.0, groups=2))  # the 3 lowest, the 3 highest
    sigma = torch.tensor([0.001, 200.0, 0.0005, 90.0, 0.0015, 100.0])
    mask = strategy(6, (8, 8), sigma=sigma, generator=torch.Generator().manual_seed(0))
    drops = mask.dropped.double().mean(dim=1).tolist()
    low, high = (64 - num_kept(64, 0.25)) / 64, (64 - num_kept(64, 0.75)) / 64
    assert drops == [low, high, low, high, low, high]
    assert mask.ratio == pytest.approx((low + high) / 2)


def test_the_example_drops_what_each_samples_noise_level_says():
    """Through the experiment's own objective (sigma, noise, labels, mask drawn as in training):
    the per-sample drop fraction spans the schedule's range and tracks log-sigma."""
    from maskdit.app.experiment import Experiment
    from maskdit.app.experiment_spec import ExperimentSpec

    spec = ExperimentSpec.model_validate(json.loads(EXAMPLE.read_text()))
    objective = Experiment(spec).objective()
    generator = torch.Generator().manual_seed(spec.seed)
    y, labels = torch.zeros(64, 1, 32, 32), torch.zeros(64, dtype=torch.long)
    drops, log_sigma = [], []
    for step in range(40):
        out = objective(lambda x, sigma, labels=None, mask=None: torch.zeros_like(x), y, labels,
                        generator=generator, step=step)
        drops.append(out.mask.dropped.double().mean(dim=1))
        log_sigma.append(out.sigma.double().log())
    drops, log_sigma = torch.cat(drops), torch.cat(log_sigma)
    assert torch.corrcoef(torch.stack([drops, log_sigma]))[0, 1] > 0.9
    lowest, highest = drops[log_sigma <= log_sigma.quantile(0.1)], drops[log_sigma >= log_sigma.quantile(0.9)]
    assert lowest.mean() < 0.4 and highest.mean() > 0.6
    assert drops.min() <= 0.35 and drops.max() >= 0.65


def test_a_per_sample_ratio_must_have_one_value_per_sample():
    class Wrong:
        max_ratio = 0.5

        def __call__(self, *, step=None, sigma=None, generator=None):
            return torch.full((3,), 0.5)

    with pytest.raises(ValueError, match=r"shape \(3,\) for a batch of 4"):
        RandomMasking(Wrong())(4, (4, 4))


def test_sigma_schedule_validation():
    with pytest.raises(ValueError, match="groups"):
        SigmaRatio(0.2, 0.8, groups=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        SigmaRatio(0.2, 0.8, 1.0, float("inf"))
    with pytest.raises(ValueError, match=r"\[B\] tensor"):
        SigmaRatio(0.2, 0.8)(sigma=torch.ones(2, 2))
    assert specs.SigmaRatioSpec(r_min=0.2, r_max=0.8, groups=3).build().groups == 3


def test_equal_sigmas_share_one_mask_as_before():
    """A batch whose samples all get one ratio is a plain Mask, drawn as a constant ratio draws it."""
    sigma = torch.full((5,), 0.7)
    adaptive = RandomMasking(SigmaRatio(0.2, 0.8, groups=4))(5, (6, 6), sigma=sigma,
                                                              generator=torch.Generator().manual_seed(3))
    ratio = SigmaRatio(0.2, 0.8).per_sample(sigma)[0].item()
    constant = RandomMasking(ConstantRatio(ratio))(5, (6, 6), generator=torch.Generator().manual_seed(3))
    assert not isinstance(adaptive, GroupedMask)
    assert torch.equal(adaptive.ids_keep, constant.ids_keep) and torch.equal(adaptive.dropped, constant.dropped)


def _rounded_ratio_quadrature(schedule: SigmaRatio, p_mean: float, p_std: float, tokens: int) -> float:
    """E[1 - int(L (1 - r(sigma))) / L] for ln sigma ~ N(p_mean, p_std^2), by the midpoint rule
    on 400k points over +-8 standard deviations (the exact per-sample kept count's ratio)."""
    n = 400_000
    z = -8 + 16 * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) * (16 / n)
    ratio = schedule.per_sample((p_mean + p_std * z).exp())
    kept = torch.floor(tokens * (1 - ratio))
    return float(((1 - kept / tokens) * density).sum())


def test_expected_ratio_matches_quadrature():
    """The fixed-seed estimate (4096 samples) of the mean dropped share agrees with quadrature
    over the lognormal noise levels within 4 standard errors (each sample at its exact ratio)."""
    schedule = SigmaRatio(0.25, 0.75, 0.03, 3.0, groups=64)
    strategy = RandomMasking(schedule)
    estimate = estimate_ratio(strategy, 64, noise=LogNormalNoise(-1.2, 1.2), batch_size=64, total_steps=100)
    exact = _rounded_ratio_quadrature(schedule, -1.2, 1.2, 64)
    assert estimate.samples == 4096 and estimate.seed == 0
    assert abs(estimate.mean - exact) < 4 * 0.13 / math.sqrt(4096)  # per-sample spread <= 0.13
    assert 0.25 <= estimate.low < estimate.mean < estimate.high <= 0.75
    again = estimate_ratio(strategy, 64, noise=LogNormalNoise(-1.2, 1.2), batch_size=64, total_steps=100)
    assert again == estimate


def test_expected_ratio_of_a_constant_is_the_ratio():
    estimate = estimate_ratio(RandomMasking(0.5), 64, noise=LogNormalNoise(), batch_size=8, total_steps=10)
    assert estimate.mean == estimate.low == estimate.high == 0.5
