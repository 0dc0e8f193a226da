"""The model section of a spec: a MaskDiT encoder-decoder (decoder depth 0 = plain DiT)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from maskdit.core.presets import MODEL_PRESETS
from maskdit.spec_base import SpecModel


class ModelSpec(SpecModel):
    """Architecture. ``preset`` fills every architecture field not given explicitly."""

    preset: str | None = Field(None, description="named architecture, e.g. 'MaskDiT-S/2' or 'DiT-XL/2'")
    input_size: int = Field(32, ge=1, le=1024, description="side of the (latent) input, in pixels")
    in_channels: int = Field(4, ge=1, le=64, description="channels of the (latent) input")
    patch_size: int = Field(2, ge=1, le=64, description="side of a square patch token")
    depth: int = Field(12, ge=1, le=128, description="encoder blocks")
    hidden_size: int = Field(384, ge=8, le=8192, description="encoder width")
    num_heads: int = Field(6, ge=1, le=128, description="encoder attention heads")
    mlp_ratio: float = Field(4.0, gt=0, le=16, description="MLP hidden width / block width")
    decoder_depth: int = Field(8, ge=0, le=128, description="decoder blocks; 0 = plain DiT")
    decoder_hidden_size: int = Field(512, ge=8, le=8192, description="decoder width")
    decoder_num_heads: int = Field(16, ge=1, le=128, description="decoder attention heads")
    num_classes: int = Field(1000, ge=0, le=1_000_000, description="label classes; 0 = unconditional")
    label_embedder: Literal["table", "onehot"] = Field(
        "onehot", description="'table': DiT's table with a learned null row; 'onehot': reference MaskDiT"
    )
    block: Literal["dit"] = Field("dit", description="transformer block plugin")
    learn_sigma: bool = Field(False, description="also predict a variance (2C output channels), as DiT does")
    qk_norm: bool = Field(False, description="LayerNorm on queries and keys (guards against late-training NaNs)")
    precond: Literal["edm", "ddpm"] = Field(
        "edm", description="'edm': EDM preconditioning (Karras et al. 2022); 'ddpm': epsilon net on DDPM timesteps (DiT)"
    )
    sigma_data: float = Field(0.5, gt=0, le=100, description="EDM sigma_data: standard deviation of the data")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in MODEL_PRESETS:
                raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(MODEL_PRESETS)}")
            data = {**MODEL_PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not divisible by patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.decoder_depth and self.decoder_hidden_size % self.decoder_num_heads:
            raise ValueError(
                f"decoder_hidden_size {self.decoder_hidden_size} is not divisible by "
                f"decoder_num_heads {self.decoder_num_heads}"
            )
        return self

    @property
    def grid_size(self) -> int:
        """Tokens per side."""
        return self.input_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2

    @property
    def out_channels(self) -> int:
        """Channels the network predicts: C, or 2C with a learned variance."""
        return 2 * self.in_channels if self.learn_sigma else self.in_channels
