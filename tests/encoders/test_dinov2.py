"""The dinov2 encoder: timm's networks, weights read from safetensors files (checked key by key),
REPA's preprocessing, the patch tokens as features; offline, on small random networks."""

import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from maskdit.config.errors import CheckpointError
from maskdit.encoders import DINOv2Encoder, DINOv2Spec, build_dinov2, build_encoder, create_network, timm_name
from maskdit.encoders import dinov2 as dinov2_module

timm = pytest.importorskip("timm")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _timm_net(registers: bool, image_size: int, seed: int = 0):
    torch.manual_seed(seed)  # the test's own network: timm's initialisation from the global RNG
    return timm.create_model(timm_name("small", registers), pretrained=False, img_size=image_size, num_classes=0)


def _save(net, path, **changes):
    state = {key: value.contiguous() for key, value in net.state_dict().items()}
    state.update(changes)
    save_file({key: value for key, value in state.items() if value is not None}, str(path))
    return path


def _grey(n: int = 2, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _expected_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """REPA's preprocessing written out: grey -> RGB, [-1, 1] -> [0, 1], ImageNet statistics, bicubic."""
    rgb = images.repeat(1, 3, 1, 1)
    x = ((rgb + 1) / 2 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


@pytest.mark.parametrize("size", ["small", "base", "large", "giant"])
@pytest.mark.parametrize("registers", [False, True])
def test_every_size_names_a_timm_architecture_with_released_weights(size, registers):
    name = timm_name(size, registers)
    assert name in timm.list_models("*dinov2*")
    assert f"{name}.lvd142m" in timm.list_pretrained("*dinov2*")


@pytest.mark.parametrize("registers,prefix", [(False, 1), (True, 5)])
def test_weights_from_a_file_give_timms_own_patch_tokens(tmp_path, registers, prefix):
    net = _timm_net(registers, 28).eval()
    encoder = build_dinov2("small", registers=registers, image_size=28, path=_save(net, tmp_path / "w.safetensors"))
    images = _grey()
    with torch.no_grad():
        tokens = net.forward_features(_expected_input(images, 28))  # [B, prefix + 4, 384]
    assert tokens.shape[1] == prefix + 4
    expected = tokens[:, prefix:].transpose(1, 2).reshape(2, 384, 2, 2)  # raster order -> [B, D, 2, 2]
    features = encoder(images)
    assert features.shape == (2, 384, 2, 2) and encoder.width == 384 and encoder.grid_size == 2
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(features, tokens[:, :4].transpose(1, 2).reshape(2, 384, 2, 2))  # prefix not kept


def test_grey_and_rgb_images_agree_and_the_network_sees_the_resized_image(tmp_path):
    encoder = build_dinov2("small", image_size=42, weights="random", seed=2)
    seen = []
    encoder.network.patch_embed.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    images = _grey(side=32)
    grey = encoder(images)
    rgb = encoder(images.repeat(1, 3, 1, 1))
    torch.testing.assert_close(grey, rgb)
    assert seen[0].shape == (2, 3, 42, 42)
    torch.testing.assert_close(seen[0], _expected_input(images, 42))
    assert grey.shape == (2, 384, 3, 3)
    with pytest.raises(ValueError, match="reads images with 1 or 3 channels, got 4 channels"):
        encoder(torch.zeros(1, 4, 32, 32))


def test_random_weights_follow_the_seed_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first = build_encoder(DINOv2Spec(size="small", image_size=14, weights="random", seed=5))
    again = build_encoder(DINOv2Spec(size="small", image_size=14, weights="random", seed=5))
    other = build_encoder(DINOv2Spec(size="small", image_size=14, weights="random", seed=6))
    assert torch.equal(state, torch.random.get_rng_state())
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert not torch.equal(first.network.blocks[0].attn.qkv.weight, other.network.blocks[0].attn.qkv.weight)
    assert first.network.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert isinstance(first, DINOv2Encoder) and not first.training


def test_positions_stored_for_another_resolution_are_resampled_bicubically(tmp_path):
    net = _timm_net(False, 42)  # a 3 x 3 grid (timm's released files hold 37 x 37, for 518 pixels)
    encoder = build_dinov2("small", image_size=28, path=_save(net, tmp_path / "w.safetensors"))
    stored = net.pos_embed.detach()  # [1, 1 + 9, 384]
    grid = stored[:, 1:].transpose(1, 2).reshape(1, 384, 3, 3)
    expected = F.interpolate(grid, size=(2, 2), mode="bicubic", align_corners=False).reshape(1, 384, 4).transpose(1, 2)
    torch.testing.assert_close(encoder.network.pos_embed[:, 1:], expected)
    torch.testing.assert_close(encoder.network.pos_embed[:, :1], stored[:, :1])  # the class token's own position


def test_a_missing_or_unreadable_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"no encoder weights file at {tmp_path / 'nope.safetensors'}"):
        build_dinov2("small", image_size=14, path=tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=f"{garbage}: not a readable safetensors file"):
        build_dinov2("small", image_size=14, path=garbage)


def test_missing_unexpected_and_misshapen_keys_are_named_with_the_file(tmp_path):
    net = _timm_net(False, 14)
    missing = _save(net, tmp_path / "missing.safetensors", **{"norm.weight": None})
    with pytest.raises(CheckpointError, match=f"{missing}: not weights of this encoder: missing key.s. norm.weight$"):
        build_dinov2("small", image_size=14, path=missing)
    extra = _save(net, tmp_path / "extra.safetensors", **{"head.weight": torch.zeros(10, 384)})
    with pytest.raises(CheckpointError, match=f"{extra}: .*unexpected key.s. head.weight"):
        build_dinov2("small", image_size=14, path=extra)
    shaped = _save(net, tmp_path / "shaped.safetensors", **{"blocks.3.mlp.fc1.weight": torch.zeros(1536, 380)})
    with pytest.raises(CheckpointError, match=rf"{shaped}: .*blocks.3.mlp.fc1.weight is \(1536, 380\), the "
                                              r"encoder's is \(1536, 384\)"):
        build_dinov2("small", image_size=14, path=shaped)
    registers = _save(_timm_net(True, 14), tmp_path / "registers.safetensors")
    with pytest.raises(CheckpointError, match="unexpected key.s. reg_token"):
        build_dinov2("small", image_size=14, path=registers)  # a file of the other variant
    for shape in [(1, 7, 384), (1, 1, 384), (1, 5, 380), (384,)]:  # not 1 + n^2 positions of width 384
        odd = _save(net, tmp_path / "odd.safetensors", pos_embed=torch.zeros(shape))
        with pytest.raises(CheckpointError, match=rf"{odd}: pos_embed is \({', '.join(map(str, shape))},?\), not "
                                                  rf"\[1, 1 \+ n\^2, 384\]"):
            build_dinov2("small", image_size=14, path=odd)


def test_the_hub_is_only_asked_for_its_safetensors_file(tmp_path, monkeypatch):
    path = _save(_timm_net(True, 14), tmp_path / "w.safetensors")
    asked = []
    monkeypatch.setattr(dinov2_module, "hub_weights_file", lambda size, registers: asked.append((size, registers))
                        or str(path))
    encoder = build_encoder({"name": "dinov2", "size": "small", "registers": True, "image_size": 14, "source": "hub"})
    assert asked == [("small", True)]
    assert torch.equal(encoder.network.reg_token, _timm_net(True, 14).reg_token)


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what a missing package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'maskdit\[repa\]'"):
        create_network("small", False, 14)
