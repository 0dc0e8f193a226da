"""SiT and REPA checkpoints: the official key layout, outputs equal to SiT's forward in both time
conventions, bit-exact round trips, REPA's projectors set aside, every bad key named."""

import argparse
import logging
import math

import pytest
import torch

from maskdit.core import MODEL_PRESETS, ModelSpec, build_denoiser, count_parameters
from maskdit.core.flow_denoiser import FlowDenoiser
from maskdit.interop import (
    CheckpointError,
    export_reference_sit,
    load_reference_sit,
    read_repa_projectors,
)

from .reference_layout import random_state, repa_shapes, sit_functional_forward, sit_shapes

TINY = dict(depth=2, hidden=32, patch=2, channels=4, classes=10, input_size=8)
REPA_ARGS = argparse.Namespace(model="SiT-B/2", path_type="linear", prediction="v", encoder_depth=1, qk_norm=False)
SIT_XL2_PARAMETERS = 675_129_632  # SiT-XL/2 (learn_sigma, 32x32 latents), every tensor of its models.py counted


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 4, 8, 8, generator=g)
    return x, torch.tensor([0.0, 1e-4, 0.4, 0.93, 1.0]), torch.tensor([0, 3, 9, 10, 5])  # 10 = null


def test_sit_presets_are_dit_networks_with_sits_process():
    names = {f"SiT-{size}/{patch}" for size in ("S", "B", "L", "XL") for patch in (2, 4, 8)}
    assert names <= set(MODEL_PRESETS) and "SiT-H/2" not in MODEL_PRESETS
    spec = ModelSpec(preset="SiT-XL/2")
    assert (spec.process.name, spec.process.convention, spec.process.prediction) == ("flow", "sit", "v")
    assert (spec.learn_sigma, spec.decoder_depth, spec.label_embedder, spec.depth, spec.num_heads) == (
        True, 0, "table", 28, 16)
    assert count_parameters(spec) == SIT_XL2_PARAMETERS
    denoiser = build_denoiser(ModelSpec(preset="SiT-S/8", depth=1, input_size=16), device="meta")
    assert isinstance(denoiser, FlowDenoiser) and denoiser.convention == "sit"
    mine = ModelSpec(preset="SiT-B/4", process={"name": "flow", "convention": "repa"})  # explicit fields win
    assert mine.process.convention == "repa" and mine.hidden_size == 768


def test_sit_xl2_official_key_list_loads_and_runs_on_meta():
    shapes = sit_shapes()  # SiT-XL/2 at 256x256 as SiT's train.py builds it
    assert len(shapes) == 292 and sum(math.prod(shape) for shape in shapes.values()) == SIT_XL2_PARAMETERS
    denoiser = load_reference_sit({key: torch.empty(shape, device="meta") for key, shape in shapes.items()},
                                  preset="SiT-XL/2")
    assert isinstance(denoiser, FlowDenoiser) and denoiser.convention == "sit"
    assert denoiser.spec.model_dump(exclude={"preset"}) == ModelSpec(preset="SiT-XL/2").model_dump(exclude={"preset"})
    state = denoiser.net.state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == shapes
    assert sum(value.numel() for value in state.values()) == SIT_XL2_PARAMETERS
    x = torch.empty(2, 4, 32, 32, device="meta")
    v = denoiser.velocity(x, torch.empty(2, device="meta"), labels=torch.zeros(2, dtype=torch.long, device="meta"))
    assert v.shape == (2, 4, 32, 32) and v.is_meta  # the learned-variance half is dropped


def test_sit_round_trip_is_bit_exact_and_equals_sits_forward():
    state = random_state(sit_shapes(**TINY))
    denoiser = load_reference_sit({"model": random_state(sit_shapes(**TINY), seed=3), "ema": state}, num_heads=4)
    spec = denoiser.spec
    assert (spec.depth, spec.hidden_size, spec.num_classes, spec.learn_sigma, denoiser.convention) == (
        2, 32, 10, True, "sit")
    exported = export_reference_sit(denoiser)
    assert exported.keys() == state.keys() and all(torch.equal(exported[key], state[key]) for key in state)
    x, t, labels = _inputs()
    with torch.no_grad():
        theirs = sit_functional_forward(state, x, t, labels, heads=4, patch=2)  # t = 1 at the data, fed as is
        torch.testing.assert_close(denoiser.velocity(x, t, labels=labels), theirs, rtol=0, atol=1e-5)
        # sigma space: x = x_t (1 + sigma) with t = 1 / (1 + sigma); D = x_t + (1 - t) v
        t_in = t[1:-1]
        sigma = (1 - t_in) / t_in
        x_sigma = x[1:-1] * (1 + sigma)[:, None, None, None]
        expected = x[1:-1] + (1 - t_in)[:, None, None, None] * theirs[1:-1]
        torch.testing.assert_close(denoiser(x_sigma, sigma, labels=labels[1:-1]), expected, rtol=0, atol=1e-5)


def test_bare_state_dict_and_ema_or_raw_weights():
    ema, raw = random_state(sit_shapes(**TINY)), random_state(sit_shapes(**TINY), seed=1)
    bare = load_reference_sit(ema, num_heads=4)
    from_dict = load_reference_sit({"model": raw, "ema": ema, "opt": {"step": torch.zeros(1)}}, num_heads=4)
    trained = load_reference_sit({"model": raw, "ema": ema}, which="model", num_heads=4)
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), from_dict.state_dict().values()))
    assert torch.equal(trained.net.blocks[0].attn.qkv.weight, raw["blocks.0.attn.qkv.weight"])
    with pytest.raises(CheckpointError, match="no 'opt' weights"):
        load_reference_sit({"model": raw, "ema": ema}, which="opt", num_heads=4)


def test_repa_runs_in_repas_time_and_sets_projectors_aside(caplog):
    shapes = repa_shapes(z_dims=(6, 5), projector_dim=12, **TINY)
    state = random_state(shapes)
    ckpt = {"model": state, "ema": state, "opt": {}, "args": REPA_ARGS, "steps": 7}
    with caplog.at_level(logging.INFO, logger="maskdit.interop.sit"):
        denoiser = load_reference_sit(ckpt, num_heads=4)
    assert "set aside REPA's 2 projector head(s) (z_dims [6, 5], width 12, after block 1)" in caplog.text
    assert denoiser.convention == "repa" and not denoiser.spec.learn_sigma
    assert not any("projectors" in key for key in denoiser.state_dict())
    projectors = read_repa_projectors(ckpt)
    assert (projectors.z_dims, projectors.projector_dim, projectors.hidden_size, projectors.encoder_depth) == (
        (6, 5), 12, 32, 1)
    own = {key.removeprefix("projectors.") for key in state if key.startswith("projectors.")}
    assert projectors.state.keys() == own
    assert all(torch.equal(value, state["projectors." + key]) for key, value in projectors.state.items())
    exported = export_reference_sit(denoiser, projectors=projectors)
    assert exported.keys() == state.keys() and all(torch.equal(exported[key], state[key]) for key in state)

    network = {key: value for key, value in state.items() if not key.startswith("projectors.")}
    x, t, labels = _inputs(1)
    with torch.no_grad():
        theirs = sit_functional_forward(network, x, t, labels, heads=4, patch=2)  # REPA's t (1 = noise) as is
        torch.testing.assert_close(denoiser.velocity(x, t, labels=labels), theirs, rtol=0, atol=1e-5)
        s = t[1:-1]  # sigma space: x = x_t (1 + sigma), s = sigma / (1 + sigma), D = x_t - s v
        sigma = s / (1 - s)
        expected = x[1:-1] - s[:, None, None, None] * theirs[1:-1]
        got = denoiser(x[1:-1] * (1 + sigma)[:, None, None, None], sigma, labels=labels[1:-1])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # exported without projectors it reads back in REPA's time only when told so
    plain = export_reference_sit(denoiser)
    assert load_reference_sit(plain, num_heads=4).convention == "sit"
    assert load_reference_sit(plain, num_heads=4, layout="repa").convention == "repa"


def test_repa_legacy_decoder_blocks_are_renumbered():
    state = random_state(repa_shapes(z_dims=(6,), projector_dim=12, **{**TINY, "depth": 3}))
    legacy = {key.replace("blocks.2.", "decoder_blocks.0.") if key.startswith("blocks.2.") else key: value
              for key, value in state.items()}
    args = argparse.Namespace(encoder_depth=2)
    loaded = load_reference_sit({"ema": legacy, "args": args}, num_heads=4)
    assert torch.equal(loaded.net.blocks[2].mlp.fc1.weight, state["blocks.2.mlp.fc1.weight"])
    with pytest.raises(CheckpointError, match="legacy layout with 2 blocks.* before .*args.encoder_depth is 1"):
        load_reference_sit({"ema": legacy, "args": argparse.Namespace(encoder_depth=1)}, num_heads=4)


def test_missing_unexpected_and_misshaped_keys_are_each_named():
    bad = random_state(sit_shapes(**TINY))
    bad["blocks.1.attn.proj.weight"] = torch.zeros(32, 31)
    bad["blocks.0.extra.weight"] = torch.zeros(3)
    bad["decoder_blocks.0.mlp.fc1.weight"] = torch.zeros(3)  # a MaskDiT decoder: no place in SiT
    del bad["blocks.1.mlp.fc2.bias"]
    with pytest.raises(CheckpointError) as err:
        load_reference_sit(bad, num_heads=4)
    message = str(err.value)
    assert "mis-shaped key blocks.1.attn.proj.weight: checkpoint has (32, 31)" in message
    assert "unexpected key blocks.0.extra.weight" in message
    assert "unexpected key decoder_blocks.0.mlp.fc1.weight" in message
    assert "missing key blocks.1.mlp.fc2.bias" in message


def test_repa_projector_keys_are_checked_and_not_taken_as_sit():
    state = random_state(repa_shapes(z_dims=(6, 5), projector_dim=12, **TINY))
    with pytest.raises(CheckpointError, match="unexpected key projectors.0.0.weight"):
        load_reference_sit(state, num_heads=4, layout="sit")
    broken = dict(state, **{"projectors.1.2.weight": torch.zeros(12, 11)})
    del broken["projectors.0.4.bias"]
    with pytest.raises(CheckpointError) as err:
        load_reference_sit(broken, num_heads=4)
    assert "mis-shaped key projectors.1.2.weight: checkpoint has (12, 11)" in str(err.value)
    assert "missing key projectors.0.4.bias" in str(err.value)
    with pytest.raises(CheckpointError, match="no REPA projectors"):
        read_repa_projectors(random_state(sit_shapes(**TINY)))


@pytest.mark.parametrize("change, match", [
    ({"args": argparse.Namespace(path_type="cosine")}, "args.path_type is 'cosine'"),
    ({"args": argparse.Namespace(encoder_depth=9)}, "args.encoder_depth 9 exceeds the 2 blocks"),
    ({"qk": True}, r"blocks.0.attn.k_norm.bias: a qk-norm model .* eps 1e-5"),
    ({"sigma": True}, "REPA's SiT has none"),
])
def test_repa_refusals_name_the_cause(change, match):
    state = random_state(repa_shapes(z_dims=(6,), projector_dim=12, **TINY))
    if change.get("qk"):
        state.update({f"blocks.0.attn.{n}_norm.{e}": torch.ones(8) for n in "qk" for e in ("weight", "bias")})
    if change.get("sigma"):
        state.update({"final_layer.linear.weight": torch.zeros(32, 32), "final_layer.linear.bias": torch.zeros(32)})
    with pytest.raises(CheckpointError, match=match):
        load_reference_sit({"ema": state, "args": change.get("args")}, num_heads=4)


def test_sit_args_and_files(tmp_path):
    state = random_state(sit_shapes(**TINY))
    args = argparse.Namespace(model="SiT-XL/2", path_type="Linear", prediction="velocity")
    torch.save({"model": state, "ema": state, "opt": {}, "args": args}, tmp_path / "0001000.pt")
    loaded = load_reference_sit(tmp_path / "0001000.pt")  # args.model gives the head count (16)
    assert loaded.spec.num_heads == 16
    noise = argparse.Namespace(path_type="Linear", prediction="noise")
    with pytest.raises(CheckpointError, match="args.prediction is 'noise'"):
        load_reference_sit({"ema": state, "args": noise}, num_heads=4)
    with pytest.raises(CheckpointError, match=r"num_heads=\.\.\. \(width 32\)"):
        load_reference_sit(state)
    with pytest.raises(TypeError, match="set by the layout"):
        load_reference_sit(state, num_heads=4, process={"name": "edm"})
    with pytest.raises(ValueError, match="layout must be"):
        load_reference_sit(state, num_heads=4, layout="dit")


def test_export_refuses_what_sit_cannot_express():
    edm = build_denoiser(ModelSpec(preset="DiT-S/2", depth=1, input_size=8, num_classes=3))
    with pytest.raises(TypeError, match="FlowDenoiser"):
        export_reference_sit(edm)
    flow = {"name": "flow", "convention": "sit"}
    maskdit = build_denoiser(ModelSpec(preset="MaskDiT-S/2", depth=1, decoder_depth=1, input_size=8, process=flow))
    with pytest.raises(ValueError, match="no place for: .*decoder_layer"):
        export_reference_sit(maskdit)
    sit = load_reference_sit(random_state(sit_shapes(**TINY)), num_heads=4)
    projectors = read_repa_projectors(random_state(repa_shapes(z_dims=(6,), projector_dim=12, **TINY)))
    with pytest.raises(ValueError, match="REPA projectors on a model in SiT's time"):
        export_reference_sit(sit, projectors=projectors)
    repa_sigma = build_denoiser(ModelSpec(preset="SiT-S/2", depth=1, input_size=8, num_classes=3,
                                          process={"name": "flow", "convention": "repa"}))
    with pytest.raises(ValueError, match="learn_sigma on a model in REPA's time"):
        export_reference_sit(repa_sigma)
    x0 = build_denoiser(ModelSpec(preset="SiT-S/2", depth=1, input_size=8, num_classes=3,
                                  process={"name": "flow", "convention": "sit", "prediction": "x0"}))
    with pytest.raises(ValueError, match="prediction 'x0'"):
        export_reference_sit(x0)
