"""The flow samplers against real peers on the same velocity network and grid: diffusers'
FlowMatchEulerDiscreteScheduler (REPA's / SD3's convention), and torchdiffeq's odeint run the
way SiT's ODE sampler runs it (SiT's time t = 1 - s, grid linspace(0, 1, N), its fixed-grid
'euler' / 'heun2' and the adaptive 'dopri5' with atol / rtol)."""

from __future__ import annotations

import pytest
import torch

from maskdit.core import ModelSpec, build_denoiser
from maskdit.samplers import build_sampler, get_sigmas_uniform_t, sample_dopri5, sample_flow_euler, sample_flow_heun

diffusers = pytest.importorskip("diffusers")
torchdiffeq = pytest.importorskip("torchdiffeq")

SHAPE = (3, 2, 4, 4)


def v_repa(x: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """A smooth nonlinear toy velocity network on REPA's time s (1 = noise), any s."""
    s = torch.as_tensor(s, dtype=x.dtype)
    s = s.view(-1, *([1] * (x.ndim - 1))) if s.ndim == 1 else s  # [B] -> [B, 1, ...]
    return torch.tanh(x) * (0.5 + s) - 0.3 * (1 - s) + 0.2 * torch.sin(3 * x) * s


class ToyFlow:
    """v_repa as a flow model in ``convention`` ('sit': t = 1 - s and v_sit = -v_repa); counts calls."""

    def __init__(self, convention: str = "repa") -> None:
        self.convention = convention
        self.calls = 0

    def velocity(self, x_t, t, *, labels=None, mask=None):
        self.calls += 1
        return v_repa(x_t, t) if self.convention == "repa" else -v_repa(x_t, 1 - torch.as_tensor(t))


def _noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("steps, shift", [(10, 1.0), (50, 3.0)])
def test_diffusers_flow_match_euler_is_our_euler(steps, shift):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=torch.linspace(1, 0, steps + 1, dtype=torch.float64)[:-1].tolist())
    # diffusers' shift (applied to the sigmas it is given) is SD3's, as uniform_t's
    s_ours = get_sigmas_uniform_t(steps, shift=shift)
    s_ours = s_ours / (1 + s_ours)
    s_ours[0] = 1.0  # inf / inf
    assert float((sched.sigmas.double() - s_ours).abs().max()) < 2e-7  # diffusers keeps float32 sigmas
    z = _noise()
    x = z.clone()
    for i, t in enumerate(sched.timesteps):
        x = sched.step(v_repa(x, sched.sigmas[i].double()), t, x).prev_sample
    s_theirs = sched.sigmas.double()
    ours = sample_flow_euler(ToyFlow(), z, s_theirs / (1 - s_theirs))  # their grid; 1 / 0 = inf
    assert float((x - ours).abs().max()) <= 1e-6  # diffusers rounds its state to float32 every step
    assert float((ours - z).abs().max()) > 0.5


def _sit_odeint(method: str, num_steps: int, **kwargs) -> tuple[torch.Tensor, int]:
    """torchdiffeq as SiT calls it: dx/dt = v_sit on linspace(0, 1, N); (x at t = 1, calls)."""
    calls = 0

    def drift(t, x):
        nonlocal calls
        calls += 1
        return -v_repa(x, 1 - t)

    grid = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    return torchdiffeq.odeint(drift, _noise(), grid, method=method, **kwargs)[-1], calls


@pytest.mark.parametrize("convention", ["sit", "repa"])
@pytest.mark.parametrize("method, sampler, per_step", [("euler", sample_flow_euler, 1),
                                                        ("heun2", sample_flow_heun, 2)])
def test_torchdiffeq_fixed_grid_run_the_sit_way_is_ours(method, sampler, per_step, convention):
    num_steps = 25  # SiT's num_sampling_steps N: N - 1 intervals
    theirs, their_calls = _sit_odeint(method, num_steps)
    model = ToyFlow(convention)
    ours = sampler(model, _noise(), get_sigmas_uniform_t(num_steps - 1))
    assert float((theirs - ours).abs().max()) <= 1e-9
    assert model.calls == their_calls == per_step * (num_steps - 1)  # heun2 corrects the last step too


def test_torchdiffeq_dopri5_is_ours_with_the_last_step_on_the_end():
    """Ours is odeint's dopri5 with the final step landing on t = 1 (``step_t``); SiT lets it
    step past the data end and interpolate back, which differs by the solver's tolerance."""
    num_steps = 50
    landed, landed_calls = _sit_odeint("dopri5", num_steps, atol=1e-6, rtol=1e-3,
                                       options={"step_t": torch.ones(1, dtype=torch.float64)})
    plain, _ = _sit_odeint("dopri5", num_steps, atol=1e-6, rtol=1e-3)
    model, reports = ToyFlow("sit"), []
    ours = sample_dopri5(model, _noise(), get_sigmas_uniform_t(num_steps - 1), callback=reports.append)
    assert float((landed - ours).abs().max()) <= 1e-9
    assert float((plain - ours).abs().max()) <= 2e-2
    assert [r["i"] for r in reports] == list(range(num_steps - 1))
    assert reports[-1]["nfe"] == model.calls == landed_calls


def test_the_real_flow_denoiser_runs_the_sit_way():
    """A tiny SiT-convention FlowDenoiser: its velocity drives our samplers from pure noise
    exactly as it drives torchdiffeq (the network runs in float32 on both sides)."""
    spec = ModelSpec(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=32, num_heads=2,
                     decoder_depth=1, decoder_hidden_size=16, decoder_num_heads=2, num_classes=3,
                     process={"name": "flow", "convention": "sit"})
    denoiser = build_denoiser(spec, generator=torch.Generator().manual_seed(0)).eval()
    torch.nn.init.normal_(denoiser.net.final_layer.linear.weight, std=0.05,
                          generator=torch.Generator().manual_seed(1))  # an untrained net outputs zeros
    labels = torch.tensor([0, 2])
    noise = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    grid = torch.linspace(0, 1, 9, dtype=torch.float64)

    def drift(t, x):
        return denoiser.velocity(x, t.expand(x.shape[0]), labels=labels)

    for method, name in (("euler", "euler"), ("heun2", "heun")):
        with torch.no_grad():
            theirs = torchdiffeq.odeint(drift, noise.double(), grid, method=method)[-1]
        sampler = build_sampler({"name": name, "steps": 8, "schedule": {"name": "uniform_t"}})
        ours = sampler(denoiser, noise.double(), labels=labels)
        assert float((theirs - ours).abs().max()) <= 1e-6
        assert float((ours - noise).abs().max()) > 1e-2
