"""Contracts of loss terms: ``spec.build(loss_tokens=...)`` gives ``term(inputs: LossInputs) -> [B]``.

- 'weight': the spec's ``weight`` (if it has one) is a finite number >= 0;
- 'per-sample values': the term returns one finite value per sample, [B], in the inputs' dtype,
  and sample b's value depends on sample b alone (the same as on that sample by itself);
- 'inputs unchanged': no tensor of the inputs is modified in place;
- 'determinism' and 'randomness from the generator': the same inputs give the same values, and
  nothing is drawn from torch's global RNG;
- 'gradient': on a masked batch the values depend on ``denoised`` (the model learns from the
  term), and the gradient is finite;
- 'block tokens and heads': a term that reads the tokens after some blocks (``blocks``) and trains
  a head (``make_head(backbone, generator)``, as repa's projector) is given random tokens for
  those blocks (the kept ones on a masked batch) and its head; its values must depend on the
  tokens and the head (the model and the head learn from it), with finite gradients.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from types import SimpleNamespace
from typing import Any

import torch

from maskdit.core.taps import TappedTokens
from maskdit.losses.inputs import LossInputs
from maskdit.testing.contract import call_twice, check_spec_round_trip, describe, describe_value, require

#: what a term built with ``loss_tokens`` is told the model's routing covers
LOSS_TOKENS = ("visible", "all")
#: the stand-in model a term reading block tokens is built for: its depth and token width
STAND_IN_DEPTH, STAND_IN_WIDTH = 4, 8


def check_loss_spec(spec: Any, inputs: LossInputs) -> None:
    """Every contract of a loss term, on the terms ``spec`` builds for each routing."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    weight = getattr(spec, "weight", 1.0)
    require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
            and weight >= 0, "weight", subject, lambda: f"weight must be a finite number >= 0, got {weight!r}")
    for tokens in LOSS_TOKENS:
        term = spec.build(loss_tokens=tokens, model_depth=STAND_IN_DEPTH)
        check_loss_term(term, with_block_tokens(term, inputs), subject=f"{subject} with loss_tokens={tokens!r}")


def with_block_tokens(term: Any, inputs: LossInputs, *, seed: int = 0) -> LossInputs:
    """``inputs`` plus what a term that reads block tokens needs: random tokens [B, N, 8] after
    each of its ``blocks`` (the kept tokens at their positions on a masked batch) and its head,
    made for a stand-in model of depth 4 and width 8; the images are cut to one channel (such
    terms read an encoder's features of them, and every encoder reads grey images). Other terms get ``inputs`` unchanged."""
    blocks = tuple(getattr(term, "blocks", ()))
    if not blocks:
        return inputs
    if inputs.y.shape[1] != 1:  # such terms read image features: grey images, which every encoder reads
        inputs = replace(inputs, y=inputs.y[:, :1], noisy=inputs.noisy[:, :1], denoised=inputs.denoised[:, :1])
    generator = torch.Generator().manual_seed(seed)
    batch, _, height, width = inputs.y.shape
    patch = inputs.patch_size or 1
    grid = (height // patch, width // patch)
    positions = None if not inputs.masked or not hasattr(inputs.mask, "ids_keep") else inputs.mask.ids_keep
    count = grid[0] * grid[1] if positions is None else positions.shape[1]
    hidden = {b: (TappedTokens(torch.randn(batch, count, STAND_IN_WIDTH, generator=generator, dtype=inputs.y.dtype),
                               positions, None, grid),) for b in blocks}
    heads = dict(inputs.heads)
    make_head = getattr(term, "make_head", None)
    if make_head is not None:
        stand_in = SimpleNamespace(spec=SimpleNamespace(hidden_size=STAND_IN_WIDTH), blocks=[None] * STAND_IN_DEPTH)
        heads[getattr(term, "name", "head")] = make_head(stand_in, generator).to(inputs.y.dtype)
    return replace(inputs, hidden=hidden, heads=heads)


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
    if inputs.hidden:
        _check_block_gradient(term, inputs, subject)
    return first


def _check_gradient(term: Any, inputs: LossInputs, subject: str) -> None:
    denoised = inputs.denoised.detach().clone().requires_grad_(True)
    values = term(replace(inputs, denoised=denoised))
    if inputs.masked and not inputs.hidden:  # a term on block tokens learns through them (checked apart)
        require(values.requires_grad, "gradient", subject,
                "on a masked batch its values do not depend on denoised: the model cannot learn from it")
    if values.requires_grad:
        values.sum().backward()
        require(denoised.grad is None or bool(torch.isfinite(denoised.grad).all()), "gradient", subject,
                "its gradient with respect to denoised is not finite")


def _check_block_gradient(term: Any, inputs: LossInputs, subject: str) -> None:
    tokens = {b: tuple(replace(p, tokens=p.tokens.detach().clone().requires_grad_(True)) for p in pieces)
              for b, pieces in inputs.hidden.items()}
    head = inputs.heads.get(getattr(term, "name", "head"))
    params = [p for p in head.parameters() if p.requires_grad] if head is not None else []
    for param in params:
        param.grad = None
    values = term(replace(inputs, hidden=tokens))
    require(values.requires_grad, "block tokens and heads", subject,
            "its values do not depend on the block tokens it asked for: the model cannot learn from it")
    values.sum().backward()
    grads = [p.tokens.grad for pieces in tokens.values() for p in pieces] + [p.grad for p in params]
    require(all(g is not None and bool(torch.isfinite(g).all()) for g in grads), "block tokens and heads", subject,
            "the gradient does not reach every block token and head parameter, or is not finite")


def _tensors(inputs: LossInputs) -> list[torch.Tensor]:
    found = [getattr(inputs, f.name) for f in fields(inputs)]
    if inputs.mask is not None:  # a Mask, or groups of them (those have only dropped)
        found += [getattr(inputs.mask, name, None) for name in ("ids_keep", "ids_restore", "dropped")]
    return [t for t in found if isinstance(t, torch.Tensor)]


def _rows(inputs: LossInputs, rows: slice) -> LossInputs:
    hidden = {b: tuple(replace(p, tokens=p.tokens[rows], positions=None if p.positions is None else p.positions[rows])
                       for p in pieces) for b, pieces in inputs.hidden.items()}
    return LossInputs(y=inputs.y[rows], noisy=inputs.noisy[rows], sigma=inputs.sigma[rows],
                      denoised=inputs.denoised[rows], mask=None if inputs.mask is None else inputs.mask.rows(rows),
                      patch_size=inputs.patch_size, step=inputs.step, hidden=hidden, heads=inputs.heads)

