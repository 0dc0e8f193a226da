"""Sampler section plugins for flow time: the uniform_t grid and SiT's dopri5 / Euler-Maruyama.

``{"name": "heun", "steps": 249, "schedule": {"name": "uniform_t"}}`` is SiT's ODE heun2 with
num_sampling_steps 250; ``{"name": "euler_maruyama"}`` is SiT's SDE defaults (250 steps, diffusion
'sigma', last step 'mean' of size 0.04); ``{"name": "dopri5"}`` SiT's default ODE sampler.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from maskdit.config.registry import register, registry
from maskdit.config.spec_model import SpecModel
from maskdit.samplers.flow_ode import sample_dopri5
from maskdit.samplers.flow_sde import DiffusionForm, LastStep, sample_euler_maruyama
from maskdit.samplers.sigmas import get_sigmas_uniform_t
from maskdit.samplers.specs import SamplerSpecBase, SigmaScheduleSpec


@register("sigma_schedule")
class UniformTimeScheduleSpec(SpecModel):
    """Steps evenly spaced in the flow's noise-end time s (REPA's t; SiT's t is 1 - s), optionally
    shifted (SD3); sigma = s / (1 - s). It may start at pure noise (t_max = 1, sigma = inf), as
    SiT's and REPA's samplers do: only flow-space samplers start there (euler, heun, dopri5,
    euler_maruyama). SiT's ``num_sampling_steps`` N is ``steps`` = N - 1 intervals."""

    name: Literal["uniform_t"] = "uniform_t"
    #: a grid on the flow's time: euler and heun run their flow-space versions on it
    flow_time: ClassVar[bool] = True
    shift: float = Field(1.0, gt=0, le=1000, description="SD3's time shift a: s' = a s / (1 + (a - 1) s), i.e. "
                                                           "sigma' = a sigma (1 = none)")
    t_max: float = Field(1.0, gt=0, le=1, description="noise-end time where sampling starts (1 = pure noise, "
                                                        "SiT's t = 0; an EDM model needs < 1)")
    t_min: float = Field(0.0, ge=0, lt=1, description="noise-end time where sampling stops (0 = the data; SiT's "
                                                        "sample_eps otherwise, the grid then ends above sigma 0)")

    @model_validator(mode="after")
    def _ordered(self) -> UniformTimeScheduleSpec:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        return self

    @property
    def ends_at_data(self) -> bool:
        """Whether the grid ends at sigma = 0 (t_min = 0)."""
        return self.t_min == 0

    def build(self, *, steps: int, device: Any = None, **context: Any):
        return get_sigmas_uniform_t(steps, self.t_max, self.t_min, self.shift, device=device)


class _FlowSampler(SamplerSpecBase):
    """A sampler whose state is the flow's x_t (started at s_0 * noise), on the uniform_t grid by default."""

    runs_on_flow_time: ClassVar[bool] = True

    schedule: SigmaScheduleSpec = Field(UniformTimeScheduleSpec(), description="time grid the steps visit "
                                                                               "(sigma = s / (1 - s))")

    @property
    def state_space(self) -> str:
        return "flow"


@register("sampler")
class Dopri5SamplerSpec(_FlowSampler):
    """Adaptive Dormand-Prince 5(4) through torchdiffeq (SiT's default ODE sampler; needs
    ``pip install maskdit[flow]``). It chooses its own steps: the number of network evaluations
    is known only after a run (the callback reports it as ``nfe``)."""

    name: Literal["dopri5"] = "dopri5"
    evals_per_step: ClassVar[tuple[int, int] | None] = None
    steps: int = Field(49, ge=1, le=10_000, description="intervals of the grid the solution is reported on "
                                                         "(SiT's num_sampling_steps - 1); the result does not "
                                                         "depend on it, the solver picks its own steps")
    atol: float = Field(1e-6, gt=0, le=1, description="absolute error tolerance (SiT's default 1e-6)")
    rtol: float = Field(1e-3, gt=0, le=1, description="relative error tolerance (SiT's default 1e-3)")

    def sample_function(self):
        return sample_dopri5

    def options(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol}


@register("sampler")
class EulerMaruyamaSamplerSpec(_FlowSampler):
    """SiT's SDE sampler: Euler-Maruyama with SiT's diffusion forms and last steps. With a last
    step the grid is the schedule from t_max down to t = last_step_size in steps - 1 intervals,
    then the last step to 0 (SiT's num_sampling_steps N = steps); without one, the schedule's own
    grid (N = steps + 1)."""

    name: Literal["euler_maruyama"] = "euler_maruyama"
    steps: int = Field(250, ge=1, le=10_000, description="intervals, the last step included (SiT's "
                                                          "num_sampling_steps; steps + 1 without a last step)")
    diffusion_form: DiffusionForm = Field("sigma", description="SiT's diffusion_form w(t), lower-cased: "
                                                               "sigma, sbdm, constant, linear, decreasing, "
                                                               "increasing_decreasing")
    diffusion_norm: float = Field(1.0, ge=0, le=100, description="SiT's diffusion_norm, the scale of w(t)")
    last_step: LastStep | None = Field("mean", description="SiT's last_step, lower-cased: mean, tweedie, euler, "
                                                           "or null (Euler-Maruyama to the grid's end)")
    last_step_size: float = Field(0.04, gt=0, lt=1, description="SiT's last_step_size: the Euler-Maruyama steps "
                                                                "stop at noise-end time t = this, the last step "
                                                                "goes to 0")

    @model_validator(mode="after")
    def _grid(self) -> EulerMaruyamaSamplerSpec:
        if self.last_step is not None:
            if not isinstance(self.schedule, UniformTimeScheduleSpec):
                raise ValueError(f"last_step {self.last_step!r} sets where the uniform_t grid stops; with schedule "
                                 f"{self.schedule.name!r} use last_step null")
            if self.schedule.t_min != 0:
                raise ValueError("with a last step, last_step_size says where the Euler-Maruyama steps stop: leave "
                                 "schedule.t_min at 0")
            if not self.last_step_size < self.schedule.t_max:
                raise ValueError(f"last_step_size ({self.last_step_size}) must be below schedule.t_max "
                                 f"({self.schedule.t_max})")
            if self.steps < 2:
                raise ValueError("with a last step, steps must be >= 2 (one Euler-Maruyama step and the last step)")
            self.grid()  # a range too narrow for the steps raises ValueError here, not when sampling
        if self.diffusion_form == "sbdm" and math.isinf(self.sigma_max):
            raise ValueError("diffusion_form 'sbdm' is infinite at pure noise: set schedule.t_max below 1")
        return self

    def grid(self):
        if self.last_step is None:
            return self.schedule.build(steps=self.steps)
        body = get_sigmas_uniform_t(self.steps - 1, self.schedule.t_max, self.last_step_size, self.schedule.shift)
        return torch.cat([body, body.new_zeros(1)])  # [steps] -> [steps + 1]: the last step ends at the data

    def sample_function(self):
        return sample_euler_maruyama

    def options(self) -> dict[str, Any]:
        return {"diffusion_form": self.diffusion_form, "diffusion_norm": self.diffusion_norm,
                "last_step": self.last_step}


def follow_process_grid(section: dict[str, Any], process: Any) -> dict[str, Any]:
    """A sampler section (JSON) with the time grid ``process`` implies: a flow model that has a value
    at pure noise samples with euler / heun / the flow samplers on SiT's uniform t grid unless the
    section names a schedule; anything else is returned as given."""
    if "schedule" in section or getattr(process, "precond", None) != "flow" \
            or not getattr(process, "defined_at_pure_noise", False):
        return section
    name = section.get("name", "heun")  # heun: the default sampler section
    samplers = registry("sampler")
    if name not in samplers or not getattr(samplers.get(name), "runs_on_flow_time", False):
        return section
    return {**section, "schedule": {"name": "uniform_t"}}
