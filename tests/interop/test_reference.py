"""Reference MaskDiT / DiT checkpoints: load, run identically, export back bit-exactly, fail loudly."""

import argparse
import math

import pytest
import torch

from maskdit.core import DDPMDenoiser, Denoiser, ModelSpec, build_denoiser, build_model
from maskdit.interop import (
    CheckpointError,
    check_state,
    export_reference_dit,
    export_reference_maskdit,
    load_reference_dit,
    load_reference_maskdit,
)
from maskdit.masking import ConstantRatio, RandomMasking

from .reference_layout import dit_shapes, functional_forward, maskdit_shapes, random_state

TINY = dict(depth=2, hidden=32, dec_depth=2, dec_hidden=24, patch=2, channels=4, classes=10, input_size=8)
HEADS = dict(num_heads=4, decoder_num_heads=3)


def test_reference_key_list_has_218_keys_and_fits_maskdit_s2():
    shapes = maskdit_shapes()
    assert len(shapes) == 218
    net = build_model(ModelSpec(preset="MaskDiT-S/2"), device="meta")
    state = {key.removeprefix("model."): torch.empty(shape, device="meta") for key, shape in shapes.items()}
    check_state(net, state)  # names and shapes all agree with the reference S/2 layout


def test_dit_key_list_fits_dit_xl2_with_learned_sigma():
    net = build_model(ModelSpec(preset="DiT-XL/2", learn_sigma=True), device="meta")
    check_state(net, {key: torch.empty(shape, device="meta") for key, shape in dit_shapes().items()})


def test_maskdit_round_trip_is_bit_exact_and_output_identical():
    state = random_state(maskdit_shapes(**TINY))
    checkpoint = {"model": random_state(maskdit_shapes(**TINY), seed=5), "ema": state, "opt": {}, "args": {}}
    checkpoint["opt"] = {"note": torch.zeros(1)}
    denoiser = load_reference_maskdit({"model": checkpoint["model"], "ema": state}, **HEADS)
    assert isinstance(denoiser, Denoiser)
    spec = denoiser.spec
    assert (spec.depth, spec.hidden_size, spec.decoder_depth, spec.decoder_hidden_size, spec.num_classes) == (
        2, 32, 2, 24, 10)
    assert (spec.label_embedder, spec.learn_sigma, spec.input_size, spec.in_channels) == ("onehot", False, 8, 4)
    exported = export_reference_maskdit(denoiser)
    assert exported.keys() == state.keys()
    assert all(torch.equal(exported[key], state[key]) for key in state)

    # the backbone computes what the reference computes, with and without a mask
    plain = {key.removeprefix("model."): value for key, value in state.items()}
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, generator=g)
    labels = torch.tensor([0, 7, 10])  # 10 = null
    onehot = torch.nn.functional.one_hot(labels, 11)[:, :10].float()
    mask = RandomMasking(ConstantRatio(0.5))(3, (4, 4), generator=g)
    with torch.no_grad():
        for m, kwargs in [(None, {}), (mask, {"ids_keep": mask.ids_keep, "ids_restore": mask.ids_restore})]:
            ours = denoiser.net(x, t, labels, mask=m)
            theirs = functional_forward(plain, x, t, onehot, heads=4, dec_heads=3, patch=2, **kwargs)
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_which_weights_and_raw_weights_selection():
    ema, raw = random_state(maskdit_shapes(**TINY)), random_state(maskdit_shapes(**TINY), seed=1)
    ckpt = {"model": raw, "ema": ema}
    loaded = load_reference_maskdit(ckpt, which="model", **HEADS)
    assert torch.equal(loaded.net.pos_embed, raw["model.pos_embed"])
    with pytest.raises(CheckpointError, match="no 'opt' weights"):
        load_reference_maskdit(ckpt, which="opt", **HEADS)


def test_dit_round_trip_and_ddpm_semantics():
    state = random_state(dit_shapes(depth=2, hidden=32, channels=4, classes=10, input_size=8))
    denoiser = load_reference_dit(state, num_heads=2)
    assert isinstance(denoiser, DDPMDenoiser)
    spec = denoiser.spec
    assert (spec.learn_sigma, spec.label_embedder, spec.num_classes, spec.decoder_depth) == (True, "table", 10, 0)
    exported = export_reference_dit(denoiser)
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], state[k]) for k in state)
    # at a table sigma the network sees the integer timestep and returns x - sigma * eps
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    sigma = ((1 - abar[250]) / abar[250]).sqrt().float()
    x = torch.randn(2, 4, 8, 8)
    labels = torch.tensor([3, 10])
    with torch.no_grad():
        eps = denoiser.net(x / (sigma**2 + 1).sqrt(), torch.full((2,), 250.0), labels)[:, :4]
        torch.testing.assert_close(denoiser(x, sigma.expand(2), labels=labels), x - sigma * eps, rtol=1e-4, atol=1e-4)


def test_wrong_shape_and_extra_key_are_named():
    state = random_state(maskdit_shapes(**TINY))
    bad = dict(state)
    bad["model.blocks.1.attn.proj.weight"] = torch.zeros(32, 31)
    bad["model.blocks.0.extra.weight"] = torch.zeros(3)
    del bad["model.blocks.1.mlp.fc2.bias"]
    with pytest.raises(CheckpointError) as err:
        load_reference_maskdit(bad, **HEADS)
    message = str(err.value)
    assert "mis-shaped key blocks.1.attn.proj.weight: checkpoint has (32, 31)" in message
    assert "unexpected key blocks.0.extra.weight" in message
    assert "missing key blocks.1.mlp.fc2.bias" in message


def test_missing_head_counts_say_what_to_pass():
    state = random_state(maskdit_shapes(**TINY))
    with pytest.raises(CheckpointError, match=r"num_heads=\.\.\. \(width 32\), decoder_num_heads=\.\.\. \(width 24\)"):
        load_reference_maskdit(state)
    with pytest.raises(CheckpointError, match="not divisible"):
        load_reference_maskdit(state, num_heads=5, decoder_num_heads=3)


def test_preset_supplies_heads_for_a_real_size():
    shapes = maskdit_shapes(depth=12, hidden=384, dec_depth=8, dec_hidden=512, classes=1000, input_size=32)
    state = {key: torch.zeros(shape) for key, shape in shapes.items()}
    denoiser = load_reference_maskdit(state, preset="MaskDiT-S/2")
    assert (denoiser.spec.num_heads, denoiser.spec.decoder_num_heads) == (6, 16)


def test_files_torch_and_safetensors_and_refusal(tmp_path):
    from safetensors.torch import save_file

    state = random_state(maskdit_shapes(**TINY))
    torch.save({"model": state, "ema": state, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "ckpt.pt")
    from_torch = load_reference_maskdit(tmp_path / "ckpt.pt", **HEADS)
    save_file(state, str(tmp_path / "ckpt.safetensors"))
    from_st = load_reference_maskdit(str(tmp_path / "ckpt.safetensors"), **HEADS)
    assert all(torch.equal(a, b) for a, b in zip(from_torch.state_dict().values(), from_st.state_dict().values()))

    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"model": state, "args": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_reference_maskdit(tmp_path / "evil.pt", **HEADS)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_reference_maskdit(tmp_path / "absent.pt", **HEADS)


def test_export_refuses_mismatched_preconditioning():
    edm = build_denoiser(ModelSpec(preset="DiT-S/2", depth=1, input_size=8, num_classes=3))
    with pytest.raises(TypeError, match="DDPM"):
        export_reference_dit(edm)
    ddpm = build_denoiser(ModelSpec(preset="DiT-S/2", depth=1, input_size=8, num_classes=3, precond="ddpm"))
    with pytest.raises(TypeError, match="EDM"):
        export_reference_maskdit(ddpm)


@pytest.mark.parametrize("overrides", [{"label_embedder": "table"}, {"num_classes": 0}, {"learn_sigma": True},
                                       {"decoder_depth": 0}, {"qk_norm": True}])
def test_our_variants_round_trip_through_the_maskdit_layout(overrides):
    fields = dict(input_size=8, in_channels=3, patch_size=2, depth=1, hidden_size=16, num_heads=2,
                  decoder_depth=1, decoder_hidden_size=8, decoder_num_heads=2, num_classes=4)
    spec = ModelSpec(**{**fields, **overrides})
    denoiser = build_denoiser(spec, generator=torch.Generator().manual_seed(1))
    if spec.qk_norm:
        with pytest.raises(ValueError, match="qk_norm"):
            export_reference_maskdit(denoiser)
        return
    state = export_reference_maskdit(denoiser)
    back = load_reference_maskdit(state, num_heads=2, decoder_num_heads=2, label_embedder=spec.label_embedder)
    unused = {"decoder_hidden_size", "decoder_num_heads"} if not spec.decoder_depth else set()
    assert back.spec.model_dump(exclude=unused) == spec.model_dump(exclude=unused)
    assert all(torch.equal(a, b) for a, b in zip(denoiser.state_dict().values(), back.state_dict().values()))
    with torch.no_grad():
        assert math.isfinite(float(back(torch.randn(1, 3, 8, 8), 1.0).sum()))
