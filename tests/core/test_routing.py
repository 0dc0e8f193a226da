"""Token routing: MaskDiT, deferred masking (MicroDiT), TREAD and SPRINT as settings of one backbone."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maskdit.core import ModelSpec, build_model, count_parameters, flops_per_forward
from maskdit.losses import build_objective
from maskdit.losses.specs import DSMSpec, LossesSpec

from .helpers import random_mask, randomize_, tiny_spec

#: method -> model overrides on a 4-block tiny encoder (decoder only for MaskDiT)
METHODS = {
    "maskdit": {},
    "deferred": {"decoder_depth": 0, "routing": {"start": 1}},
    "tread": {"decoder_depth": 0, "routing": {"start": 1, "end": 3}},
    "sprint": {"decoder_depth": 0, "routing": {"start": 1, "end": 3, "fill": "mask_token", "fuse": "concat"}},
}


def method_spec(method: str, **overrides) -> ModelSpec:
    return tiny_spec(depth=4, **{**METHODS[method], **overrides})


def inputs(batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 8, 8, generator=generator)
    return x, torch.rand(batch, generator=generator), torch.arange(batch) % 5


def token_counts(net, call) -> list[int]:
    """Tokens each encoder block sees in one forward pass, in block order."""
    seen: list[int] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1])) for block in net.blocks]
    try:
        call()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_shapes_and_gradients(method, ratio):
    spec = method_spec(method)
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    out = net(x, t, y, mask=random_mask(spec, 3, ratio))
    assert out.shape == (3, 3, 8, 8) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in net.blocks.parameters())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_flops_match_the_flop_counter(method, ratio):
    spec = method_spec(method)
    net = build_model(spec)
    x, t, y = inputs()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        net(x, t, y, mask=random_mask(spec, 3, ratio))
    assert counter.get_total_flops() == 2 * 3 * flops_per_forward(spec, mask_ratio=ratio)


@pytest.mark.parametrize("method, sparse", [("maskdit", range(0, 4)), ("deferred", range(1, 4)),
                                            ("tread", range(1, 3)), ("sprint", range(1, 3))])
def test_sparse_blocks_see_exactly_the_kept_tokens(method, sparse):
    spec = method_spec(method)
    net = build_model(spec)
    x, t, y = inputs()
    mask = random_mask(spec, 3, 0.75)  # 16 tokens, 4 kept
    seen = token_counts(net, lambda: net(x, t, y, mask=mask))
    assert seen == [mask.num_kept if i in sparse else 16 for i in range(4)]
    assert token_counts(net, lambda: net(x, t, y)) == [16] * 4  # no mask: every block sees every token


def test_a_routed_token_skips_the_sparse_blocks():
    """TREAD: where the route ends before the head, a dropped token leaves the encoder exactly as it
    left block 0, and nothing of the skipped blocks reaches it (no gradient)."""
    spec = tiny_spec(depth=3, decoder_depth=0, routing={"start": 1, "end": 3})
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    mask = random_mask(spec, 3, 0.5)
    tokens = net.x_embedder(x) + net.pos_embed
    c = net.condition(t, y)
    after_block0 = net.blocks[0](tokens, c)
    out = net.encode(tokens, c, mask)  # [B, L, D]
    dropped = mask.dropped
    assert torch.equal(out[dropped], after_block0[dropped])
    assert not torch.allclose(out[~dropped], after_block0[~dropped])
    out[dropped].square().sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in net.blocks[1:].parameters())
    assert any(p.grad is not None and p.grad.any() for p in net.blocks[0].parameters())


def test_sprint_pads_with_its_mask_token_and_fuses_with_the_dense_shallow_output():
    spec = method_spec("sprint")
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    mask = random_mask(spec, 3, 0.75)
    tokens = net.x_embedder(x) + net.pos_embed
    c = net.condition(t, y)
    shallow = net.blocks[0](tokens, c)
    deep = mask.gather(shallow)
    for block in net.blocks[1:3]:
        deep = block(deep, c)
    padded = mask.scatter(deep, net.route_mask_token)
    expected = net.blocks[3](net.route_fuse(torch.cat([padded, shallow], dim=-1)), c)
    torch.testing.assert_close(net.encode(tokens, c, mask), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["deferred", "tread"])
def test_without_a_mask_routing_models_are_the_dense_dit(method):
    """Same weights, no mask: deferred masking and TREAD are exactly DiT (they add no parameters)."""
    spec = method_spec(method)
    routed = randomize_(build_model(spec))
    dense = build_model(spec.model_copy(update={"routing": ModelSpec.model_fields["routing"].default}))
    dense.load_state_dict(routed.state_dict())
    x, t, y = inputs()
    assert torch.equal(routed(x, t, y), dense(x, t, y))


@pytest.mark.parametrize("method", METHODS)
def test_identity_mask_equals_no_mask(method):
    spec = method_spec(method)
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    assert torch.equal(net(x, t, y), net(x, t, y, mask=random_mask(spec, 3, 0.0)))


@pytest.mark.parametrize("method", METHODS)
def test_only_maskdit_discards_the_dropped_inputs(method):
    """MaskDiT drops before any block, so its output ignores the inputs at dropped positions; the
    other methods mix them in first (deferred masking) or carry them around the sparse span."""
    spec = method_spec(method)
    net = randomize_(build_model(spec))
    x, t, y = inputs()
    mask = random_mask(spec, 3, 0.5)
    dropped_pixels = mask.dropped.view(3, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)  # [B, 1, H, W]
    changed = torch.where(dropped_pixels, x + 5.0, x)
    same = torch.equal(net(x, t, y, mask=mask), net(changed, t, y, mask=mask))
    assert same == (method == "maskdit")


def test_loss_covers_what_the_routing_implies():
    losses = LossesSpec(terms=(DSMSpec(),))
    visible = build_objective(losses, loss_tokens=ModelSpec.model_validate(method_spec("deferred").model_dump())
                              .routing.loss_tokens)
    everything = build_objective(losses, loss_tokens=method_spec("tread").routing.loss_tokens)
    pinned = build_objective(LossesSpec(terms=(DSMSpec(tokens="visible"),)), loss_tokens="all")
    assert visible.terms[0].term.tokens == "visible" and pinned.terms[0].term.tokens == "visible"
    assert everything.terms[0].term.tokens == "all"
    spec = method_spec("tread")
    mask = random_mask(spec, 3, 0.5)
    y = torch.randn(3, 3, 8, 8)
    denoise = lambda noisy, sigma, labels=None, mask=None: torch.zeros_like(noisy)  # noqa: E731
    sigma = torch.full((3,), 0.5)
    noise = torch.randn(3, 3, 8, 8)
    full = everything(denoise, y, sigma=sigma, noise=noise, mask=mask).total
    expected = 8.0 * y.square().flatten(1).mean(1)  # lambda(0.5) = 0.5 / 0.0625 = 8 with sigma_data 0.5; D = 0
    torch.testing.assert_close(full, expected)
    kept_only = visible(denoise, y, sigma=sigma, noise=noise, mask=mask).total
    assert not torch.allclose(kept_only, expected)


def test_routing_spec_validation():
    with pytest.raises(ValidationError, match="must lie after routing.start"):
        tiny_spec(depth=4, routing={"start": 2, "end": 2})
    with pytest.raises(ValidationError, match="set routing.end"):
        tiny_spec(depth=4, routing={"start": 1, "fuse": "concat"})
    with pytest.raises(ValidationError, match="must hold blocks"):
        tiny_spec(depth=4, routing={"start": 4})
    with pytest.raises(ValidationError, match="must hold blocks"):
        tiny_spec(depth=4, routing={"start": 1, "end": 5})
    spec = method_spec("sprint")
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
def test_method_presets_have_dit_parameters(size):
    dit = count_parameters(ModelSpec(preset=f"DiT-{size}/2"))
    width = ModelSpec(preset=f"DiT-{size}/2").hidden_size
    assert count_parameters(ModelSpec(preset=f"TREAD-{size}/2")) == dit
    assert count_parameters(ModelSpec(preset=f"Deferred-{size}/2")) == dit
    # SPRINT adds its fusion Linear (2D -> D); its fixed mask token is a buffer, not a parameter
    assert count_parameters(ModelSpec(preset=f"SPRINT-{size}/2")) == dit + 2 * width * width + width


def test_tread_xl_route_is_the_papers():
    routing = ModelSpec(preset="TREAD-XL/2").routing
    assert (routing.start, routing.end - 1) == (2, 25)  # blocks 2..25 of 28 see the kept tokens
    sprint = ModelSpec(preset="SPRINT-XL/2").routing
    assert (sprint.start, 28 - sprint.end) == (2, 2)  # 2 dense + 24 sparse + 2 dense


def test_a_spec_refuses_losses_a_routing_cannot_serve():
    from maskdit.app.experiment_spec import ExperimentSpec, load_spec_dict

    examples = Path(__file__).resolve().parents[2] / "examples"
    deferred = load_spec_dict(str(examples / "digits-deferred.json"))
    ExperimentSpec.model_validate(deferred)
    with_mae = {**deferred, "losses": {**deferred["losses"], "terms": [{"name": "dsm"}, {"name": "mae"}]}}
    with pytest.raises(ValidationError, match="mae needs predictions at dropped positions"):
        ExperimentSpec.model_validate(with_mae)
    all_tokens = {**deferred, "losses": {**deferred["losses"], "terms": [{"name": "dsm", "tokens": "all"}]}}
    with pytest.raises(ValidationError, match="dsm with tokens 'all'"):
        ExperimentSpec.model_validate(all_tokens)
    tread = load_spec_dict(str(examples / "digits-tread.json"))
    assert ExperimentSpec.model_validate(tread).model.routing.loss_tokens == "all"
