"""Classifier-free guidance wrapper: scale 1 and outside-the-interval are the conditional
denoiser exactly; inside, D_u + s (D_c - D_u) from ONE batched call; channel-limited guidance."""

from __future__ import annotations

import pytest
import torch

from maskdit.masking import GroupedMask, Mask
from maskdit.samplers import cfg, get_sigmas_karras, sample_heun

NUM_CLASSES = 5


class LabelDenoiser:
    """A toy conditional denoiser: each class (and the null class) pulls towards its own mean.
    Records the batch size of every call."""

    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.masks: list = []
        gen = torch.Generator().manual_seed(0)
        self.centres = torch.randn(NUM_CLASSES + 1, 3, 4, 4, generator=gen)  # row NUM_CLASSES = null

    def __call__(self, x, sigma, *, labels=None, mask=None):
        self.batches.append(x.shape[0])
        self.masks.append(mask)
        labels = torch.full((x.shape[0],), NUM_CLASSES) if labels is None else labels
        shrink = (1.0 / (1.0 + sigma**2)).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        return self.centres[labels].to(x.dtype) + shrink * torch.tanh(x)


def _inputs(batch=4, sigma=1.0):
    x = torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return x, torch.full((batch,), sigma), torch.arange(batch) % NUM_CLASSES


def test_scale_one_is_the_conditional_denoiser_exactly():
    inner = LabelDenoiser()
    x, sigma, labels = _inputs()
    guided = cfg(inner, 1.0)(x, sigma, labels=labels)
    assert torch.equal(guided, inner(x, sigma, labels=labels))
    assert inner.batches == [4, 4]  # no unconditional pass was run


@pytest.mark.parametrize("scale", [0.0, 1.5, 4.0])
def test_guided_output_formula_and_single_batched_call(scale):
    inner = LabelDenoiser()
    x, sigma, labels = _inputs()
    guided = cfg(inner, scale)(x, sigma, labels=labels)
    assert inner.batches == [8]  # conditional and unconditional together
    cond = inner(x, sigma, labels=labels)
    uncond = inner(x, sigma, labels=torch.full_like(labels, NUM_CLASSES))
    assert torch.allclose(guided, uncond + scale * (cond - uncond), atol=1e-6)
    if scale == 0.0:
        assert torch.allclose(guided, uncond, atol=1e-6)


def test_outside_the_interval_returns_the_conditional_output():
    inner = LabelDenoiser()
    wrapper = cfg(inner, 3.0, sigma_interval=(0.3, 2.0))
    x, _, labels = _inputs()
    for sigma_value in (0.1, 5.0):  # below and above the interval
        sigma = torch.full((4,), sigma_value)
        assert torch.equal(wrapper(x, sigma, labels=labels), inner(x, sigma, labels=labels))
    assert 8 not in inner.batches  # no doubled batch was needed
    sigma = torch.full((4,), 1.0)  # inside: guided
    assert not torch.allclose(wrapper(x, sigma, labels=labels), inner(x, sigma, labels=labels))


def test_mixed_batch_guides_only_samples_inside_the_interval():
    inner = LabelDenoiser()
    x, _, labels = _inputs()
    sigma = torch.tensor([0.1, 1.0, 5.0, 1.5])
    out = cfg(inner, 2.0, sigma_interval=(0.3, 2.0))(x, sigma, labels=labels)
    cond = inner(x, sigma, labels=labels)
    uncond = inner(x, sigma, labels=torch.full_like(labels, NUM_CLASSES))
    guided = uncond + 2.0 * (cond - uncond)
    assert torch.allclose(out[[0, 2]], cond[[0, 2]], atol=1e-6)
    assert torch.allclose(out[[1, 3]], guided[[1, 3]], atol=1e-6)


def test_channels_guides_only_the_first_k():
    inner = LabelDenoiser()
    x, sigma, labels = _inputs()
    out = cfg(inner, 4.0, channels=2)(x, sigma, labels=labels)
    cond = inner(x, sigma, labels=labels)
    uncond = inner(x, sigma, labels=torch.full_like(labels, NUM_CLASSES))
    assert torch.allclose(out[:, :2], uncond[:, :2] + 4.0 * (cond[:, :2] - uncond[:, :2]), atol=1e-6)
    assert torch.allclose(out[:, 2:], cond[:, 2:], atol=1e-6)


def test_guidance_without_labels_raises_instead_of_running_unguided():
    inner = LabelDenoiser()
    x, sigma, _ = _inputs()
    with pytest.raises(ValueError, match=r"guidance \(scale 3\) needs class labels"):
        cfg(inner, 3.0)(x, sigma)
    assert torch.equal(cfg(inner, 1.0)(x, sigma), inner(x, sigma))  # scale 1 guides nothing: fine


def test_mask_is_doubled_with_the_batch():
    inner = LabelDenoiser()
    x, sigma, labels = _inputs()
    mask = Mask.from_dropped(torch.tensor([[True, False, False, True]] * 4))
    cfg(inner, 2.0)(x, sigma, labels=labels, mask=mask)
    assert inner.masks[-1].batch_size == 8 and torch.equal(inner.masks[-1].dropped[:4], mask.dropped)


def test_a_grouped_mask_is_doubled_group_by_group():
    inner = LabelDenoiser()
    x, sigma, labels = _inputs()
    light = Mask.from_dropped(torch.tensor([[True, False, False, False]] * 2))
    heavy = Mask.from_dropped(torch.tensor([[True, True, False, True]] * 2))
    mask = GroupedMask((light, heavy), (torch.tensor([0, 2]), torch.tensor([1, 3])))
    cfg(inner, 2.0)(x, sigma, labels=labels, mask=mask)
    doubled = inner.masks[-1]
    assert isinstance(doubled, GroupedMask) and doubled.batch_size == 8
    assert torch.equal(doubled.dropped, torch.cat([mask.dropped, mask.dropped]))  # each row's copy below it


def test_guidance_works_inside_a_sampler():
    inner = LabelDenoiser()
    x = 80.0 * torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(4)
    plain = sample_heun(inner, x, get_sigmas_karras(5), labels=labels)
    same = sample_heun(cfg(inner, 1.0), x, get_sigmas_karras(5), labels=labels)
    guided = sample_heun(cfg(inner, 2.0), x, get_sigmas_karras(5), labels=labels)
    assert torch.equal(plain, same) and not torch.allclose(plain, guided)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": float("nan")}, "finite"),
        ({"scale": 2.0, "sigma_interval": (2.0, 1.0)}, "sigma_interval"),
        ({"scale": 2.0, "channels": 0}, "channels"),
        ({"scale": 2.0, "null_label": -1}, "null_label"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg(LabelDenoiser(), **kwargs)


def test_null_label_needed_when_the_denoiser_has_no_num_classes():
    with pytest.raises(ValueError, match="null_label"):
        cfg(lambda x, sigma, labels=None, mask=None: x, 2.0)
    wrapper = cfg(lambda x, sigma, labels=None, mask=None: x, 2.0, null_label=7)
    assert wrapper.null_label == 7


def test_too_many_guided_channels_raise_at_call():
    x, sigma, labels = _inputs()
    with pytest.raises(ValueError, match="channels"):
        cfg(LabelDenoiser(), 2.0, channels=5)(x, sigma, labels=labels)


def test_wrong_sigma_shape_raises():
    x, _, labels = _inputs()
    with pytest.raises(ValueError, match="sigma"):
        cfg(LabelDenoiser(), 2.0)(x, torch.ones(3), labels=labels)
