"""Contracts of loss terms: ``spec.build(loss_tokens=...)`` gives ``term(inputs: LossInputs) -> [B]``.

- 'weight': the spec's ``weight`` (if it has one) is a finite number >= 0;
- 'per-sample values': the term returns one finite value per sample, [B], in the inputs' dtype,
  and sample b's value depends on sample b alone (the same as on that sample by itself);
- 'inputs unchanged': no tensor of the inputs is modified in place;
- 'determinism' and 'randomness from the generator': the same inputs give the same values, and
  nothing is drawn from torch's global RNG;
- 'gradient': on a masked batch the values depend on ``denoised`` (the model learns from the
  term), and the gradient is finite.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import torch

from maskdit.losses.inputs import LossInputs
from maskdit.testing.contract import call_twice, check_spec_round_trip, describe, describe_value, require

#: what a term built with ``loss_tokens`` is told the model's routing covers
LOSS_TOKENS = ("visible", "all")


def check_loss_spec(spec: Any, inputs: LossInputs) -> None:
    """Every contract of a loss term, on the terms ``spec`` builds for each routing."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    weight = getattr(spec, "weight", 1.0)
    require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
            and weight >= 0, "weight", subject, lambda: f"weight must be a finite number >= 0, got {weight!r}")
    for tokens in LOSS_TOKENS:
        check_loss_term(spec.build(loss_tokens=tokens), inputs, subject=f"{subject} with loss_tokens={tokens!r}")


def check_loss_term(term: Any, inputs: LossInputs, *, subject: str | None = None) -> torch.Tensor:
    """A built term's contracts on one batch; returns its values [B]."""
    subject = subject or describe(term)
    batch = inputs.y.shape[0]
    before = [t.clone() for t in _tensors(inputs)]
    first, second = call_twice(subject, lambda _: term(inputs), 0)
    require(all(torch.equal(a, b) for a, b in zip(before, _tensors(inputs))), "inputs unchanged", subject,
            "it modified the inputs in place")
    ok = (isinstance(first, torch.Tensor) and first.shape == (batch,) and first.dtype == inputs.denoised.dtype)
    require(ok, "per-sample values", subject,
            lambda: f"must return a {inputs.denoised.dtype} tensor [B={batch}], got {describe_value(first)}")
    require(bool(torch.isfinite(first).all()), "per-sample values", subject,
            lambda: f"returned non-finite values {first.tolist()} for finite inputs")
    require(torch.equal(first, second), "determinism", subject, "the same inputs gave different values")
    for row in range(batch):
        alone = term(_rows(inputs, slice(row, row + 1)))
        require(isinstance(alone, torch.Tensor) and alone.shape == (1,)
                and torch.allclose(alone, first[row:row + 1], rtol=1e-6, atol=1e-9), "per-sample values", subject,
                lambda: f"sample {row} gives {first[row].item()} in the batch but {alone!r} alone")
    _check_gradient(term, inputs, subject)
    return first


def _check_gradient(term: Any, inputs: LossInputs, subject: str) -> None:
    denoised = inputs.denoised.detach().clone().requires_grad_(True)
    values = term(replace(inputs, denoised=denoised))
    if inputs.masked:
        require(values.requires_grad, "gradient", subject,
                "on a masked batch its values do not depend on denoised: the model cannot learn from it")
    if values.requires_grad:
        values.sum().backward()
        require(denoised.grad is None or bool(torch.isfinite(denoised.grad).all()), "gradient", subject,
                "its gradient with respect to denoised is not finite")


def _tensors(inputs: LossInputs) -> list[torch.Tensor]:
    found = [getattr(inputs, f.name) for f in fields(inputs)]
    if inputs.mask is not None:  # a Mask, or groups of them (those have only dropped)
        found += [getattr(inputs.mask, name, None) for name in ("ids_keep", "ids_restore", "dropped")]
    return [t for t in found if isinstance(t, torch.Tensor)]


def _rows(inputs: LossInputs, rows: slice) -> LossInputs:
    return LossInputs(y=inputs.y[rows], noisy=inputs.noisy[rows], sigma=inputs.sigma[rows],
                      denoised=inputs.denoised[rows], mask=None if inputs.mask is None else inputs.mask.rows(rows),
                      patch_size=inputs.patch_size)

