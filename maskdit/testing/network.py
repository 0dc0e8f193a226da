"""Contracts of the network's plugins: transformer blocks and label embedders.

A block spec builds ``factory(width, num_heads, *, cond_dim, mlp_ratio, qk_norm) -> nn.Module``
with ``forward(x [B, N, width], c [B, cond_dim]) -> [B, N, width]`` and ``init_weights(generator)``:

- 'init writes every parameter': models are built on the meta device and materialised with
  ``to_empty``, so ``init_weights`` must write every floating parameter and buffer (checked by
  filling them with NaN first), from the generator it is given (the same seed, the same weights);
- 'identity at init': a freshly initialised block returns x unchanged (adaLN-Zero), so a deep
  model starts as a shallow one;
- 'per-sample values': any number of tokens N in, [B, N, width] out, finite, sample b's output
  depending on sample b alone (the tokens a mask keeps differ per sample);
- 'gradient': gradients reach x and c, finite;
- 'named by the model spec': ``model.block`` takes its name (``model.label_embedder`` for an
  embedder).

A label embedder spec builds ``embedder(num_classes, hidden)`` with ``forward(labels [B] int) ->
[B, hidden]`` (the label ``num_classes`` is the null class of guidance) and ``init_weights``,
with the same 'init writes every parameter' rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from maskdit.core.specs import ModelSpec
from maskdit.testing.contract import ContractError, check_spec_round_trip, describe, require, seeded


def fill_with_nan(module: nn.Module) -> None:
    """Every floating parameter and buffer set to NaN (what ``to_empty`` may leave behind)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))


def check_initialised(module: nn.Module, init: Callable[[torch.Generator], None], *, subject: str,
                      seed: int = 0) -> None:
    """Contract 'init writes every parameter': after NaN everywhere and ``init(generator)``, every
    floating parameter and buffer is finite; a second init from the same seed gives the same values."""
    fill_with_nan(module)
    init(seeded(seed))
    state = module.state_dict()
    unwritten = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    require(not unwritten, "init writes every parameter", subject,
            lambda: f"init_weights left {', '.join(unwritten)} unwritten (NaN before init stayed NaN)")
    snapshot = {name: value.clone() for name, value in state.items()}
    fill_with_nan(module)
    init(seeded(seed))
    changed = [name for name, value in module.state_dict().items() if not torch.equal(value, snapshot[name])]
    require(not changed, "init writes every parameter", subject,
            lambda: f"init_weights from the same seed gave different {', '.join(changed)}: draw from the generator")


def check_block_spec(spec: Any, *, width: int = 16, num_heads: int = 2, cond_dim: int = 8, mlp_ratio: float = 2.0,
                     seed: int = 0) -> None:
    """Every contract of a block, with and without qk_norm."""
    check_spec_round_trip(spec)
    _check_named_by_model_spec("block", spec)
    factory = spec.build()
    for qk_norm in (False, True):
        subject = f"{describe(spec)} with qk_norm={qk_norm}"
        block = factory(width, num_heads, cond_dim=cond_dim, mlp_ratio=mlp_ratio, qk_norm=qk_norm)
        check_block(block, width=width, cond_dim=cond_dim, subject=subject, seed=seed)


def check_block(block: nn.Module, *, width: int, cond_dim: int, subject: str, seed: int = 0) -> None:
    """A built block's contracts (see the module docstring)."""
    check_initialised(block, block.init_weights, subject=subject, seed=seed)
    gen = seeded(seed + 1)
    x, c = torch.randn(3, 5, width, generator=gen), torch.randn(3, cond_dim, generator=gen)
    with torch.no_grad():
        out = block(x, c)
    require(isinstance(out, torch.Tensor) and torch.allclose(out, x, atol=1e-6), "identity at init", subject,
            "a freshly initialised block must return x unchanged (zero-initialised gates, adaLN-Zero)")
    with torch.no_grad():  # away from the identity, so the next checks see every path
        for param in block.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    for tokens in (1, 5):
        x = torch.randn(3, tokens, width, generator=gen, requires_grad=True)
        c = torch.randn(3, cond_dim, generator=gen, requires_grad=True)
        out = block(x, c)
        require(isinstance(out, torch.Tensor) and out.shape == x.shape and bool(torch.isfinite(out).all()),
                "per-sample values", subject,
                lambda: f"for x [3, {tokens}, {width}] it must return finite [3, {tokens}, {width}], got {out!r}")
        with torch.no_grad():
            alone = torch.cat([block(x[b:b + 1], c[b:b + 1]) for b in range(3)])
        require(torch.allclose(alone, out, rtol=1e-4, atol=1e-5), "per-sample values", subject,
                "a sample's output changes with the other samples of the batch")
        out.square().sum().backward()
        reached = [g is not None and bool(torch.isfinite(g).all()) and bool(g.abs().sum() > 0)
                   for g in (x.grad, c.grad)]
        require(all(reached), "gradient", subject, "the gradient must reach x and c, finite and nonzero")


def check_label_embedder_spec(spec: Any, *, num_classes: int = 10, hidden: int = 16, seed: int = 0) -> None:
    """Every contract of a label embedder."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    _check_named_by_model_spec("label_embedder", spec)
    embedder = spec.build()(num_classes, hidden)
    check_initialised(embedder, embedder.init_weights, subject=subject, seed=seed)
    labels = torch.tensor([0, 3, num_classes])  # num_classes: the null label
    out = embedder(labels)
    require(isinstance(out, torch.Tensor) and out.shape == (3, hidden) and bool(torch.isfinite(out).all()),
            "per-sample values", subject,
            lambda: f"labels {labels.tolist()} (the last: the null class) must embed to finite [3, {hidden}], "
                    f"got {out!r}")


def _check_named_by_model_spec(field: str, spec: Any) -> None:
    """Contract 'named by the model spec': ``model.<field>`` takes the plugin's name."""
    try:
        ModelSpec.model_validate({field: spec.name})
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise ContractError("named by the model spec", describe(spec),
                            f"model.{field} = {spec.name!r} does not validate: {err}") from err
