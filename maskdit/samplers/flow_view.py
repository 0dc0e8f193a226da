"""Any denoiser seen as a velocity field on the noise-end time s (what the flow samplers integrate).

The flow samplers work on the linear interpolant's state x_t = x_sigma / (1 + sigma) and time
s = sigma / (1 + sigma) (REPA's t; SiT's t is 1 - s), and integrate dx_t/ds = v_repa(x_t, s), with
x0 = x_t - s v_repa (see :mod:`maskdit.processes.flow`). Where the velocity comes from:

- a flow model (``.velocity(x_t, t)`` and ``.convention``, e.g. ``FlowDenoiser``): its own
  velocity, converted to REPA's convention (t_sit = 1 - s, v_repa = -v_sit); a v-prediction model
  answers at both ends, pure noise included, as SiT's samplers need;
- classifier-free guidance around one: the guided velocity (``ClassifierFreeGuidance.velocity``);
- any other (sigma-space) denoiser, EDM or VP: v_repa = (x_t - D(x_t / (1 - s); sigma)) / s,
  defined for 0 < s < 1 only: pure noise raises, and the data end is for the samplers to avoid
  (an Euler step ending there needs no velocity at it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from maskdit.processes.flow import has_velocity, sigma_to_t
from maskdit.samplers.common import denoise
from maskdit.samplers.guidance import ClassifierFreeGuidance

#: the error for a sigma-space model at pure noise (the one place that says it)
PURE_NOISE = ("an EDM model cannot be evaluated at pure noise: start the uniform_t grid below 1 with t_max "
              "(e.g. schedule {\"name\": \"uniform_t\", \"t_max\": 0.999})")


class SigmaModelVelocity:
    """v_repa of a sigma-space denoiser: (x_t - D(x_t (1 + sigma); sigma)) / s, for 0 < s < 1."""

    def __init__(self, denoiser: Any) -> None:
        self.denoiser = denoiser

    def defined_at(self, sigma: float) -> bool:
        return 0.0 < sigma < math.inf

    def __call__(self, x_t: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None,
                 model_dtype: torch.dtype) -> torch.Tensor:
        level = float(sigma)
        if level == math.inf:
            raise ValueError(PURE_NOISE)
        if level <= 0.0:
            raise ValueError("a sigma-space (EDM) model has no velocity at the data end (sigma = 0): end the grid "
                             "above 0 (uniform_t t_min > 0), or take an Euler step there")
        denoised = denoise(self.denoiser, x_t * (1 + sigma), sigma, labels, model_dtype)  # float64
        return (x_t - denoised) / (sigma / (1 + sigma))


class FlowModelVelocity:
    """v_repa of a model with its own velocity (``velocity(x_t, t, *, labels, mask)`` in
    ``convention``); ``guided``: the model is a ClassifierFreeGuidance, told each sample's sigma."""

    def __init__(self, model: Any, convention: str, prediction: str, *, guided: bool = False) -> None:
        self.model = model
        self.convention = convention
        self.prediction = prediction
        self.guided = guided

    def defined_at(self, sigma: float) -> bool:
        """An x0 model has no velocity at the data end, an eps model none at pure noise."""
        return has_velocity(self.prediction, sigma)

    def __call__(self, x_t: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None,
                 model_dtype: torch.dtype) -> torch.Tensor:
        batch = x_t.shape[0]
        # [] -> [B], exact ends; float32 at least: bfloat16 would round SiT's t = 0.999 to 1 (the data end)
        time_dtype = torch.float64 if model_dtype == torch.float64 else torch.float32
        t = sigma_to_t(sigma, self.convention).to(time_dtype).expand(batch).contiguous()
        extra = {"sigma": sigma.expand(batch)} if self.guided else {}
        out = self.model.velocity(x_t.to(model_dtype), t, labels=labels, **extra)
        if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the denoiser's velocity must be shaped like x {tuple(x_t.shape)}, got {got}")
        out = out.to(torch.float64)
        return out if self.convention == "repa" else -out  # v_repa = d x_t / ds = -d x_t / dt_sit


def velocity_view(denoiser: Any) -> SigmaModelVelocity | FlowModelVelocity:
    """How the flow samplers evaluate ``denoiser``: ``view(x_t, sigma, labels, model_dtype)`` ->
    v_repa in float64 (x_t float64, sigma a 0-d float64 tensor, the network run in model_dtype),
    and ``view.defined_at(sigma)``."""
    convention = getattr(denoiser, "convention", None)
    if convention is not None and callable(getattr(denoiser, "velocity", None)):
        guided = isinstance(denoiser, ClassifierFreeGuidance)
        return FlowModelVelocity(denoiser, convention, getattr(denoiser, "prediction", "v"), guided=guided)
    return SigmaModelVelocity(denoiser)
