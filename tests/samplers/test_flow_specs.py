"""The sampler section for flow time: the uniform_t grid, which state each sampler starts, the
evaluation counts, guidance in flow time (one mixing rule for x0 and v), and what is refused."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from maskdit.samplers import (
    build_sampler,
    cfg,
    get_sigmas_uniform_t,
    sample_ddim,
    sample_dopri5,
    sample_flow_euler,
    sample_flow_heun,
    specs,
)
from tests.samplers.test_flow_gaussian import SigmaOnly
from tests.samplers.toys import GaussianDenoiser

NUM_CLASSES = 3


def test_uniform_t_grid():
    assert get_sigmas_uniform_t(4).tolist() == [math.inf, 3.0, 1.0, 1 / 3, 0.0]
    shifted = get_sigmas_uniform_t(4, t_max=0.8, shift=3.0)  # SD3's shift: sigma' = a sigma
    plain = get_sigmas_uniform_t(4, t_max=0.8)
    assert torch.allclose(shifted, 3.0 * plain, rtol=1e-14, atol=0)
    short = get_sigmas_uniform_t(3, t_max=0.5, t_min=0.2)
    assert torch.allclose(short / (1 + short), torch.tensor([0.5, 0.4, 0.3, 0.2], dtype=torch.float64))
    for bad in (lambda: get_sigmas_uniform_t(0), lambda: get_sigmas_uniform_t(3, t_max=0.2, t_min=0.2),
                lambda: get_sigmas_uniform_t(3, t_max=1.5), lambda: get_sigmas_uniform_t(3, shift=0.0),
                lambda: get_sigmas_uniform_t(10_000, t_max=0.5 + 1e-15, t_min=0.5)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpmpp_2m"])
def test_sigma_space_samplers_refuse_a_grid_from_pure_noise(name):
    with pytest.raises(ValidationError, match="cannot start at pure noise"):
        build_sampler({"name": name, "steps": 10, "schedule": {"name": "uniform_t"}})
    below = build_sampler({"name": name, "steps": 10, "schedule": {"name": "uniform_t", "t_max": 0.9}})
    assert below.state == "sigma" and float(below.sigmas[0]) == pytest.approx(9.0)
    with pytest.raises(ValueError, match="finite"):  # the bare function too
        sample_ddim(GaussianDenoiser(), torch.zeros(2, 1, 2, 2), get_sigmas_uniform_t(3))


def test_euler_and_heun_follow_the_grid():
    for name in ("euler", "heun"):
        sigma = build_sampler({"name": name, "steps": 6})
        flow = build_sampler({"name": name, "steps": 6, "schedule": {"name": "uniform_t"}})
        assert (sigma.state, flow.state) == ("sigma", "flow")
        assert flow.fn is {"euler": sample_flow_euler, "heun": sample_flow_heun}[name] and flow.options == {}
    with pytest.raises(ValidationError, match="s_churn is EDM's option"):
        build_sampler({"name": "heun", "s_churn": 5.0, "schedule": {"name": "uniform_t"}})


def test_an_edm_model_at_pure_noise_is_a_clear_error():
    with pytest.raises(ValueError, match="EDM model cannot be evaluated at pure noise.*t_max"):
        build_sampler({"name": "euler", "steps": 4, "schedule": {"name": "uniform_t"}})(
            SigmaOnly(), torch.randn(2, 1, 2, 2))
    with pytest.raises(ValueError, match="EDM model cannot be evaluated at pure noise"):
        sample_dopri5(SigmaOnly(), torch.randn(2, 1, 2, 2), get_sigmas_uniform_t(3))


class Recorder(GaussianDenoiser):
    """The Gaussian flow model, recording the inputs of every velocity call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def velocity(self, x_t, t, *, labels=None, mask=None):
        self.seen.append((x_t.clone(), torch.as_tensor(t).clone()))
        return super().velocity(x_t, t, labels=labels, mask=mask)


@pytest.mark.parametrize("t_max", [1.0, 0.5])
def test_the_ready_sampler_starts_the_flow_state_at_s0_times_noise(t_max):
    noise = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    model = Recorder()
    build_sampler({"name": "euler", "steps": 3, "schedule": {"name": "uniform_t", "t_max": t_max}})(model, noise)
    first_x, first_t = model.seen[0]
    assert torch.equal(first_x, (noise.double() * t_max).float()) and torch.equal(first_t, torch.full((2,), t_max))


def test_evaluation_counts():
    noise = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    heun = build_sampler({"name": "heun", "steps": 5, "schedule": {"name": "uniform_t", "t_max": 0.9}})
    flow_model, edm_model = GaussianDenoiser(), SigmaOnly()
    heun(flow_model, noise)
    heun(edm_model, noise)
    assert heun.num_evaluations == flow_model.calls == 10  # Heun's correction on the last step too
    assert edm_model.model.calls == 9  # a sigma-space model takes an Euler step to the data (documented)
    dopri5 = build_sampler({"name": "dopri5", "steps": 7})
    reports, model = [], GaussianDenoiser()
    dopri5(model, noise, callback=reports.append)
    assert dopri5.num_evaluations is None and reports[-1]["nfe"] == model.calls > 6


def test_dopri5_without_torchdiffeq_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # import torchdiffeq now raises ImportError
    with pytest.raises(ImportError, match=r"pip install maskdit\[flow\]"):
        sample_dopri5(GaussianDenoiser(), torch.randn(2, 1, 2, 2), get_sigmas_uniform_t(3))


@pytest.mark.parametrize("options, match", [({"atol": 0.0}, "atol"), ({"rtol": -1.0}, "rtol"),
                                            ({"rtol": math.nan}, "rtol")])
def test_dopri5_refuses_bad_tolerances(options, match):
    with pytest.raises(ValueError, match=match):
        sample_dopri5(GaussianDenoiser(), torch.randn(2, 1, 2, 2), get_sigmas_uniform_t(3), **options)


def test_cfg_interval_t_is_the_exact_sigma_interval():
    repa = build_sampler({"name": "euler", "cfg_scale": 2.0, "cfg_interval_t": [0.0, 0.7],
                          "schedule": {"name": "uniform_t"}}, null_label=NUM_CLASSES)
    assert repa.cfg_interval == (0.0, 0.7 / (1 - 0.7))
    top = build_sampler({"name": "dopri5", "cfg_scale": 2.0, "cfg_interval_t": [0.11, 1.0]}, null_label=NUM_CLASSES)
    assert top.cfg_interval == (0.11 / 0.89, math.inf)
    adapter = TypeAdapter(specs.SamplerSpec)
    for bad in ({"cfg_interval": [0.1, 1.0], "cfg_interval_t": [0.0, 0.5]}, {"cfg_interval_t": [0.5, 0.2]},
                {"cfg_interval_t": [0.0, 1.5]}):
        with pytest.raises(ValidationError, match="cfg_interval"):
            adapter.validate_python({"name": "heun", **bad})


class LabelFlow:
    """A conditional flow model in SiT's convention: each class (and the null class) its own field."""

    convention = "sit"
    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.centres = torch.randn(NUM_CLASSES + 1, 1, 2, 2, generator=torch.Generator().manual_seed(3))

    def velocity(self, x_t, t, *, labels=None, mask=None):
        self.batches.append(x_t.shape[0])
        t = torch.as_tensor(t, dtype=x_t.dtype).view(-1, 1, 1, 1)
        return self.centres[labels].to(x_t.dtype) * (1 + t) - torch.tanh(x_t)


def test_guided_velocity_agrees_with_guided_x0_and_uses_the_flow_interval():
    model, labels = LabelFlow(), torch.tensor([0, 2])
    guided = cfg(model, 3.0, sigma_interval=(0.0, 0.7 / 0.3))
    x_t = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t_sit = torch.full((2,), 0.6, dtype=torch.float64)  # s = 0.4: inside
    v = guided.velocity(x_t, t_sit, labels=labels)
    v_c = model.velocity(x_t, t_sit, labels=labels)
    v_u = model.velocity(x_t, t_sit, labels=torch.full_like(labels, NUM_CLASSES))
    assert torch.allclose(v, v_u + 3.0 * (v_c - v_u), rtol=0, atol=1e-14)
    # x0 = x_t + (1 - t) v_sit is affine in v: guiding v is guiding x0
    x0 = lambda vel: x_t + (1 - 0.6) * vel  # noqa: E731
    assert torch.allclose(x0(v), x0(v_u) + 3.0 * (x0(v_c) - x0(v_u)), rtol=0, atol=1e-14)
    assert torch.equal(guided.velocity(x_t, torch.full((2,), 0.2, dtype=torch.float64), labels=labels),
                       model.velocity(x_t, torch.full((2,), 0.2, dtype=torch.float64), labels=labels))  # s = 0.8
    x_t3 = x_t.repeat(1, 3, 1, 1)  # [B, 3, H, W]: DiT's quirk, guide the first channels only
    one = cfg(model, 3.0, channels=1).velocity(x_t3, t_sit, labels=labels)
    v_c3 = model.velocity(x_t3, t_sit, labels=labels)
    assert torch.equal(one[:, 1:], v_c3[:, 1:]) and torch.allclose(one[:, :1], v[:, :1], rtol=0, atol=1e-14)
    model.batches.clear()
    sampler = build_sampler({"name": "euler", "steps": 10, "cfg_scale": 3.0, "cfg_interval_t": [0.0, 0.7],
                             "schedule": {"name": "uniform_t"}})
    sampler(model, torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(5)), labels=labels)
    s = sampler.sigmas[:-1] / (1 + sampler.sigmas[:-1])
    s[0] = 1.0
    assert model.batches == [4 if float(level) <= 0.7 else 2 for level in s]  # REPA: guide where t <= 0.7


def test_a_guided_flow_denoiser_runs_from_pure_noise():
    core = pytest.importorskip("maskdit.core")
    spec = core.ModelSpec(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=32, num_heads=2,
                          decoder_depth=1, decoder_hidden_size=16, decoder_num_heads=2, num_classes=NUM_CLASSES,
                          process={"name": "flow", "convention": "repa"})
    denoiser = core.build_denoiser(spec, generator=torch.Generator().manual_seed(0)).eval()
    torch.nn.init.normal_(denoiser.net.final_layer.linear.weight, std=0.05, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    labels, null = torch.tensor([0, 2]), torch.full((2,), NUM_CLASSES)
    ours = build_sampler({"name": "euler", "steps": 4, "cfg_scale": 2.0, "schedule": {"name": "uniform_t"}})(
        denoiser, noise, labels=labels)
    x, s = noise.double(), torch.linspace(1, 0, 5, dtype=torch.float64)
    with torch.no_grad():
        for i in range(4):  # by hand: REPA's Euler with v_u + 2 (v_c - v_u)
            v_c, v_u = (denoiser.velocity(x.float(), s[i].float().expand(2), labels=y).double() for y in (labels, null))
            x = x + (s[i + 1] - s[i]) * (v_u + 2.0 * (v_c - v_u))
    assert float((ours - x.float()).abs().max()) <= 1e-6 and float((ours - noise).abs().max()) > 1e-2


def test_the_summary_line_tells_the_truth():
    from maskdit.app.summary import _describe_sampler

    dopri5 = TypeAdapter(specs.SamplerSpec).validate_python({"name": "dopri5", "cfg_scale": 1.5,
                                                             "cfg_interval_t": [0.0, 0.7]})
    line = _describe_sampler(dopri5, build_sampler(dopri5).num_evaluations)
    assert "adaptive" in line and "..inf" in line and "t in [0, 0.7]" in line


@pytest.mark.parametrize("convention", ["sit", "repa"])
def test_a_half_precision_run_feeds_the_flow_time_in_float32(convention):
    """The network runs in bfloat16, but its time is not rounded to bfloat16 (SiT's t = 0.9 would become
    0.8984375, and t = 0.999 the data end itself)."""

    class TimeRecorder(GaussianDenoiser):
        def __init__(self) -> None:
            super().__init__()
            self.convention = convention
            self.times: list[torch.Tensor] = []

        def velocity(self, x_t, t, *, labels=None, mask=None):
            self.times.append(t.clone())
            return super().velocity(x_t.float(), t.float()).to(x_t.dtype)

    model = TimeRecorder()
    sigmas = get_sigmas_uniform_t(10)
    sample_flow_euler(model, torch.randn(2, 1, 2, 2, dtype=torch.float64), sigmas, dtype=torch.bfloat16)
    s = torch.linspace(1, 0.1, 10, dtype=torch.float64)
    expected = (s if convention == "repa" else 1 - s).float()
    fed = torch.stack([t[0] for t in model.times])
    assert fed.dtype == torch.float32 and torch.allclose(fed, expected, rtol=0, atol=1e-7)
