"""The sampler section: which sampler, its steps and noise range, and guidance."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from maskdit.spec_base import SpecModel


class _KarrasSamplerSpec(SpecModel):
    steps: int = Field(40, ge=1, le=10_000, description="number of noise levels (EDM's N)")
    sigma_min: float = Field(0.002, gt=0, description="smallest noise level")
    sigma_max: float = Field(80.0, gt=0, description="largest noise level")
    rho: float = Field(7.0, gt=0, description="EDM time-step exponent")
    cfg_scale: float = Field(1.0, ge=0, le=100, description="classifier-free guidance scale (1 = off)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


class HeunSamplerSpec(_KarrasSamplerSpec):
    """EDM Algorithm 2 (2nd order Heun)."""

    name: Literal["heun"] = "heun"


class EulerSamplerSpec(_KarrasSamplerSpec):
    """First-order Euler on the probability-flow ODE."""

    name: Literal["euler"] = "euler"


SamplerSpec = Annotated[Union[HeunSamplerSpec, EulerSamplerSpec], Field(discriminator="name")]
