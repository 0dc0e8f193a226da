"""The sampler section: which sampler, how many steps, its sigma schedule, and guidance.

Example: ``{"name": "heun", "steps": 40, "cfg_scale": 1.5}`` (EDM schedule by default) or
``{"name": "ddim", "steps": 50, "eta": 0.0, "schedule": {"name": "ddpm", "spacing": "leading"}}``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from maskdit.spec_base import SpecModel


class _RangeSchedule(SpecModel):
    sigma_min: float = Field(0.002, gt=0, le=1e4, description="smallest nonzero noise level")
    sigma_max: float = Field(80.0, gt=0, le=1e4, description="largest noise level (x starts as sigma_max * noise)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


class KarrasScheduleSpec(_RangeSchedule):
    """EDM's time steps (Karras et al. 2022, eq. 5)."""

    name: Literal["karras"] = "karras"
    rho: float = Field(7.0, gt=0, le=100, description="EDM time-step exponent")


class LogLinearScheduleSpec(_RangeSchedule):
    """Levels evenly spaced in log(sigma)."""

    name: Literal["loglinear"] = "loglinear"


class DDPMScheduleSpec(SpecModel):
    """The discrete DDPM (VP) schedule, respaced to the sampler's steps."""

    name: Literal["ddpm"] = "ddpm"
    num_timesteps: int = Field(1000, ge=2, le=100_000, description="training timesteps T")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta_0")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta_{T-1}")
    beta_schedule: Literal["linear", "scaled_linear"] = Field("linear", description="how betas go from start to end")
    spacing: Literal["leading", "trailing", "linspace"] = Field("leading", description="which timesteps a respaced run visits")
    steps_offset: int = Field(0, ge=0, le=1000, description="added to 'leading' timesteps (diffusers' steps_offset)")

    @model_validator(mode="after")
    def _ordered(self) -> DDPMScheduleSpec:
        if self.beta_start > self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must not exceed beta_end ({self.beta_end})")
        return self


SigmaScheduleSpec = Annotated[
    Union[KarrasScheduleSpec, LogLinearScheduleSpec, DDPMScheduleSpec], Field(discriminator="name")
]


class _SamplerBase(SpecModel):
    steps: int = Field(40, ge=1, le=10_000, description="number of steps (noise levels before the final 0)")
    schedule: SigmaScheduleSpec = Field(KarrasScheduleSpec(), description="sigma schedule the steps visit")
    cfg_scale: float = Field(1.0, ge=0, le=100, description="classifier-free guidance scale (1 = off)")
    cfg_interval: tuple[float, float] | None = Field(
        None, description="(sigma_lo, sigma_hi): guide only inside this noise range (None = everywhere)"
    )
    cfg_channels: int | None = Field(
        None, ge=1, le=64, description="guide only the first k channels (DiT guides 3 of 4); None = all"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.cfg_interval is not None:
            lo, hi = self.cfg_interval
            if not 0 <= lo <= hi:
                raise ValueError(f"cfg_interval must be (lo, hi) with 0 <= lo <= hi, got {self.cfg_interval}")
        if isinstance(self.schedule, DDPMScheduleSpec) and self.steps > self.schedule.num_timesteps:
            raise ValueError(f"{self.steps} steps exceed the DDPM schedule's {self.schedule.num_timesteps} timesteps")
        return self

    @property
    def sigma_min(self) -> float:
        """Smallest nonzero noise level visited."""
        from maskdit.samplers import build_sigmas  # local import: the package imports this module

        return float(build_sigmas(self.schedule, self.steps)[-2])

    @property
    def sigma_max(self) -> float:
        """Largest noise level visited (where sampling starts)."""
        from maskdit.samplers import build_sigmas

        return float(build_sigmas(self.schedule, self.steps)[0])


class _ChurnSampler(_SamplerBase):
    s_churn: float = Field(0.0, ge=0, le=1000, description="EDM S_churn (0 = deterministic ODE)")
    s_tmin: float = Field(0.0, ge=0, description="churn only at sigma >= s_tmin")
    s_tmax: float | None = Field(None, ge=0, description="churn only at sigma <= s_tmax (None = no limit)")
    s_noise: float = Field(1.0, ge=0, le=10, description="EDM S_noise, scale of the churn noise")

    @model_validator(mode="after")
    def _churn_range(self):
        if self.s_tmax is not None and self.s_tmax < self.s_tmin:
            raise ValueError(f"s_tmax ({self.s_tmax}) must be >= s_tmin ({self.s_tmin})")
        return self


class HeunSamplerSpec(_ChurnSampler):
    """EDM Algorithm 2 (2nd-order Heun, optional churn)."""

    name: Literal["heun"] = "heun"


class EulerSamplerSpec(_ChurnSampler):
    """First-order Euler on the probability-flow ODE (optional churn)."""

    name: Literal["euler"] = "euler"


class DDPMSamplerSpec(_SamplerBase):
    """Ancestral DDPM with the fixed small posterior variance."""

    name: Literal["ddpm"] = "ddpm"
    steps: int = Field(250, ge=1, le=100_000, description="number of (respaced) DDPM steps")
    schedule: SigmaScheduleSpec = Field(DDPMScheduleSpec(), description="sigma schedule the steps visit")


class DDIMSamplerSpec(_SamplerBase):
    """DDIM with stochasticity eta (0 = deterministic)."""

    name: Literal["ddim"] = "ddim"
    steps: int = Field(50, ge=1, le=100_000, description="number of (respaced) DDIM steps")
    schedule: SigmaScheduleSpec = Field(DDPMScheduleSpec(), description="sigma schedule the steps visit")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM eta: 0 = ODE, 1 = DDPM posterior noise")


class DPMpp2MSamplerSpec(_SamplerBase):
    """DPM-Solver++(2M), multistep second order."""

    name: Literal["dpmpp_2m"] = "dpmpp_2m"
    steps: int = Field(20, ge=1, le=10_000, description="number of steps")


SamplerSpec = Annotated[
    Union[HeunSamplerSpec, EulerSamplerSpec, DDPMSamplerSpec, DDIMSamplerSpec, DPMpp2MSamplerSpec],
    Field(discriminator="name"),
]
