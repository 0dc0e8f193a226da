"""The encoder plugins (kind ``encoder``): which frozen network representation alignment aligns to.

Example: ``{"name": "dinov2", "size": "base", "path": "weights/vit_base_patch14_dinov2.safetensors"}``
(REPA's target), ``{"name": "digits_ssl"}`` (the shipped digits encoder), or either with
``"weights": "random"`` (the control: an untrained network of the same shape, drawn from ``seed``).
Every encoder spec has ``weights`` and ``seed``; ``spec.build()`` returns a :class:`FrozenEncoder`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from maskdit.config.registry import one_of, register
from maskdit.config.spec_model import SEED_MAX, SpecModel
from maskdit.encoders.digits_ssl import DigitsSSLEncoder, build_digits_ssl
from maskdit.encoders.dinov2 import PATCH_SIZE, DINOv2Encoder, build_dinov2

WEIGHTS_DESCRIPTION = ("'pretrained': the trained weights; 'random': the same network drawn from seed (the control "
                       "that aligns to an untrained encoder; nothing is read from disk)")
SEED_DESCRIPTION = "seed of the random weights (weights='random' only)"


@register("encoder")
class DINOv2Spec(SpecModel):
    """DINOv2 (ViT-S/B/L/G, patch 14) through timm; features: the final normalised patch tokens."""

    # the shipped contract tests build the first example with random weights: small and quick
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "dinov2", "size": "small", "registers": True, "image_size": 28, "weights": "random"},
        {"name": "dinov2", "size": "base", "path": "weights/vit_base_patch14_dinov2.lvd142m.safetensors"},
    ]})

    name: Literal["dinov2"] = "dinov2"
    size: Literal["small", "base", "large", "giant"] = Field(
        "base", description="ViT-S/14, B/14 (REPA's default), L/14 or G/14")
    registers: bool = Field(False, description="the variant with 4 register tokens (Darcet et al. 2024)")
    image_size: int = Field(224, ge=PATCH_SIZE, le=1036,
                            description="side images are resized to, a multiple of 14 (REPA: 224 for 256 px images)")
    weights: Literal["pretrained", "random"] = Field("pretrained", description=WEIGHTS_DESCRIPTION)
    source: Literal["file", "hub"] = Field(
        "file", description="where pretrained weights come from: 'file' (path, safetensors in timm's layout) or "
                            "'hub' (timm's model.safetensors on the Hugging Face hub, downloaded once)")
    path: str | None = Field(None, min_length=1, description="the safetensors weights file (source='file')")
    seed: int = Field(0, ge=0, le=SEED_MAX, description=SEED_DESCRIPTION)

    @model_validator(mode="after")
    def _consistent(self) -> DINOv2Spec:
        if self.image_size % PATCH_SIZE:
            raise ValueError(f"image_size {self.image_size} must be a multiple of the patch size {PATCH_SIZE}")
        if self.weights == "random" and (self.path is not None or self.source == "hub"):
            raise ValueError("weights='random' reads no weights: drop path and source")
        if self.weights == "pretrained" and self.source == "file" and self.path is None:
            raise ValueError("pretrained weights from a file need 'path' (a safetensors file), or source='hub'")
        if self.source == "hub" and self.path is not None:
            raise ValueError("source='hub' downloads the weights: drop path, or use source='file'")
        return self

    def build(self, **context: Any) -> DINOv2Encoder:
        return build_dinov2(self.size, registers=self.registers, image_size=self.image_size, weights=self.weights,
                            source=self.source, path=self.path, seed=self.seed)


@register("encoder")
class DigitsSSLSpec(SpecModel):
    """The digits ViT trained without labels (masked autoencoding); features [B, 128, 8, 8]."""

    name: Literal["digits_ssl"] = "digits_ssl"
    weights: Literal["pretrained", "random"] = Field("pretrained", description=WEIGHTS_DESCRIPTION)
    path: str | None = Field(None, min_length=1, description="another weights file; None: the packaged one "
                                                             "(its SHA-256 checked)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description=SEED_DESCRIPTION)

    @model_validator(mode="after")
    def _consistent(self) -> DigitsSSLSpec:
        if self.weights == "random" and self.path is not None:
            raise ValueError("weights='random' reads no weights: drop path")
        return self

    def build(self, **context: Any) -> DigitsSSLEncoder:
        return build_digits_ssl(weights=self.weights, path=self.path, seed=self.seed)


#: a registered encoder (a JSON object naming it)
EncoderSpec = one_of("encoder")
