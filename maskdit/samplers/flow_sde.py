"""SiT's SDE sampler (Ma et al. 2024, sec. 3 and its ``sample_sde``): Euler-Maruyama on the
reverse-time SDE of the linear interpolant, with a choice of diffusion coefficient and last step.

In SiT's time t = 1 - s (t = 0 noise, t = 1 data), with x_t = t x0 + (1 - t) eps and a velocity
model v_sit, the score is (t v_sit - x) / (1 - t) and the sampler solves

    dx = [v_sit(x, t) + w(t) score(x, t)] dt + sqrt(2 w(t)) dW,

one Euler-Maruyama step per grid interval (dt = s_i - s_{i+1} > 0), then optionally replaces the
final interval by a deterministic last step. SiT's default run (num_sampling_steps N = 250,
last_step 'Mean', last_step_size 0.04) is the grid linspace(1, 0.04, N) in s followed by 0.
See :mod:`maskdit.samplers.flow_common` for the state (x_t, starting at s_0 * noise).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

from maskdit.processes.flow import sigma_to_t
from maskdit.samplers.common import Callback, DenoiserFn, NoiseSampler, draw_noise
from maskdit.samplers.flow_common import noise_end_times, report_flow, start_flow
from maskdit.samplers.flow_view import velocity_view

#: SiT's ``diffusion_form`` choices, lower-cased ('SBDM' -> 'sbdm', 'increasing-decreasing' ->
#: 'increasing_decreasing'), each w(t) times ``diffusion_norm``
DiffusionForm = Literal["sigma", "sbdm", "constant", "linear", "decreasing", "increasing_decreasing"]
DIFFUSION_FORMS: tuple[str, ...] = get_args(DiffusionForm)
#: SiT's ``last_step`` choices, lower-cased ('Mean', 'Tweedie', 'Euler'); None = no last step
LastStep = Literal["mean", "tweedie", "euler"]
LAST_STEPS: tuple[str, ...] = get_args(LastStep)


def diffusion_coefficient(form: str, norm: float, sigma: torch.Tensor) -> torch.Tensor:
    """SiT's w(t) for the linear path at EDM's level ``sigma`` (t = 1 / (1 + sigma), s = 1 - t):
    'constant' norm; 'sbdm' norm (1 - t) / t = norm sigma (score matching's own, infinite at pure
    noise); 'sigma' and 'linear' norm (1 - t) = norm s; 'decreasing' (norm cos(pi t) + 1)^2 / 4;
    'increasing_decreasing' norm sin(pi t)^2."""
    t = sigma_to_t(sigma, "sit")
    if form == "constant":
        return torch.full_like(t, norm)
    if form == "sbdm":
        if bool(torch.isinf(sigma).any()):
            raise ValueError("diffusion_form 'sbdm' is infinite at pure noise (SiT's own run gives NaN there): start "
                             "the uniform_t grid below 1 with t_max")
        return norm * sigma
    if form in ("sigma", "linear"):
        return norm * (1 - t)
    if form == "decreasing":
        return 0.25 * (norm * torch.cos(math.pi * t) + 1) ** 2
    if form == "increasing_decreasing":
        return norm * torch.sin(math.pi * t) ** 2
    raise ValueError(f"diffusion_form must be one of {list(DIFFUSION_FORMS)}, got {form!r}")


@torch.no_grad()
def sample_euler_maruyama(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
    diffusion_form: DiffusionForm = "sigma",
    diffusion_norm: float = 1.0,
    last_step: LastStep | None = None,
) -> torch.Tensor:
    """SiT's Euler-Maruyama sampler on the given grid, noise from ``noise_sampler`` / ``generator``.

    Per interval, at t = 1 - s_i with dt = s_i - s_{i+1}: drift = v_sit + w score, mean = x + drift
    dt, x <- mean + sqrt(2 w) sqrt(dt) z (z unit noise, drawn every step). With ``last_step`` set
    the grid must end at 0 and its final interval, of size h = s_{n-1}, is SiT's last step at
    t = 1 - h instead, without noise: 'mean' x + drift h, 'euler' x + v_sit h, 'tweedie' the data
    estimate x + (1 - t) v_sit (SiT's x / t + (1 - t)^2 / t score). One evaluation a step."""
    state, sigmas, model_dtype, noise_sampler = start_flow(x, sigmas, labels, dtype, noise_sampler, generator)
    if diffusion_form not in DIFFUSION_FORMS:
        raise ValueError(f"diffusion_form must be one of {list(DIFFUSION_FORMS)}, got {diffusion_form!r}")
    if isinstance(diffusion_norm, bool) or not isinstance(diffusion_norm, (int, float)) or not (
            0 <= diffusion_norm < math.inf):
        raise ValueError(f"diffusion_norm must be a finite number >= 0, got {diffusion_norm!r}")
    if last_step is not None and last_step not in LAST_STEPS:
        raise ValueError(f"last_step must be one of {list(LAST_STEPS)} or None, got {last_step!r}")
    if last_step is not None and float(sigmas[-1]) != 0.0:
        raise ValueError(f"last_step {last_step!r} replaces a final step to the data: the sigmas must end in 0, "
                         f"not {float(sigmas[-1])!r}")
    velocity = velocity_view(denoiser)
    times = noise_end_times(sigmas)
    steps = sigmas.numel() - 1
    for i in range(steps):
        sigma, s, dt = sigmas[i], times[i], times[i] - times[i + 1]
        v_sit = -velocity(state, sigma, labels, model_dtype)
        denoised = state + s * v_sit
        final = last_step is not None and i == steps - 1
        if final and last_step == "euler":
            state = state + v_sit * dt
        elif final and last_step == "tweedie":
            state = denoised
        else:
            w = diffusion_coefficient(diffusion_form, float(diffusion_norm), sigma)
            score = ((1 - s) * v_sit - state) / s  # SiT: (t v - x) / (1 - t); s > 0 before the last level
            mean = state + (v_sit + w * score) * dt
            if final:  # 'mean'
                state = mean
            else:
                z = draw_noise(noise_sampler, sigma, sigmas[i + 1], state)
                state = mean + (2 * w).sqrt() * (z * dt.sqrt())
        report_flow(callback, i, state, sigma, sigmas[i + 1], denoised)
    return state.to(model_dtype)
