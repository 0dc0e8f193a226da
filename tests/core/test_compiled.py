"""Regional compilation keeps the arithmetic: same outputs and gradients as eager, same state dict."""

import copy

import pytest
import torch

from maskdit.core import build_denoiser, compile_blocks

from .helpers import random_mask, randomize_, tiny_spec


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    spec = tiny_spec()
    eager = build_denoiser(spec)
    randomize_(eager.net)
    compiled = compile_blocks(copy.deepcopy(eager))
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(4, 3, 8, 8)
    sigma, labels = torch.rand(4) + 0.1, torch.tensor([0, 1, 2, 5])
    mask = random_mask(spec, 4, 0.5)
    outs = []
    for model in (eager, compiled):
        out = model(x, sigma, labels=labels, mask=mask)
        out.square().mean().backward()
        outs.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-5)
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(grad, outs[1][1][name], rtol=1e-3, atol=1e-5, msg=name)


def test_compile_blocks_needs_blocks():
    with pytest.raises(ValueError, match="no transformer blocks"):
        compile_blocks(torch.nn.Linear(2, 2))
