"""The flow ODE dx_t/ds = v(x_t, s) solved as SiT's ODE samplers do (Ma et al. 2024).

SiT integrates dx/dt = v_sit over its time t = 1 - s from noise (t = 0) to data (t = 1) with
torchdiffeq's ``odeint`` on the grid linspace(0, 1, N): 'euler' and 'heun2' take one step per grid
interval, 'dopri5' adapts its own steps (atol 1e-6, rtol 1e-3). Here the same ODE runs on the
noise-end time s, the mirror image: an Euler step in s is SiT's Euler step in t, and Heun's step
is torchdiffeq's heun2 step (k1 at the start, k2 at the Euler-predicted end, their mean), taken on
every interval, the last included, for a model with a velocity at the data end. See
:mod:`maskdit.samplers.flow_common` for the state (x_t, starting at s_0 * noise) and the result.
"""

from __future__ import annotations

import math

import torch

from maskdit.samplers.common import Callback, DenoiserFn, NoiseSampler
from maskdit.samplers.flow_common import noise_end_times, report_flow, start_flow
from maskdit.samplers.flow_view import velocity_view

#: what to install for dopri5
FLOW_EXTRA = "pip install maskdit[flow]  (or: pip install torchdiffeq)"


@torch.no_grad()
def sample_flow_euler(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """x_t <- x_t + (s_{i+1} - s_i) v(x_t, s_i) per interval (SiT's ODE 'euler'). One evaluation a
    step. On the same grid it equals DDIM (eta 0) and EDM's Euler step in sigma space: with
    x0 = x_t - s v, both are x_sigma' = x0 + sigma' (x_sigma - x0) / sigma. Deterministic."""
    state, sigmas, model_dtype, _ = start_flow(x, sigmas, labels, dtype, noise_sampler, generator)
    velocity = velocity_view(denoiser)
    times = noise_end_times(sigmas)  # [n + 1], s
    for i in range(sigmas.numel() - 1):
        v = velocity(state, sigmas[i], labels, model_dtype)
        denoised = state - times[i] * v
        state = state + (times[i + 1] - times[i]) * v
        report_flow(callback, i, state, sigmas[i], sigmas[i + 1], denoised)
    return state.to(model_dtype)


@torch.no_grad()
def sample_flow_heun(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Heun's method per interval h = s_{i+1} - s_i (torchdiffeq's fixed-grid 'heun2', SiT's ODE
    'heun2'): k1 = v(x, s_i), k2 = v(x + h k1, s_{i+1}), x <- x + h (k1 / 2 + k2 / 2). Two
    evaluations a step, the last included, for a velocity model. A step ending where the model
    has no velocity (a sigma-space model at the data end) is an Euler step, EDM's rule.
    Deterministic."""
    state, sigmas, model_dtype, _ = start_flow(x, sigmas, labels, dtype, noise_sampler, generator)
    velocity = velocity_view(denoiser)
    times = noise_end_times(sigmas)
    for i in range(sigmas.numel() - 1):
        h = times[i + 1] - times[i]
        k1 = velocity(state, sigmas[i], labels, model_dtype)
        denoised = state - times[i] * k1
        predicted = state + h * k1
        if velocity.defined_at(float(sigmas[i + 1])):
            k2 = velocity(predicted, sigmas[i + 1], labels, model_dtype)
            state = state + h * (0.5 * k1 + 0.5 * k2)
        else:
            state = predicted
        report_flow(callback, i, state, sigmas[i], sigmas[i + 1], denoised)
    return state.to(model_dtype)


@torch.no_grad()
def sample_dopri5(
    denoiser: DenoiserFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-3,
) -> torch.Tensor:
    """Adaptive Dormand-Prince 5(4) through torchdiffeq's ``odeint`` (SiT's default ODE sampler),
    run as SiT runs it: on SiT's time t = 1 - s with dx/dt = v_sit, tolerances ``atol`` / ``rtol``.

    The solver picks its own steps; the grid only says where the solution is reported (the
    callback, once per interval after the solve, with ``denoised`` None and ``nfe`` = the
    network evaluations the solve took, a guided one counting once). One difference from SiT's
    call: the last step is made to land on the grid's end (torchdiffeq's ``step_t``), where
    torchdiffeq would step past it and interpolate back, evaluating the network at times past
    the data end, outside the process. A model with no velocity at the grid's end (a sigma-space
    model at sigma = 0) is solved to the previous level and finishes with an Euler step, EDM's
    rule. Needs torchdiffeq (``pip install maskdit[flow]``)."""
    try:  # a heavy optional dependency, needed by this sampler alone
        from torchdiffeq import odeint
    except ImportError as err:
        raise ImportError(f"the dopri5 sampler needs torchdiffeq: {FLOW_EXTRA}") from err
    state, sigmas, model_dtype, _ = start_flow(x, sigmas, labels, dtype, noise_sampler, generator)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    velocity = velocity_view(denoiser)
    steps = sigmas.numel() - 1
    euler_end = not velocity.defined_at(float(sigmas[-1]))
    solved = steps - 1 if euler_end else steps  # intervals the adaptive solver covers
    nfe = 0

    def v_sit(t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        sigma = (1 - t.to(torch.float64)) / t.to(torch.float64)  # t = 0 -> inf, t = 1 -> 0
        return -velocity(x_t, sigma, labels, model_dtype)

    path = [state]
    if solved > 0:
        t_sit = 1 / (1 + sigmas[: solved + 1])  # SiT's time, increasing; exact at both ends
        path = list(odeint(v_sit, state, t_sit, method="dopri5", atol=float(atol), rtol=float(rtol),
                           options={"step_t": t_sit[-1:]}))
        for i in range(solved):
            report_flow(callback, i, path[i + 1], sigmas[i], sigmas[i + 1], None, nfe=nfe)
    state = path[-1]
    if euler_end:
        s_last, s_end = noise_end_times(sigmas[-2:])
        v = velocity(state, sigmas[-2], labels, model_dtype)
        nfe += 1
        denoised = state - s_last * v
        state = state + (s_end - s_last) * v
        report_flow(callback, steps - 1, state, sigmas[-2], sigmas[-1], denoised, nfe=nfe)
    return state.to(model_dtype)
