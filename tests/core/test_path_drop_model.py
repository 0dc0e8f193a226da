"""Path drop in the backbone: a Mask that keeps no token replaces the whole sparse span by the
routing's fill (SPRINT's weak branch), and only a routing that rejoins takes it."""

import pytest
import torch

from maskdit.core import build_model
from maskdit.masking import GroupedMask, Mask

from .helpers import random_mask, randomize_, tiny_spec
from .test_routing import inputs, method_spec, token_counts


def _by_hand(net, x, t, y, *, fill: str) -> torch.Tensor:
    """The path-dropped forward built from the backbone's parts: the blocks before the span on
    all tokens, every position filled (SPRINT's mask token, or TREAD's own block-start input),
    fused with the dense-shallow output, the blocks after the span, the head."""
    routing = net.spec.routing
    tokens = net.x_embedder(x) + net.pos_embed  # [B, L, D]
    c = net.condition(t, y)
    for block in net.blocks[: routing.start]:
        tokens = block(tokens, c)
    shallow = tokens
    filled = net.route_mask_token.expand_as(shallow) if fill == "mask_token" else shallow
    if routing.fuse == "concat":
        filled = net.route_fuse(torch.cat([filled, shallow], dim=-1))
    for block in net.blocks[routing.end:]:
        filled = block(filled, c)
    return net.unpatchify(net.final_layer(filled, c))


def test_the_weak_branch_is_the_model_with_its_sparse_span_filled():
    spec = tiny_spec(depth=5, decoder_depth=0, routing={"start": 1, "end": 4, "fill": "mask_token", "fuse": "concat"})
    net = randomize_(build_model(spec)).eval()
    x, t, y = inputs()
    with torch.no_grad():
        dropped = net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens))
        expected = _by_hand(net, x, t, y, fill="mask_token")
        full = net(x, t, y)
    assert torch.allclose(dropped, expected, atol=1e-6, rtol=0)
    assert (dropped - full).abs().max() > 1e-2  # the deep path matters: the comparison can fail


def test_path_drop_under_token_routing_skips_the_span():
    spec = method_spec("tread")
    net = randomize_(build_model(spec)).eval()
    x, t, y = inputs()
    with torch.no_grad():
        dropped = net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens))
        assert torch.allclose(dropped, _by_hand(net, x, t, y, fill="exit"), atol=1e-6, rtol=0)


def test_the_sparse_blocks_do_not_run_on_a_path_dropped_sample():
    spec = method_spec("sprint")  # blocks 1, 2 sparse of 4
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    seen = token_counts(net, lambda: net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens)))
    assert seen == [16, 16]  # block 0 and block 3 only, on all 16 tokens
    mixed = GroupedMask.combine([random_mask(spec, 2, 0.5), Mask.keep_none(1, spec.num_tokens)],
                                [torch.tensor([0, 2]), torch.tensor([1])])
    assert token_counts(net, lambda: net(x, t, y, mask=mixed)) == [16, 8, 8, 16, 16, 16]


def test_a_path_dropped_sample_in_a_batch_is_that_sample_alone():
    spec = method_spec("sprint")
    net = randomize_(build_model(spec)).eval()
    x, t, y = inputs(batch=3)
    keep = random_mask(spec, 2, 0.5)
    mixed = GroupedMask.combine([keep, Mask.keep_none(1, spec.num_tokens)], [torch.tensor([0, 2]), torch.tensor([1])])
    with torch.no_grad():
        out = net(x, t, y, mask=mixed)
        alone = net(x[1:2], t[1:2], y[1:2], mask=Mask.keep_none(1, spec.num_tokens))
    assert torch.allclose(out[1:2], alone, atol=1e-6, rtol=0)


def test_gradients_reach_the_fusion_and_the_dense_blocks_only():
    spec = method_spec("sprint")
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens)).square().sum().backward()
    assert net.route_fuse.weight.grad is not None and net.blocks[3].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in net.blocks[1].parameters())  # the sparse span never ran


@pytest.mark.parametrize("method", ["maskdit", "deferred"])
def test_a_routing_that_never_rejoins_refuses_a_keep_nothing_mask(method):
    spec = method_spec(method)
    net = build_model(spec)
    x, t, y = inputs()
    with pytest.raises(ValueError, match=r"keeps no token.*routing\.end"):
        net(x, t, y, mask=Mask.keep_none(3, spec.num_tokens))
