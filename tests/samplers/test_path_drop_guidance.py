"""Path-drop guidance (SPRINT): D = D_weak + s (D_full - D_weak), D_weak the model with its sparse
path dropped, with the null or the same label; scale 1 is the plain model; the interval and the
channels as for cfg; a routing that never rejoins is refused."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from maskdit.core import ModelSpec, build_denoiser
from maskdit.masking import Mask
from maskdit.samplers import PathDropGuidance, build_sampler, path_drop_guidance
from maskdit.samplers.specs import EulerSamplerSpec, HeunSamplerSpec

SPRINT = {"start": 1, "end": 3, "fill": "mask_token", "fuse": "concat"}


def _denoiser(process: str = "edm", num_classes: int = 5, routing: dict | None = None):
    spec = ModelSpec(input_size=8, in_channels=2, patch_size=2, depth=4, hidden_size=32, num_heads=2,
                     decoder_depth=0, num_classes=num_classes, routing=SPRINT if routing is None else routing,
                     process={"name": process})
    model = build_denoiser(spec, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight random: zero-initialised gates would hide the deep path
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


def _inputs(batch: int = 4, sigma: float = 1.0):
    x = torch.randn(batch, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    return x, torch.full((batch,), sigma), torch.arange(batch) % 5


def _weak(model, x, sigma, labels):
    return model(x, sigma, labels=labels, mask=Mask.keep_none(x.shape[0], model.num_tokens))


@torch.no_grad()
def test_scale_one_is_the_plain_model_bit_for_bit():
    model = _denoiser()
    x, sigma, labels = _inputs()
    assert torch.equal(path_drop_guidance(model, 1.0)(x, sigma, labels=labels), model(x, sigma, labels=labels))
    sampler = build_sampler({"name": "euler", "steps": 3, "cfg_scale": 1.0, "path_drop": True})
    noise = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = build_sampler({"name": "euler", "steps": 3})
    assert torch.equal(sampler(model, noise, labels=labels[:2]), plain(model, noise, labels=labels[:2]))


@torch.no_grad()
@pytest.mark.parametrize("label", ["null", "same"])
@pytest.mark.parametrize("scale", [0.0, 2.5])
def test_the_weak_branch_is_the_path_dropped_model(label, scale):
    model = _denoiser()
    x, sigma, labels = _inputs()
    weak_labels = torch.full_like(labels, 5) if label == "null" else labels
    full, weak = model(x, sigma, labels=labels), _weak(model, x, sigma, weak_labels)
    guided = path_drop_guidance(model, scale, label=label)(x, sigma, labels=labels)
    assert torch.allclose(guided, weak + scale * (full - weak), atol=1e-6, rtol=0)
    if scale == 0.0:  # the weak branch alone: the hand-built path-dropped model
        assert torch.equal(guided, weak)


@torch.no_grad()
def test_null_and_same_labels_differ_as_they_should():
    model = _denoiser()
    x, sigma, labels = _inputs()
    null = path_drop_guidance(model, 3.0, label="null")(x, sigma, labels=labels)
    same = path_drop_guidance(model, 3.0, label="same")(x, sigma, labels=labels)
    cfg_guided = build_sampler({"name": "euler", "cfg_scale": 3.0}, null_label=5).guided(model)(x, sigma, labels=labels)
    assert (null - same).abs().max() > 1e-3 and (null - cfg_guided).abs().max() > 1e-3
    # the weak branch keeps the label under 'same' (the label acts in both branches, guidance follows the deep
    # path alone) and drops it under 'null' (guidance also follows the label, as cfg)
    weak_same, weak_null = _weak(model, x, sigma, labels), _weak(model, x, sigma, torch.full_like(labels, 5))
    assert (weak_same - weak_null).abs().max() > 1e-3
    full = model(x, sigma, labels=labels)
    assert torch.allclose(same, weak_same + 3.0 * (full - weak_same), atol=1e-5, rtol=0)
    assert torch.allclose(null, weak_null + 3.0 * (full - weak_null), atol=1e-5, rtol=0)


@torch.no_grad()
def test_same_label_guidance_needs_no_labels_and_null_does():
    unconditional = _denoiser(num_classes=0)
    x, sigma, _ = _inputs()
    guided = path_drop_guidance(unconditional, 2.0, label="same")(x, sigma)
    full, weak = unconditional(x, sigma), _weak(unconditional, x, sigma, None)
    assert torch.allclose(guided, weak + 2.0 * (full - weak), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="class-conditional"):
        path_drop_guidance(unconditional, 2.0)
    with pytest.raises(ValueError, match="needs class labels"):
        path_drop_guidance(_denoiser(), 2.0)(x, sigma)


@torch.no_grad()
def test_the_interval_and_the_channels_are_those_of_cfg():
    model = _denoiser()
    x, _, labels = _inputs()
    sigma = torch.tensor([0.05, 0.5, 5.0, 50.0])
    guided = path_drop_guidance(model, 3.0, sigma_interval=(0.1, 10.0), channels=1)(x, sigma, labels=labels)
    full, weak = model(x, sigma, labels=labels), _weak(model, x, sigma, torch.full_like(labels, 5))
    mixed = weak + 3.0 * (full - weak)
    inside = torch.tensor([False, True, True, False])
    assert torch.equal(guided[~inside], full[~inside])  # outside the interval: the plain model exactly
    assert torch.allclose(guided[inside][:, :1], mixed[inside][:, :1], atol=1e-6, rtol=0)
    assert torch.equal(guided[inside][:, 1:], full[inside][:, 1:])  # unguided channel


@torch.no_grad()
def test_flow_samplers_guide_the_velocity_with_the_path_dropped_model():
    model = _denoiser(process="flow")
    x, _, labels = _inputs()
    t = torch.full((4,), 0.6)
    guided = path_drop_guidance(model, 2.0).velocity(x, t, labels=labels)
    full = model.velocity(x, t, labels=labels)
    weak = model.velocity(x, t, labels=torch.full_like(labels, 5), mask=Mask.keep_none(4, model.num_tokens))
    assert torch.allclose(guided, weak + 2.0 * (full - weak), atol=1e-6, rtol=0)
    sampler = build_sampler({"name": "euler", "steps": 4, "cfg_scale": 2.0, "path_drop": True,
                             "schedule": {"name": "uniform_t"}}, null_label=5)
    out = sampler(model, torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4)), labels=labels[:2])
    assert out.shape == (2, 2, 8, 8) and torch.isfinite(out).all()


def test_the_weak_pass_skips_the_sparse_blocks():
    model = _denoiser()
    x, sigma, labels = _inputs()
    seen: list[int] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1])) for block in model.net.blocks]
    with torch.no_grad():
        path_drop_guidance(model, 2.0)(x, sigma, labels=labels)
    for hook in hooks:
        hook.remove()
    assert seen == [16, 16, 16, 16] + [16, 16]  # full pass: 4 blocks; weak pass: blocks 0 and 3 only


def test_a_routing_that_never_rejoins_is_refused():
    with pytest.raises(ValueError, match=r"never rejoins \(routing\.end"):
        path_drop_guidance(_denoiser(routing={"start": 1}), 2.0)
    with pytest.raises(ValueError, match="'null' or 'same'"):
        PathDropGuidance(_denoiser(), 2.0, label="other", null_label=5)


def test_the_sampler_section_and_its_checks():
    spec = HeunSamplerSpec(cfg_scale=2.0, path_drop=True, path_drop_label="same")
    assert HeunSamplerSpec.model_validate_json(spec.model_dump_json()) == spec
    assert not spec.needs_labels and HeunSamplerSpec(cfg_scale=2.0, path_drop=True).needs_labels
    sampler = spec.build(null_label=5)
    assert sampler.path_drop and isinstance(sampler.guided(_denoiser()), PathDropGuidance)
    assert sampler.guided(_denoiser()).label == "same"
    assert not isinstance(EulerSamplerSpec(cfg_scale=2.0).build(null_label=5).guided(_denoiser()), PathDropGuidance)
    with pytest.raises(ValidationError, match="set path_drop true"):
        EulerSamplerSpec(path_drop_label="same")
