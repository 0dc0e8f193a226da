"""The compute of path drop: a path-dropped forward skips the sparse span, path-drop guidance costs
one full pass plus that (counted against torch's FLOP counter), training averages over the draws."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maskdit.core import build_denoiser, build_model, flops_per_forward, sampling_flops, training_flops
from maskdit.masking import Mask
from maskdit.samplers import cfg, path_drop_guidance

from .test_routing import inputs, method_spec


def _counted(call) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


@pytest.mark.parametrize("method", ["tread", "sprint"])
def test_a_path_dropped_forward_matches_the_flop_counter(method):
    spec = method_spec(method)
    net = build_model(spec)
    x, t, y = inputs()
    counted = _counted(lambda: net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens)))
    assert counted == 2 * 3 * flops_per_forward(spec, path_dropped=True)
    assert flops_per_forward(spec, path_dropped=True) < flops_per_forward(spec, mask_ratio=0.75)


def test_guided_evaluations_match_the_flop_counter():
    spec = method_spec("sprint")
    model = build_denoiser(spec, generator=torch.Generator().manual_seed(0))
    x, _, y = inputs()
    sigma = torch.ones(3)
    path_drop = _counted(lambda: path_drop_guidance(model, 2.0)(x, sigma, labels=y))
    classifier_free = _counted(lambda: cfg(model, 2.0)(x, sigma, labels=y))
    assert path_drop == 2 * 3 * sampling_flops(spec, guidance=True, path_drop=True)
    assert classifier_free == 2 * 3 * sampling_flops(spec, guidance=True)
    full, weak = flops_per_forward(spec), flops_per_forward(spec, path_dropped=True)
    assert sampling_flops(spec, guidance=True, path_drop=True) == full + weak < 2 * full


def test_training_flops_average_over_the_dropped_samples():
    spec = method_spec("sprint")
    kept, dropped = flops_per_forward(spec, mask_ratio=0.5), flops_per_forward(spec, path_dropped=True)
    assert training_flops(spec, mask_ratio=0.5, path_drop=0.0) == 3 * kept
    assert training_flops(spec, mask_ratio=0.5, path_drop=0.25) == round(3 * (0.75 * kept + 0.25 * dropped))
    assert training_flops(spec, mask_ratio=0.5, path_drop=1.0) == 3 * dropped


def test_path_drop_needs_a_routing_that_rejoins_and_guidance():
    with pytest.raises(ValueError, match=r"routing\.end"):
        flops_per_forward(method_spec("deferred"), path_dropped=True)
    with pytest.raises(ValueError, match="guidance=True"):
        sampling_flops(method_spec("sprint"), path_drop=True)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        training_flops(method_spec("sprint"), path_drop=1.5)
