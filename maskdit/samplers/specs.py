"""The sampler section: which sampler, how many steps, its sigma schedule, and guidance.

Example: ``{"name": "heun", "steps": 40, "cfg_scale": 1.5}`` (EDM schedule by default) or
``{"name": "ddim", "steps": 50, "eta": 0.0, "schedule": {"name": "ddpm", "spacing": "leading"}}``.
On a flow-time grid (``{"name": "uniform_t"}``) euler and heun run SiT's flow-space samplers; the
flow samplers dopri5 and euler_maruyama are in :mod:`maskdit.samplers.flow_specs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from maskdit.config.registry import one_of, register
from maskdit.config.spec_model import FloatOrInfinity, SpecModel
from maskdit.processes.flow import t_to_sigma
from maskdit.samplers.ddim import sample_ddim
from maskdit.samplers.ddpm import sample_ddpm
from maskdit.samplers.dpmpp import sample_dpmpp_2m
from maskdit.samplers.euler import sample_euler
from maskdit.samplers.flow_ode import sample_flow_euler, sample_flow_heun
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
    #: whether it can run on a flow-time grid (e.g. uniform_t) from pure noise
    runs_on_flow_time: ClassVar[bool] = False

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
    cfg_interval_t: tuple[float, float] | None = Field(
        None, description="(t_lo, t_hi) on the flow's noise-end time (REPA's t, 1 = noise; SiT's t is 1 - this): "
                          "guide only inside; REPA's t <= 0.7 is (0, 0.7), LightningDiT's SiT-time 'from t 0.11' is "
                          "(0, 0.89). The exact sigma interval s / (1 - s); not together with cfg_interval"
    )
    path_drop: bool = Field(
        False, description="path-drop guidance (SPRINT): the weak branch is the model with its sparse path dropped, "
                           "not the full model with the null label; cfg_scale, the interval and cfg_channels apply "
                           "as for cfg; costs one full pass plus the blocks outside the sparse span. Needs a model "
                           "trained with masking.path_drop"
    )
    path_drop_label: Literal["null", "same"] = Field(
        "null", description="the label of path-drop guidance's weak branch: 'null' (SPRINT's sampler) or 'same' "
                            "(the sample's own: guidance by the sparse path alone, also for unconditional models)"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.cfg_interval is not None:
            lo, hi = self.cfg_interval
            if not 0 <= lo <= hi:
                raise ValueError(f"cfg_interval must be (lo, hi) with 0 <= lo <= hi, got {self.cfg_interval}")
        if self.cfg_interval_t is not None:
            lo, hi = self.cfg_interval_t
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"cfg_interval_t must be (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1, got "
                                 f"{self.cfg_interval_t}")
            if self.cfg_interval is not None:
                raise ValueError("give the guidance interval once: cfg_interval (sigma) or cfg_interval_t (flow time)")
        if self.path_drop_label != "null" and not self.path_drop:
            raise ValueError(f"path_drop_label {self.path_drop_label!r} is the weak label of path-drop guidance: "
                             "set path_drop true (or leave path_drop_label out)")
        if isinstance(self.schedule, DDPMScheduleSpec) and self.steps > self.schedule.num_timesteps:
            raise ValueError(f"{self.steps} steps exceed the DDPM schedule's {self.schedule.num_timesteps} timesteps")
        if self.state_space == "sigma" and math.isinf(self.sigma_max):
            raise ValueError(f"sampler {self.name!r} works in EDM's sigma space and cannot start at pure noise "
                             f"(schedule {self.schedule.name!r} starts at sigma = inf): set schedule.t_max below 1, "
                             "or use a flow-space sampler (euler, heun, dopri5, euler_maruyama)")
        return self

    @property
    def needs_labels(self) -> bool:
        """Whether its guidance needs class labels (cfg, or path drop with the null label)."""
        return self.cfg_scale != 1.0 and not (self.path_drop and self.path_drop_label == "same")

    @property
    def state_space(self) -> str:
        """What the sample function's state is: 'sigma' (x = x0 + sigma eps, starting at sigma_0 *
        noise) or 'flow' (x_t = x_sigma / (1 + sigma), starting at s_0 * noise, 1 at pure noise)."""
        return "sigma"

    @property
    def flow_time_grid(self) -> bool:
        """Whether the schedule is a grid on the flow's time (e.g. uniform_t)."""
        return bool(getattr(self.schedule, "flow_time", False))

    def grid(self):
        """The [steps + 1] float64 sigmas the sampler visits."""
        return self.schedule.build(steps=self.steps)

    @property
    def sigma_min(self) -> float:
        """Smallest nonzero noise level visited."""
        sigmas = self.grid()
        return float(sigmas[-2] if sigmas[-1] == 0 else sigmas[-1])

    @property
    def sigma_max(self) -> float:
        """Largest noise level visited (where sampling starts; inf = pure noise)."""
        return float(self.grid()[0])

    def guidance_interval(self) -> tuple[float, float] | None:
        """The guidance interval in sigma: cfg_interval, or cfg_interval_t mapped by s / (1 - s)."""
        if self.cfg_interval_t is None:
            return self.cfg_interval
        lo, hi = (float(t_to_sigma(torch.tensor(t, dtype=torch.float64), "repa")) for t in self.cfg_interval_t)
        return lo, hi

    def evaluations_per_step(self) -> tuple[int, int] | None:
        """Network evaluations on a step to a nonzero level and on the step to 0 (None: adaptive)."""
        return self.evals_per_step

    def sample_function(self) -> Callable[..., Any]:
        """The pure function ``sample_<name>(denoiser, x, sigmas, **options) -> x0``."""
        raise NotImplementedError(f"{type(self).__name__} must define sample_function()")

    def options(self) -> dict[str, Any]:
        """Keyword options passed to the sample function."""
        return {}

    def build(self, *, null_label: int | None = None, **context: Any):
        """The ready ``Sampler`` (guidance included when cfg_scale != 1, path-drop guidance with
        ``path_drop``; ``null_label``: the model's num_classes, else taken from the denoiser at call time)."""
        return sampler_from_spec(self, self.sample_function(), self.grid(), options=self.options(),
                                 evals_per_step=self.evaluations_per_step(), null_label=null_label)


class _ChurnSampler(SamplerSpecBase):
    #: runs its flow-space version on a flow-time grid (a flow model's sampler section defaults to one)
    runs_on_flow_time: ClassVar[bool] = True
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

    @model_validator(mode="after")
    def _no_churn_in_flow_time(self):
        if self.flow_time_grid and self.s_churn > 0:
            raise ValueError(f"s_churn is EDM's option: on the flow-time grid {self.schedule.name!r} {self.name} runs "
                             "SiT's deterministic flow sampler (use euler_maruyama for a stochastic one)")
        return self

    @property
    def state_space(self) -> str:
        return "flow" if self.flow_time_grid else "sigma"

    def options(self) -> dict[str, Any]:
        if self.flow_time_grid:
            return {}
        return {"s_churn": self.s_churn, "s_tmin": self.s_tmin, "s_tmax": self.s_tmax, "s_noise": self.s_noise}


@register("sampler")
class HeunSamplerSpec(_ChurnSampler):
    """EDM Algorithm 2 (2nd-order Heun, optional churn); on a flow-time grid (uniform_t) SiT's ODE
    'heun2' in flow space, Heun's correction on every step, the last included."""

    name: Literal["heun"] = "heun"
    evals_per_step: ClassVar[tuple[int, int]] = (2, 1)

    def sample_function(self):
        return sample_flow_heun if self.flow_time_grid else sample_heun

    def evaluations_per_step(self) -> tuple[int, int] | None:
        # a velocity model is corrected on the step to the data too (a sigma-space model is not: one fewer)
        return (2, 2) if self.flow_time_grid else self.evals_per_step


@register("sampler")
class EulerSamplerSpec(_ChurnSampler):
    """First-order Euler on the probability-flow ODE (optional churn); on a flow-time grid
    (uniform_t) SiT's ODE 'euler' in flow space (the same steps: Euler in t = Euler in sigma)."""

    name: Literal["euler"] = "euler"

    def sample_function(self):
        return sample_flow_euler if self.flow_time_grid else sample_euler


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
