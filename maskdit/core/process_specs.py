"""The noising process of a model (``model.process``): one plugin kind, one wrapper each.

Whatever the process, the built model is a Denoiser in EDM's sigma space
(``denoiser(x, sigma, *, labels=None, mask=None) -> x0_hat``); the process decides what the
network is fed and what it predicts:

- ``edm``: x = x0 + sigma eps, EDM's preconditioning, F predicts x0 through c_skip / c_out
  (Karras et al. 2022, Table 1; MaskDiT);
- ``vp``: DDPM's discrete variance-preserving chain, F predicts eps from integer-scale timesteps
  (Ho et al. 2020; DiT);
- ``flow``: the linear interpolant in SiT's or REPA's time convention, F predicts v (or x0 / eps)
  from t in [0, 1] (Ma et al. 2024; Yu et al. 2025).

A process plugin's ``build(net=, spec=)`` returns the wrapper around the backbone; its
``noise_problem(noise)`` names a training noise distribution that makes no sense for it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from maskdit.config.registry import register
from maskdit.config.spec_model import SpecModel
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.flow_denoiser import FlowDenoiser
from maskdit.processes.flow import has_velocity


class ProcessSpecBase(SpecModel):
    """What every process plugin has. ``precond`` is the wrapper's name (its ``precond`` attribute)."""

    precond: ClassVar[str] = ""

    @property
    def parameterisation(self) -> str:
        """What the network predicts, in words (for summaries)."""
        return "x0"

    @property
    def network_time(self) -> str:
        """What the network is fed as its time, in words (for summaries)."""
        return ""

    @property
    def defined_at_pure_noise(self) -> bool:
        """Whether the model has a value at pure noise (sigma = inf), where SiT's samplers start."""
        return False

    def noise_problem(self, noise: Any) -> str | None:
        """Why the training noise distribution ``noise`` (a noise spec) does not fit, or None."""
        return None

    def build(self, *, net: Any, spec: Any, **context: Any):
        raise NotImplementedError(f"{type(self).__name__} must define build(net=, spec=)")


@register("process")
class EDMProcessSpec(ProcessSpecBase):
    """EDM's variance-exploding process with EDM's preconditioning (Karras et al. 2022)."""

    name: Literal["edm"] = "edm"
    precond: ClassVar[str] = "edm"
    sigma_data: float = Field(0.5, ge=1e-4, le=100,  # below 1e-4 the preconditioning overflows float32
                              description="EDM sigma_data: standard deviation of the data")

    @property
    def parameterisation(self) -> str:
        return f"x0 through EDM's preconditioning (sigma_data {self.sigma_data:g})"

    @property
    def network_time(self) -> str:
        return "ln(sigma) / 4"

    def noise_problem(self, noise: Any) -> str | None:
        if getattr(noise, "shift", 1.0) != 1.0:
            return (f"a time shift ({noise.shift:g}) belongs to flow matching; model.process 'edm' trains on "
                    f"sigma directly (move p_mean instead, or use process 'flow')")
        return None

    def build(self, *, net: Any, spec: Any, **context: Any) -> Denoiser:
        return Denoiser(net, spec, sigma_data=self.sigma_data)


@register("process")
class VPProcessSpec(ProcessSpecBase):
    """DDPM's discrete variance-preserving process; the network predicts eps (Ho et al. 2020; DiT)."""

    name: Literal["vp"] = "vp"
    precond: ClassVar[str] = "ddpm"
    num_timesteps: int = Field(1000, ge=2, le=100_000, description="timesteps T the network was trained on")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta_0")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta_{T-1}")
    beta_schedule: Literal["linear", "scaled_linear"] = Field("linear", description="how betas go from start to end")

    @model_validator(mode="after")
    def _ordered(self) -> VPProcessSpec:  # refused here, not when the model is built (at training start)
        if self.beta_start > self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must not exceed beta_end ({self.beta_end})")
        return self

    @property
    def parameterisation(self) -> str:
        return "eps"

    @property
    def network_time(self) -> str:
        return f"DDPM timestep 0..{self.num_timesteps - 1}"

    def noise_problem(self, noise: Any) -> str | None:
        if getattr(noise, "flow_time", False):
            return (f"{noise.name!r} draws flow-matching times; model.process 'vp' is DDPM's epsilon model "
                    f"(train it on 'ddpm' timesteps, or use process 'flow')")
        return None

    def build(self, *, net: Any, spec: Any, **context: Any) -> DDPMDenoiser:
        denoiser = DDPMDenoiser(net, spec, num_steps=self.num_timesteps, beta_start=self.beta_start,
                                beta_end=self.beta_end, beta_schedule=self.beta_schedule)
        return denoiser.to(next(net.parameters()).device)


@register("process")
class FlowProcessSpec(ProcessSpecBase):
    """The linear interpolant (rectified flow): SiT's convention (t = 1 at data) or REPA's (t = 1 at noise)."""

    name: Literal["flow"] = "flow"
    precond: ClassVar[str] = "flow"
    convention: Literal["sit", "repa"] = Field(
        "repa", description="'sit': x_t = t x + (1 - t) eps (SiT, LightningDiT); "
                            "'repa': x_t = (1 - t) x + t eps (REPA, SPRINT, SD3)")
    prediction: Literal["v", "x0", "eps"] = Field("v", description="what the network predicts: the velocity "
                                                                    "(SiT, REPA, SPRINT), the data or the noise")

    @property
    def parameterisation(self) -> str:
        return self.prediction

    @property
    def defined_at_pure_noise(self) -> bool:
        return has_velocity(self.prediction, math.inf)  # an eps network's noise says nothing of x0 there

    @property
    def network_time(self) -> str:
        return f"t in [0, 1], {'1 = data (SiT)' if self.convention == 'sit' else '1 = noise (REPA)'}"

    def noise_problem(self, noise: Any) -> str | None:
        if getattr(noise, "name", None) == "ddpm":
            return "'ddpm' draws DDPM's discrete timesteps; model.process 'flow' trains on continuous t"
        return None

    def build(self, *, net: Any, spec: Any, **context: Any) -> FlowDenoiser:
        return FlowDenoiser(net, spec, convention=self.convention, prediction=self.prediction)


#: old ``model.precond`` values -> process names (specs saved before model.process existed)
PRECOND_PROCESS = {"edm": "edm", "ddpm": "vp", "flow": "flow"}
