"""The MaskDiT backbone: shapes, masking really shrinks the encoder, zero-init, labels, determinism."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskdit.core import MaskDiT, build_model
from maskdit.masking import Mask

from .helpers import random_mask, randomize_, tiny_spec


def _inputs(batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 8, 8, generator=g), torch.rand(batch, generator=g), torch.tensor([0, 1, 4, 5][:batch])


@pytest.mark.parametrize(
    "overrides", [{}, {"decoder_depth": 0}, {"learn_sigma": True}, {"qk_norm": True}, {"label_embedder": "table"}]
)
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_output_shape_and_gradients(overrides, ratio):
    spec = tiny_spec(**overrides)
    net = randomize_(build_model(spec))
    x, t, y = _inputs()
    out = net(x, t, y, mask=random_mask(spec, 4, ratio))
    assert out.shape == (4, spec.out_channels, 8, 8)
    out.square().sum().backward()
    unused = set() if ratio else {"mask_token"}  # no dropped positions to fill
    assert all(p.grad is not None for name, p in net.named_parameters() if name not in unused)
    assert not any(b.requires_grad for b in net.buffers())


def test_encoder_sees_only_kept_tokens():
    spec = tiny_spec(depth=2, decoder_depth=2)
    net = build_model(spec)
    seen = {}

    def recorder(key):
        def hook(module, args):
            seen[key] = args[0].shape

        return hook

    net.blocks[0].register_forward_pre_hook(recorder("enc"))
    net.decoder_blocks[0].register_forward_pre_hook(recorder("dec"))
    x, t, y = _inputs()
    mask = random_mask(spec, 4, 0.75)
    net(x, t, y, mask=mask)
    assert seen["enc"] == (4, mask.num_kept, 32) and mask.num_kept == 4
    assert seen["dec"] == (4, 16, 16)


@settings(max_examples=15, deadline=None)
@given(
    ratio=st.sampled_from([0.25, 0.5, 0.75]),
    seed=st.integers(0, 2**16),
    decoder_depth=st.sampled_from([0, 1]),
    scale=st.floats(0.1, 100.0),
)
def test_output_ignores_values_at_dropped_positions(ratio, seed, decoder_depth, scale):
    spec = tiny_spec(decoder_depth=decoder_depth)
    net = randomize_(build_model(spec), seed=1)
    x, t, y = _inputs(seed=seed)
    mask = random_mask(spec, 4, ratio, seed=seed)
    # pixels of dropped patches, [B, 1, H, W]
    pixel_dropped = mask.dropped.reshape(4, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    noise = scale * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1))
    changed = torch.where(pixel_dropped, noise, x)
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, y, mask=mask), net(changed, t, y, mask=mask), rtol=0, atol=0)
        assert not torch.equal(net(x, t, y), net(changed, t, y))  # without the mask they do matter


def test_identity_mask_equals_no_mask():
    spec = tiny_spec()
    net = randomize_(build_model(spec))
    x, t, y = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, y, mask=Mask.identity(4, 16)), net(x, t, y))


def test_fresh_model_predicts_zero_and_build_is_deterministic():
    spec = tiny_spec()
    x, t, y = _inputs()
    state = torch.random.get_rng_state()
    a = build_model(spec, generator=torch.Generator().manual_seed(3))
    b = build_model(spec, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is never drawn
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert torch.count_nonzero(a(x, t, y)) == 0  # adaLN-Zero + zero final layer


def test_unconditional_model():
    spec = tiny_spec(num_classes=0)
    net = randomize_(build_model(spec))
    assert net.y_embedder is None
    x, t, _ = _inputs()
    assert net(x, t).shape == (4, 3, 8, 8)
    torch.testing.assert_close(net(x, t, torch.zeros(4, dtype=torch.long)), net(x, t))
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, torch.ones(4, dtype=torch.long))


@pytest.mark.parametrize("kind", ["onehot", "table"])
def test_labels(kind):
    spec = tiny_spec(label_embedder=kind)
    net = randomize_(build_model(spec))
    null = torch.full((4,), 5)
    embedded = net.y_embedder(null)
    if kind == "onehot":
        assert torch.count_nonzero(embedded) == 0
        one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2, 4]), 5).float()
        torch.testing.assert_close(net.y_embedder(torch.tensor([0, 2, 4])), net.y_embedder.embedding_table(one_hot))
        assert net.y_embedder.embedding_table.weight.shape == (32, 5)
    else:
        assert torch.count_nonzero(embedded) > 0
        assert net.y_embedder.embedding_table.weight.shape == (6, 32)
    x, t, _ = _inputs()
    torch.testing.assert_close(net(x, t, None), net(x, t, null))
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        net(x, t, torch.tensor([0, 1, 2, 6]))


def test_bad_inputs_raise():
    spec = tiny_spec()
    net = build_model(spec)
    x, t, y = _inputs()
    with pytest.raises(ValueError, match="expected input"):
        net(x[:, :2], t, y)
    with pytest.raises(ValueError, match="does not fit"):
        net(x, t, y, mask=Mask.identity(4, 9))


def test_state_dict_keys_follow_the_reference_layout():
    net = build_model(tiny_spec(depth=1), device="meta")
    keys = set(net.state_dict())
    for key in [
        "pos_embed", "decoder_pos_embed", "mask_token", "x_embedder.proj.weight", "t_embedder.mlp.0.weight",
        "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight", "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias",
        "blocks.0.adaLN_modulation.1.weight", "decoder_layer.linear.weight", "decoder_layer.adaLN_modulation.1.bias",
        "decoder_blocks.0.attn.qkv.weight", "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight",
    ]:
        assert key in keys
    assert isinstance(net, MaskDiT)
