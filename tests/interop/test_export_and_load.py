"""load_run from every place a model lives, and `python -m maskdit.export` to every format,
including a diffusers DiTTransformer2DModel folder checked against diffusers itself."""

import json

import pytest
import torch

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.app.run_loading import load_run, open_run
from maskdit.core import build_denoiser
from maskdit.app.commands.export import main as export_main
from maskdit.interop import CheckpointError, load_reference_dit, load_reference_maskdit, load_reference_sit
from maskdit.io.checkpoint import save_checkpoint
from tests.train.test_checkpoint_safety import rewrite_tensors

DIT = {"input_size": 16, "in_channels": 4, "patch_size": 2, "depth": 2, "hidden_size": 64, "num_heads": 4,
       "decoder_depth": 0, "num_classes": 10, "label_embedder": "table", "learn_sigma": True, "precond": "ddpm"}
SIT = {**{k: v for k, v in DIT.items() if k != "precond"}, "process": {"name": "flow", "convention": "sit"}}
MASKDIT = {**DIT, "decoder_depth": 1, "decoder_hidden_size": 32, "decoder_num_heads": 2, "learn_sigma": False,
           "label_embedder": "onehot", "precond": "edm"}


def make_run(root, model, *, poison=False):
    """A run folder with one checkpoint whose EMA differs from its raw weights (all non-zero)."""
    spec = ExperimentSpec.model_validate({"name": "r", "model": model, "data": {"name": "latents", "path": "x",
                                          "channels": 4, "resolution": 16, "num_classes": 10},
                                          "masking": {"name": "none"}, "sampler": {"name": "euler", "steps": 2},
                                          "train": {"steps": 4}})
    denoiser = build_denoiser(spec.model, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    model_state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() and "pos_embed" not in k
                   else v for k, v in denoiser.state_dict().items()}
    ema = {k: v * 0.9 if "pos_embed" not in k else v.clone() for k, v in model_state.items()}
    path = save_checkpoint(root / "r" / "checkpoints", 4, {"model": model_state, "ema": ema},
                           {"step": 4, "spec": spec.model_dump(mode="json")}, keep=2)
    if poison:  # written after the save, which refuses NaN, with a matching checksum: only the NaN check is left
        rewrite_tensors(path, lambda flat: flat["ema/net.final_layer.linear.weight"].view(-1).__setitem__(0, float("nan")))
    return root / "r", ema


def same_weights(denoiser, state):
    return all(torch.equal(denoiser.state_dict()[k], v) for k, v in state.items())


def test_load_run_from_run_folder_checkpoint_and_native_export(tmp_path):
    run, ema = make_run(tmp_path, DIT)
    denoiser, spec = load_run(run)
    assert spec.name == "r" and same_weights(denoiser, ema) and not denoiser.training
    again, _ = load_run(run / "checkpoints" / "step-00000004", weights="model")
    assert not same_weights(again, ema)
    assert export_main([str(run), "--format", "native", "--out", str(tmp_path / "m")]) == 0
    native, none = load_run(tmp_path / "m.safetensors")
    assert none is None and same_weights(native, ema) and native.spec == spec.model


def test_load_run_refuses_nan_weights_and_non_models(tmp_path):
    run, _ = make_run(tmp_path, DIT, poison=True)
    with pytest.raises(CheckpointError, match="non-finite values in ema/"):
        load_run(run)
    with pytest.raises(CheckpointError, match="not a maskdit checkpoint, run folder, native export or diffusers"):
        load_run(tmp_path)
    (tmp_path / "fake.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    (tmp_path / "fake.json").write_text(json.dumps({"format": "maskdit-native", "version": 1, "model": DIT}))
    with pytest.raises(CheckpointError, match="fake.safetensors: not a readable safetensors file"):
        load_run(tmp_path / "fake.safetensors")


@pytest.mark.parametrize("fmt,model,loader", [("reference-dit", DIT, load_reference_dit),
                                               ("reference-maskdit", MASKDIT, load_reference_maskdit),
                                               ("reference-sit", SIT, load_reference_sit)])
def test_reference_exports_load_back_bit_exactly(tmp_path, fmt, model, loader):
    run, ema = make_run(tmp_path, model)
    out = tmp_path / "ref.pt"
    assert export_main([str(run), "--format", fmt, "--out", str(out)]) == 0
    back = loader(out, num_heads=4, decoder_num_heads=2) if model["decoder_depth"] else loader(out, num_heads=4)
    assert same_weights(back, ema)
    assert back.precond == ("flow" if fmt == "reference-sit" else model.get("precond"))


def test_a_sit_export_reads_back_through_load_run_and_samples(tmp_path):
    run, ema = make_run(tmp_path, SIT)
    out = tmp_path / "sit.pt"
    assert export_main([str(run), "--format", "reference-sit", "--out", str(out)]) == 0
    assert export_main([str(run), "--format", "reference-dit", "--out", str(tmp_path / "dit.pt")]) == 2  # not DDPM
    loaded = open_run(out, format="reference-sit", architecture={"num_heads": 4})
    assert loaded.spec is None and loaded.denoiser.convention == "sit" and same_weights(loaded.denoiser, ema)


def test_diffusers_export_matches_diffusers_and_loads_back(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    run, ema = make_run(tmp_path, DIT)
    folder = tmp_path / "hf"
    assert export_main([str(run), "--format", "diffusers", "--out", str(folder)]) == 0
    theirs = diffusers.DiTTransformer2DModel.from_pretrained(str(folder)).eval()
    ours, _ = load_run(run)
    gen = torch.Generator().manual_seed(3)
    x, labels = torch.randn(3, 4, 16, 16, generator=gen), torch.tensor([0, 4, 9])

    def gap(t):
        timesteps = torch.full((3,), float(t))
        with torch.no_grad():
            return (ours.net(x, timesteps, labels=labels) - theirs(x, timestep=timesteps, class_labels=labels).sample
                    ).abs().max().item()

    assert gap(0) < 1e-5  # float rounding only
    assert gap(500) > 1e-3  # diffusers' timestep embedding (downscale_freq_shift=1) differs from DiT's
    for block in theirs.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0  # DiT's frequencies: then equal at every timestep
    assert max(gap(t) for t in (1, 250, 999)) < 1e-5
    back, spec = load_run(folder)
    assert spec is None and same_weights(back, ema) and back.precond == "ddpm"
    (folder / "maskdit.json").unlink()  # a folder diffusers wrote: the spec comes from config.json
    assert same_weights(load_run(folder)[0], ema)


def test_diffusers_export_refuses_a_maskdit_decoder(tmp_path, capsys):
    run, _ = make_run(tmp_path, MASKDIT)
    assert export_main([str(run), "--format", "diffusers", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "cannot express this model: a MaskDiT decoder (1 blocks" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_auto_format_reads_a_sit_training_checkpoint_by_its_args(tmp_path):
    """SiT's train.py saves {"model", "ema", "opt", "args"} with args.path_type: read as SiT, not as a DDPM DiT
    (which a bare SiT state dict, with DiT's keys, is unless told --format reference-sit)."""
    import argparse

    from tests.interop.reference_layout import random_state, sit_shapes

    state = random_state(sit_shapes(depth=2, hidden=32, patch=2, channels=4, classes=10, input_size=8))
    args = argparse.Namespace(model="SiT-B/2", path_type="Linear", prediction="velocity")
    torch.save({"model": state, "ema": state, "args": args}, tmp_path / "0001000.pt")
    loaded = open_run(tmp_path / "0001000.pt", architecture={"num_heads": 4})
    assert loaded.denoiser.precond == "flow" and loaded.denoiser.convention == "sit"
    torch.save(state, tmp_path / "bare.pt")
    assert open_run(tmp_path / "bare.pt", architecture={"num_heads": 4}).denoiser.precond == "ddpm"
    torch.save({"ema": state, "args": argparse.Namespace(path_type="GVP")}, tmp_path / "gvp.pt")
    with pytest.raises(CheckpointError, match="args.path_type is 'GVP'"):  # SiT's refusal, not a DiT read
        open_run(tmp_path / "gvp.pt", architecture={"num_heads": 4})


def test_a_repa_time_model_is_not_exported_where_it_would_be_read_in_sits_time(tmp_path, capsys):
    run, _ = make_run(tmp_path, {**SIT, "learn_sigma": False, "process": {"name": "flow", "convention": "repa"}})
    out = tmp_path / "repa.pt"
    assert export_main([str(run), "--format", "reference-sit", "--out", str(out)]) == 2
    assert "REPA's time" in capsys.readouterr().err and not out.exists()
