"""The sampler section: which sampler, how many steps, its sigma schedule, and guidance.

Example: ``{"name": "heun", "steps": 40, "cfg_scale": 1.5}`` (EDM schedule by default) or
``{"name": "ddim", "steps": 50, "eta": 0.0, "schedule": {"name": "ddpm", "spacing": "leading"}}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from maskdit.config.registry import one_of, register
from maskdit.config.spec_model import FloatOrInfinity, SpecModel
from maskdit.samplers.ddim import sample_ddim
from maskdit.samplers.ddpm import sample_ddpm
from maskdit.samplers.dpmpp import sample_dpmpp_2m
from maskdit.samplers.euler import sample_euler
from maskdit.samplers.heun import sample_heun
from maskdit.samplers.ready import sampler_from_spec
from maskdit.samplers.sigmas import (
    get_sigmas_ddpm,
    get_sigmas_karras,
    get_sigmas_loglinear,
)


class _RangeSchedule(SpecModel):
    sigma_min: float = Field(0.002, gt=0, le=1e4, description="smallest nonzero noise level")
    sigma_max: float = Field(80.0, gt=0, le=1e4, description="largest noise level (x starts as sigma_max * noise)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


@register("sigma_schedule")
class KarrasScheduleSpec(_RangeSchedule):
    """EDM's time steps (Karras et al. 2022, eq. 5)."""

    name: Literal["karras"] = "karras"
    rho: float = Field(7.0, gt=0, le=100, description="EDM time-step exponent")

    @model_validator(mode="after")
    def _representable(self) -> KarrasScheduleSpec:
        _check_levels(lambda: get_sigmas_karras(2, self.sigma_min, self.sigma_max, self.rho),
                      f"rho {self.rho} with sigmas in [{self.sigma_min}, {self.sigma_max}]")
        return self

    def build(self, *, steps: int, device: Any = None, **context: Any):
        return get_sigmas_karras(steps, self.sigma_min, self.sigma_max, self.rho, device=device)


@register("sigma_schedule")
class LogLinearScheduleSpec(_RangeSchedule):
    """Levels evenly spaced in log(sigma)."""

    name: Literal["loglinear"] = "loglinear"

    def build(self, *, steps: int, device: Any = None, **context: Any):
        return get_sigmas_loglinear(steps, self.sigma_min, self.sigma_max, device=device)


@register("sigma_schedule")
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
        # the last timestep is the noisiest ('trailing' with one step visits exactly it)
        _check_levels(lambda: get_sigmas_ddpm(1, num_timesteps=self.num_timesteps, beta_start=self.beta_start,
                                              beta_end=self.beta_end, beta_schedule=self.beta_schedule,
                                              spacing="trailing"),
                      f"{self.num_timesteps} timesteps with betas up to {self.beta_end}")
        return self

    def build(self, *, steps: int, device: Any = None, **context: Any):
        return get_sigmas_ddpm(steps, num_timesteps=self.num_timesteps, beta_start=self.beta_start,
                               beta_end=self.beta_end, beta_schedule=self.beta_schedule, spacing=self.spacing,
                               steps_offset=self.steps_offset, device=device)


def _check_levels(make: Callable[[], Any], what: str) -> None:
    """A schedule whose noise levels overflow or underflow float64 validates but cannot run: refuse it."""
    try:
        levels = make()[:-1].tolist()  # the final 0 aside
    except OverflowError:
        levels = [math.inf]
    if not all(math.isfinite(level) and level > 0 for level in levels):
        raise ValueError(f"{what} give noise levels {levels} outside float64's finite positive range")


#: a registered sigma schedule; ``schedule.build(steps=n)`` gives the [n + 1] float64 sigmas
SigmaScheduleSpec = one_of("sigma_schedule")


class SamplerSpecBase(SpecModel):
    """What every sampler spec has: steps, a sigma schedule, guidance. A sampler plugin subclasses
    this, adds ``name: Literal[...]`` and its options, and implements :meth:`sample_function`
    (and :meth:`options` when it has any); ``build`` then makes the ready ``Sampler``."""

    #: denoiser evaluations per step and on the last step (for FLOP counts)
    evals_per_step: ClassVar[tuple[int, int]] = (1, 1)

    steps: int = Field(40, ge=1, le=10_000, description="number of steps (noise levels before the final 0)")
    schedule: SigmaScheduleSpec = Field(KarrasScheduleSpec(), description="sigma schedule the steps visit")
    cfg_scale: float = Field(1.0, ge=0, le=100, description="classifier-free guidance scale (1 = off)")
    cfg_interval: tuple[float, FloatOrInfinity] | None = Field(
        None, description="(sigma_lo, sigma_hi): guide only inside this noise range (None = everywhere); "
                          "sigma_hi may be \"Infinity\" (no upper limit)"
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
        return float(self.schedule.build(steps=self.steps)[-2])

    @property
    def sigma_max(self) -> float:
        """Largest noise level visited (where sampling starts)."""
        return float(self.schedule.build(steps=self.steps)[0])

    def sample_function(self) -> Callable[..., Any]:
        """The pure function ``sample_<name>(denoiser, x, sigmas, **options) -> x0``."""
        raise NotImplementedError(f"{type(self).__name__} must define sample_function()")

    def options(self) -> dict[str, Any]:
        """Keyword options passed to the sample function."""
        return {}

    def build(self, *, null_label: int | None = None, **context: Any):
        """The ready ``Sampler`` (guidance included when cfg_scale != 1; ``null_label``: the
        model's num_classes, else taken from the denoiser at call time)."""
        return sampler_from_spec(self, self.sample_function(), self.schedule.build(steps=self.steps),
                                 options=self.options(), evals_per_step=self.evals_per_step, null_label=null_label)


class _ChurnSampler(SamplerSpecBase):
    s_churn: float = Field(0.0, ge=0, le=1000, description="EDM S_churn (0 = deterministic ODE)")
    s_tmin: float = Field(0.0, ge=0, description="churn only at sigma >= s_tmin (finite)")
    s_tmax: FloatOrInfinity | None = Field(
        None, ge=0, description="churn only at sigma <= s_tmax (None or \"Infinity\", EDM's default = no limit)"
    )
    s_noise: float = Field(1.0, ge=0, le=10, description="EDM S_noise, scale of the churn noise")

    @model_validator(mode="after")
    def _churn_range(self):
        if self.s_tmax is not None and self.s_tmax < self.s_tmin:
            raise ValueError(f"s_tmax ({self.s_tmax}) must be >= s_tmin ({self.s_tmin})")
        return self

    def options(self) -> dict[str, Any]:
        return {"s_churn": self.s_churn, "s_tmin": self.s_tmin, "s_tmax": self.s_tmax, "s_noise": self.s_noise}


@register("sampler")
class HeunSamplerSpec(_ChurnSampler):
    """EDM Algorithm 2 (2nd-order Heun, optional churn)."""

    name: Literal["heun"] = "heun"
    evals_per_step: ClassVar[tuple[int, int]] = (2, 1)

    def sample_function(self):
        return sample_heun


@register("sampler")
class EulerSamplerSpec(_ChurnSampler):
    """First-order Euler on the probability-flow ODE (optional churn)."""

    name: Literal["euler"] = "euler"

    def sample_function(self):
        return sample_euler


@register("sampler")
class DDPMSamplerSpec(SamplerSpecBase):
    """Ancestral DDPM with the fixed small posterior variance."""

    name: Literal["ddpm"] = "ddpm"
    steps: int = Field(250, ge=1, le=100_000, description="number of (respaced) DDPM steps")
    schedule: SigmaScheduleSpec = Field(DDPMScheduleSpec(), description="sigma schedule the steps visit")

    def sample_function(self):
        return sample_ddpm


@register("sampler")
class DDIMSamplerSpec(SamplerSpecBase):
    """DDIM with stochasticity eta (0 = deterministic)."""

    name: Literal["ddim"] = "ddim"
    steps: int = Field(50, ge=1, le=100_000, description="number of (respaced) DDIM steps")
    schedule: SigmaScheduleSpec = Field(DDPMScheduleSpec(), description="sigma schedule the steps visit")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM eta: 0 = ODE, 1 = DDPM posterior noise")

    def sample_function(self):
        return sample_ddim

    def options(self) -> dict[str, Any]:
        return {"eta": self.eta}


@register("sampler")
class DPMpp2MSamplerSpec(SamplerSpecBase):
    """DPM-Solver++(2M), multistep second order."""

    name: Literal["dpmpp_2m"] = "dpmpp_2m"
    steps: int = Field(20, ge=1, le=10_000, description="number of steps")

    def sample_function(self):
        return sample_dpmpp_2m


#: a registered sampler (a JSON object naming it)
SamplerSpec = one_of("sampler")
