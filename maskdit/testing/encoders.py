"""Contracts of encoder plugins (``spec.build()`` -> a frozen representation encoder).

- 'frozen encoder': a :class:`maskdit.encoders.FrozenEncoder` whose parameters all have
  ``requires_grad`` False and which stays in eval mode (every submodule) after ``.train()``;
- 'features shape': images [B, C, S, S] in [-1, 1] give finite float features [B, width,
  grid_size, grid_size];
- 'determinism' and 'randomness from the generator': the same spec builds the same weights, the
  same images give the same features, and neither draws from torch's global RNG;
- 'per-sample features': sample b's features do not depend on the other samples of the batch;
- 'no gradient to the encoder': a loss on the features leaves every encoder parameter without a
  gradient (what trains through alignment is the model and its projector, never the target);
- 'channels': grey images [B, 1, S, S] are accepted, and when the encoder reads ``in_channels``
  > 1 channels, a grey image repeated to them gives the same features as the grey image;
- 'inputs unchanged': the images are not modified in place.
"""

from __future__ import annotations

from typing import Any

import torch

from maskdit.encoders.base import FrozenEncoder
from maskdit.testing.contract import call_twice, check_spec_round_trip, describe, describe_value, require, seeded


def contract_spec(spec_class: type) -> Any:
    """The spec the shipped test checks: the class's first JSON Schema example (a small network,
    cheap to run), else its defaults, with ``weights='random'`` (offline, nothing read from disk)."""
    examples = (spec_class.model_config.get("json_schema_extra") or {}).get("examples") or [{}]
    return spec_class.model_validate({**examples[0], "weights": "random"})


def check_encoder_spec(spec: Any, *, seed: int = 0) -> FrozenEncoder:
    """Every contract of an encoder plugin, on the encoder ``spec`` builds; returns it."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    encoder, again = call_twice(subject, lambda _: spec.build(), seed)  # building draws nothing globally either
    require(isinstance(encoder, FrozenEncoder), "frozen encoder", subject,
            lambda: f"build() must return a maskdit.encoders.FrozenEncoder, got {type(encoder).__name__}")
    differ = [key for key, value in encoder.state_dict().items() if not torch.equal(value, again.state_dict()[key])]
    require(not differ, "determinism", subject,
            lambda: f"the same spec built different weights: {', '.join(differ[:5])}")
    side = getattr(encoder, "image_size", 32)
    images = torch.rand(3, 1, side, side, generator=seeded(seed)) * 2 - 1  # grey images in [-1, 1]
    check_encoder(encoder, images, subject=subject)
    return encoder


def check_encoder(encoder: FrozenEncoder, images: torch.Tensor, *, subject: str | None = None) -> torch.Tensor:
    """The contracts of a built encoder on grey ``images`` [B, 1, S, S] in [-1, 1]; returns its
    features."""
    subject = subject or describe(encoder)
    _check_frozen(encoder, subject)
    before = images.clone()
    first, second = call_twice(subject, lambda _: encoder(images), 0)
    require(torch.equal(before, images), "inputs unchanged", subject, "it modified the images in place")
    width, grid = getattr(encoder, "width", None), getattr(encoder, "grid_size", None)
    expected = (images.shape[0], width, grid, grid)
    require(isinstance(first, torch.Tensor) and first.is_floating_point() and tuple(first.shape) == expected,
            "features shape", subject, lambda: f"for images {tuple(images.shape)} it must return float features "
                                               f"[B, width, grid_size, grid_size] = {list(expected)}, got "
                                               f"{describe_value(first)}")
    require(bool(torch.isfinite(first).all()), "features shape", subject, "it returned non-finite features")
    require(torch.equal(first, second), "determinism", subject, "the same images gave different features")
    alone = torch.cat([encoder(images[b:b + 1]) for b in range(images.shape[0])])
    require(torch.allclose(alone, first, rtol=1e-4, atol=1e-5), "per-sample features", subject,
            "a sample's features change with the other samples of the batch")
    _check_no_gradient(encoder, images, subject)
    channels = getattr(encoder, "in_channels", 1)
    if channels != 1:
        repeated = encoder(images.expand(-1, channels, -1, -1).contiguous())
        require(torch.allclose(repeated, first, rtol=1e-5, atol=1e-6), "channels", subject,
                lambda: f"grey images repeated to its {channels} channels give other features than the grey images")
    _check_frozen(encoder, subject)  # still frozen after being used
    return first


def _check_frozen(encoder: Any, subject: str) -> None:
    trainable = [name for name, param in encoder.named_parameters() if param.requires_grad]
    require(not trainable, "frozen encoder", subject,
            lambda: f"parameters that require a gradient: {', '.join(trainable[:5])}")
    encoder.train()
    training = [name or "(the encoder)" for name, module in encoder.named_modules() if module.training]
    require(not training, "frozen encoder", subject,
            lambda: f"after .train() these modules are in training mode: {', '.join(training[:5])}")


def _check_no_gradient(encoder: Any, images: torch.Tensor, subject: str) -> None:
    """A projector trained on the features gets a gradient; the encoder gets none."""
    features = encoder(images)
    projector = torch.ones(features.shape[1], requires_grad=True)  # [D]: a one-output linear map
    loss = torch.einsum("bdhw,d->bhw", features, projector).square().mean()
    loss.backward()
    require(projector.grad is not None and bool(projector.grad.abs().sum() > 0), "no gradient to the encoder",
            subject, "a projector on its features got no gradient")
    reached = [name for name, param in encoder.named_parameters() if param.grad is not None]
    require(not reached, "no gradient to the encoder", subject,
            lambda: f"a loss on the features reached its parameters {', '.join(reached[:5])}")
