"""Every process trains every token-sparsity method: the loss terms each routing implies (MAE for a
decoder, visible or all tokens) run on the real backbone under EDM, VP and flow matching in both
conventions, and the gradient reaches what the routing says it should."""

import pytest
import torch

from maskdit.core import build_denoiser
from maskdit.losses import build_objective, specs
from maskdit.masking.specs import RandomMaskingSpec

from ..core.helpers import randomize_, tiny_spec

PROCESSES = {
    "edm": ({"name": "edm"}, {"name": "lognormal"}, "edm"),
    "vp": ({"name": "vp"}, {"name": "ddpm"}, "eps"),
    "flow-sit": ({"name": "flow", "convention": "sit"}, {"name": "uniform_t"}, "v"),
    "flow-repa": ({"name": "flow", "convention": "repa"}, {"name": "logit_normal_t", "shift": 2.0}, "v"),
}
METHODS = {  # model fields, loss terms beyond dsm
    "maskdit": ({"decoder_depth": 1}, [{"name": "mae", "weight": 0.1}]),
    "deferred": ({"decoder_depth": 0, "routing": {"start": 1}}, []),
    "tread": ({"decoder_depth": 0, "depth": 3, "routing": {"start": 1, "end": 2}}, []),
    "sprint": ({"decoder_depth": 0, "depth": 3, "routing": {"start": 1, "end": 2, "fill": "mask_token",
                                                             "fuse": "concat"}}, [{"name": "velocity_cosine"}]),
}


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_under_each_process(process, method):
    process_spec, noise, weighting = PROCESSES[process]
    fields, extra_terms = METHODS[method]
    spec = tiny_spec(process=process_spec, **fields)
    denoiser = randomize_(build_denoiser(spec, seed=0), seed=1)
    losses = specs.LossesSpec.model_validate({"terms": [{"name": "dsm", "weighting": weighting}, *extra_terms],
                                              "noise": noise, "label_dropout": 0.1})
    objective = build_objective(losses, masking=RandomMaskingSpec(ratio=0.5), loss_tokens=spec.routing.loss_tokens)
    g = torch.Generator().manual_seed(2)
    y = torch.randn(4, 3, 8, 8, generator=g)
    out = objective(denoiser, y, torch.tensor([0, 1, 2, 3]), generator=g)
    assert out.mask is not None and bool(out.mask.dropped.any())
    assert set(out.parts) == {"dsm"} | {term["name"] for term in extra_terms}
    assert all(bool(torch.isfinite(part).all()) and part.shape == (4,) for part in out.parts.values())
    out.total.mean().backward()
    grads = {name: p.grad for name, p in denoiser.named_parameters() if p.requires_grad}
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads.values())
    assert float(grads["net.final_layer.linear.weight"].abs().sum()) > 0
    if method == "maskdit":  # the decoder fills dropped positions with its learned mask token
        assert float(grads["net.mask_token"].abs().sum()) > 0
    if method == "sprint":  # the fusion of the padded deep path with the dense-shallow output learns
        assert float(grads["net.route_fuse.weight"].abs().sum()) > 0
