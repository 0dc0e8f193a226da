"""Contracts of samplers and sigma schedules.

A sampler is a pure function ``sample_<name>(denoiser, x, sigmas, *, labels=None,
noise_sampler=None, generator=None, callback=None, dtype=None) -> x0`` named by its spec's
``sample_function()``:

- 'pure function': the same inputs (and generator seed) give the same result, shaped like x, in
  x's dtype, finite; nothing is drawn from torch's global RNG;
- 'steps': the callback is told about every step once, in order (``i`` = 0 .. n - 1, with the
  float64 state ``x``), and the denoiser is called in x's dtype with one noise level per sample;
- 'input checks': bad x, sigmas, labels or denoiser outputs raise ValueError naming the culprit
  (calling ``maskdit.samplers.common.start`` or ``prepare`` first gives that);
- 'ready sampler': the spec builds a Sampler with the spec's name and steps, sigmas ending in 0,
  that calls the denoiser exactly ``num_evaluations`` times per sample (an adaptive solver, whose
  ``num_evaluations`` is None, reports the count as its callback's ``nfe``).

A sigma schedule's spec builds ``[steps + 1]`` float64 sigmas, positive and strictly decreasing,
ending in 0 ('sigma schedule'; a flow-time grid may start at inf, pure noise, and one whose spec
says ``ends_at_data`` False stops above 0), or refuses a number of steps it cannot make with
ValueError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from maskdit.samplers.sigmas import get_sigmas_karras
from maskdit.testing.contract import (
    ContractError,
    call_twice,
    check_spec_round_trip,
    describe,
    describe_value,
    require,
    seeded,
)
from maskdit.testing.toys import GaussianDenoiser

#: (what, x, sigmas, the argument the error must name): inputs every sampler refuses
BAD_INPUTS: tuple[tuple[str, torch.Tensor, torch.Tensor, str], ...] = (
    ("x without a batch dimension", torch.zeros(4), get_sigmas_karras(3), "x"),
    ("integer x", torch.zeros(2, 3, dtype=torch.long), get_sigmas_karras(3), "x"),
    ("a single sigma", torch.zeros(2, 3), torch.tensor([1.0]), "sigmas"),
    ("2-D sigmas", torch.zeros(2, 3), torch.ones(2, 2), "sigmas"),
    ("a NaN sigma", torch.zeros(2, 3), torch.tensor([float("nan"), 0.0]), "sigmas"),
    ("increasing sigmas", torch.zeros(2, 3), torch.tensor([1.0, 2.0, 0.0]), "sigmas"),
    ("a zero sigma before the end", torch.zeros(2, 3), torch.tensor([1.0, 0.0, 0.0]), "sigmas"),
    ("negative sigmas", torch.zeros(2, 3), torch.tensor([-1.0, -2.0]), "sigmas"),
    ("NaN in x", torch.full((2, 3), float("nan")), get_sigmas_karras(3), "x"),
)


def check_sigma_schedule(spec: Any, *, steps: int = 5) -> bool:
    """Contract 'sigma schedule' (and the spec round trip) of a sigma schedule's spec. A schedule
    may refuse a number of steps it cannot make with ValueError: then False is returned."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    try:
        sigmas = spec.build(steps=steps)
    except ValueError:
        return False
    ends = getattr(spec, "ends_at_data", True)
    ok = (isinstance(sigmas, torch.Tensor) and sigmas.shape == (steps + 1,) and sigmas.dtype == torch.float64
          and bool(sigmas[-1] == 0) == ends and bool((sigmas[:-1] > 0).all())
          and bool((sigmas[1:] < sigmas[:-1]).all()))
    require(ok, "sigma schedule", subject,
            lambda: f"build(steps={steps}) must give {steps + 1} float64 sigmas, positive, strictly decreasing and "
                    f"{'ending in 0' if ends else 'ending above 0 (ends_at_data is False)'}; got {sigmas!r}")
    return True


def check_pure_function(sample: Callable[..., torch.Tensor], *, subject: str, seed: int = 0) -> None:
    """Contract 'pure function' on a toy Gaussian problem, with a generator for any noise."""
    x = 80.0 * torch.randn(3, 2, 4, 4, generator=seeded(seed))
    sigmas = get_sigmas_karras(6)
    first, second = call_twice(subject, lambda s: sample(GaussianDenoiser(), x, sigmas, generator=seeded(s)), seed + 1)
    require(isinstance(first, torch.Tensor) and first.shape == x.shape and first.dtype == x.dtype, "pure function",
            subject, lambda: f"returned {describe_value(first)} for x {describe_value(x)}; expected x's shape, dtype")
    require(bool(torch.isfinite(first).all()), "pure function", subject, "returned non-finite values")
    require(torch.equal(first, second), "pure function", subject,
            "the same inputs and generator seed gave different results")


def check_steps(sample: Callable[..., torch.Tensor], *, subject: str, steps: int = 5) -> None:
    """Contract 'steps': the callback once per step in order, the denoiser in x's dtype."""
    seen: set[tuple[torch.dtype, torch.dtype, tuple[int, ...]]] = set()
    infos: list[dict[str, Any]] = []

    def model(x: torch.Tensor, sigma: torch.Tensor, *, labels: Any = None, mask: Any = None) -> torch.Tensor:
        seen.add((x.dtype, sigma.dtype, tuple(sigma.shape)))
        return 0.5 * x / (1 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2)

    x = 80.0 * torch.randn(2, 1, 4, 4, generator=seeded(0))
    sample(model, x, get_sigmas_karras(steps), callback=infos.append, generator=seeded(1))
    order = [info.get("i") for info in infos]
    require(order == list(range(steps)), "steps", subject,
            lambda: f"with {steps} steps the callback must see i = 0..{steps - 1} once each, saw {order}")
    require(all(isinstance(info.get("x"), torch.Tensor) and info["x"].dtype == torch.float64 for info in infos),
            "steps", subject, "the callback's 'x' must be the float64 sampler state")
    require(seen == {(torch.float32, torch.float32, (2,))}, "steps", subject,
            lambda: f"a float32 x must reach the denoiser as float32 x and float32 sigma [B=2]; saw "
                    f"(x dtype, sigma dtype, sigma shape) {sorted(map(str, seen))}")


def check_input_checks(sample: Callable[..., torch.Tensor], *, subject: str) -> None:
    """Contract 'input checks': every case of BAD_INPUTS, bad labels and a denoiser returning the
    wrong shape raise ValueError naming the culprit."""
    for what, x, sigmas, culprit in BAD_INPUTS:
        _refuses(lambda: sample(GaussianDenoiser(), x, sigmas, generator=torch.Generator()), what, culprit, subject)
    x = torch.randn(2, 1, 2, 2, generator=seeded(0))
    _refuses(lambda: sample(GaussianDenoiser(), x, get_sigmas_karras(2), labels=torch.zeros(3, dtype=torch.long)),
             "labels for 3 samples with a batch of 2", "labels", subject)
    _refuses(lambda: sample(lambda x, s, labels=None, mask=None: x[:1], x, get_sigmas_karras(2)),
             "a denoiser returning one sample for two", "denoiser", subject)


def _refuses(call: Callable[[], Any], what: str, culprit: str, subject: str) -> None:
    try:
        call()
    except ValueError as err:
        require(re.search(rf"\b{culprit}\b", str(err)) is not None, "input checks", subject,
                lambda: f"{what}: the ValueError must name {culprit!r}, it says {str(err)!r}")
        return
    except Exception as err:  # the contract asks for ValueError: anything else is reported as such
        raise ContractError("input checks", subject, f"{what} must raise ValueError naming {culprit!r}; it raised "
                                                     f"{type(err).__name__}: {err}") from err
    raise ContractError("input checks", subject, f"{what} must raise ValueError naming {culprit!r}; it returned")


def check_ready_sampler(spec: Any, *, seed: int = 0) -> None:
    """Contract 'ready sampler' (and the spec round trip) of a sampler spec."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    sampler = spec.build()
    sigmas = getattr(sampler, "sigmas", None)
    ok = (getattr(sampler, "name", None) == spec.name and getattr(sampler, "steps", None) == spec.steps
          and isinstance(sigmas, torch.Tensor) and bool(sigmas[-1] == 0))
    require(ok, "ready sampler", subject,
            lambda: f"build() must give a Sampler named {spec.name!r} with {spec.steps} steps and sigmas ending in 0, "
                    f"got {sampler!r}")
    model = GaussianDenoiser()
    noise = torch.randn(2, 1, 4, 4, generator=seeded(seed))
    infos: list[dict[str, Any]] = []
    out = sampler(model, noise, generator=seeded(seed + 1), callback=infos.append)
    require(isinstance(out, torch.Tensor) and out.shape == noise.shape and out.dtype == noise.dtype, "ready sampler",
            subject, lambda: f"sampling unit noise {describe_value(noise)} returned {describe_value(out)}")
    expected = sampler.num_evaluations
    if expected is None:  # an adaptive solver: the count is known after the run, from its callback
        expected = infos[-1].get("nfe") if infos else None
    require(model.calls == expected, "ready sampler", subject,
            lambda: f"it called the denoiser {model.calls} times but reports num_evaluations = "
                    f"{expected} (the count FLOP summaries use)")
    require(float(spec.sigma_max) == float(sigmas[0]) and float(spec.sigma_min) == float(sigmas[-2]), "ready sampler",
            subject, lambda: f"the spec's sigma range ({spec.sigma_min}, {spec.sigma_max}) is not the sigmas it "
                             f"samples ({float(sigmas[-2])}, {float(sigmas[0])})")

