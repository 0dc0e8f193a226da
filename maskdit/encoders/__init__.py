"""Frozen representation encoders, what representation alignment (REPA) aligns a model's tokens to.

``build_encoder({"name": "digits_ssl"})`` or ``build_encoder(spec)`` gives a
:class:`FrozenEncoder`: ``encoder(images [B, C, H, W] in [-1, 1]) -> features [B, D, h, w]``,
``D = encoder.width``, on the encoder's own ``grid_size`` x ``grid_size`` patch grid; frozen and
always in eval mode. Built in: ``dinov2`` (timm, optional: ``pip install 'maskdit[repa]'``) and
``digits_ssl`` (shipped, trained without labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from maskdit.config.errors import InputError
from maskdit.config.registry import Registry, registry
from maskdit.encoders import specs
from maskdit.encoders.base import FrozenEncoder
from maskdit.encoders.digits_ssl import DigitsSSLEncoder, DigitsViT, build_digits_ssl, load_digits_ssl
from maskdit.encoders.dinov2 import DINOv2Encoder, build_dinov2, create_network, timm_name
from maskdit.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalise, resize_square
from maskdit.encoders.specs import DigitsSSLSpec, DINOv2Spec, EncoderSpec

#: the registered encoders: spec.build() -> FrozenEncoder
ENCODERS: Registry = registry("encoder")


def build_encoder(spec: Any, **context: Any) -> FrozenEncoder:
    """The encoder a spec describes: a validated spec, its JSON object (a dict, validated here: an
    InputError with one ``encoder.field: problem`` line per problem), or a registered name."""
    if isinstance(spec, Mapping):
        try:
            spec = TypeAdapter(EncoderSpec).validate_python(dict(spec))
        except ValidationError as err:
            raise InputError.from_validation(err, dict(spec), prefix="encoder") from None
    return ENCODERS.build(spec, **context)


__all__ = [
    "DINOv2Encoder",
    "DINOv2Spec",
    "DigitsSSLEncoder",
    "DigitsSSLSpec",
    "DigitsViT",
    "ENCODERS",
    "EncoderSpec",
    "FrozenEncoder",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build_digits_ssl",
    "build_dinov2",
    "build_encoder",
    "create_network",
    "imagenet_normalise",
    "load_digits_ssl",
    "resize_square",
    "specs",
    "timm_name",
]
