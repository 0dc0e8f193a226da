"""Contracts of the process plugins (``model.process``): whatever the process, the model it wraps
is a Denoiser in EDM's sigma space.

- 'named by the model spec': ``model.process`` takes the spec (its JSON object);
- 'denoiser contract': ``spec.build(net=, spec=)`` around a backbone returns a module that maps
  ``(x [B, C, H, W], sigma [B])`` to a finite x0 estimate shaped and typed like x (float32 and
  float64), with labels, and with a Mask (the model fills the dropped positions); sample b's output
  depends on sample b alone; the backbone stays in ``.net``;
- 'noise check': ``noise_problem(noise)`` gives None or a sentence for every registered noise
  distribution (what a spec error shows).
"""

from __future__ import annotations

from typing import Any

import torch

from maskdit.config.registry import registry
from maskdit.core.factory import build_model
from maskdit.core.specs import ModelSpec
from maskdit.masking.mask import Mask
from maskdit.testing.contract import ContractError, check_spec_round_trip, describe, describe_value, require, seeded

TINY = {"input_size": 8, "in_channels": 2, "patch_size": 2, "depth": 2, "hidden_size": 16, "num_heads": 2,
        "decoder_depth": 1, "decoder_hidden_size": 8, "decoder_num_heads": 2, "num_classes": 3}


def check_process_spec(spec: Any, *, seed: int = 0) -> None:
    """Every contract of a process plugin (see the module docstring)."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    try:
        model_spec = ModelSpec.model_validate({**TINY, "process": spec.model_dump(mode="json")})
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise ContractError("named by the model spec", subject, f"model.process does not validate: {err}") from err
    net = build_model(model_spec, seed=seed)
    with torch.no_grad():  # away from the zero-initialised output, so every path shows
        for param in net.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=seeded(seed + 1)))
    denoiser = spec.build(net=net, spec=model_spec)
    require(getattr(denoiser, "net", None) is net, "denoiser contract", subject, "the backbone must stay in .net")
    check_denoiser(denoiser, subject=subject, seed=seed)
    for name in registry("noise").names():
        problem = spec.noise_problem(registry("noise").get(name)())
        require(problem is None or (isinstance(problem, str) and problem), "noise check", subject,
                lambda: f"noise_problem({name!r}) must be None or a sentence, got {problem!r}")


def check_denoiser(denoiser: Any, *, subject: str, seed: int = 0) -> None:
    """The sigma-space Denoiser contract on a tiny model with 2 channels, 8 x 8 inputs, 3 classes."""
    gen = seeded(seed + 2)
    labels = torch.tensor([0, 2, 3])  # 3: the null class
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 2, 8, 8, generator=gen, dtype=dtype)
        sigma = torch.tensor([0.01, 1.0, 50.0], dtype=dtype)
        with torch.no_grad():
            out = denoiser(x, sigma, labels=labels)
            alone = torch.cat([denoiser(x[b:b + 1], sigma[b:b + 1], labels=labels[b:b + 1]) for b in range(3)])
        require(isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == dtype
                and bool(torch.isfinite(out).all()), "denoiser contract", subject,
                lambda: f"for x {dtype} [3, 2, 8, 8] it must return finite values shaped and typed like x, got "
                        f"{describe_value(out)}")
        require(torch.allclose(alone, out, rtol=1e-4, atol=1e-5), "denoiser contract", subject,
                "a sample's output changes with the other samples of the batch")
    dropped = torch.zeros(3, 16, dtype=torch.bool)
    dropped[:, ::2] = True
    with torch.no_grad():
        masked = denoiser(x, sigma, labels=labels, mask=Mask.from_dropped(dropped))
    require(isinstance(masked, torch.Tensor) and masked.shape == x.shape and bool(torch.isfinite(masked).all()),
            "denoiser contract", subject, lambda: f"with a Mask it must still return x's shape, got "
                                                  f"{describe_value(masked)}")
