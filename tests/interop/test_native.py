"""Native format: safetensors + JSON sidecar rebuilds the same denoiser, bit for bit."""

import json

import pytest
import torch

from maskdit.core import DDPMDenoiser, Denoiser, ModelSpec, build_denoiser
from maskdit.interop import CheckpointError, load_native, read_native_spec, save_native


@pytest.mark.parametrize("precond", ["edm", "ddpm"])
def test_native_round_trip(tmp_path, precond):
    spec = ModelSpec(input_size=8, in_channels=2, patch_size=2, depth=1, hidden_size=16, num_heads=2,
                     decoder_depth=1, decoder_hidden_size=8, decoder_num_heads=2, num_classes=3, precond=precond,
                     sigma_data=0.7)
    denoiser = build_denoiser(spec, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = save_native(denoiser, tmp_path / "model")
    assert path.name == "model.safetensors" and (tmp_path / "model.json").is_file()
    assert read_native_spec(path) == spec
    back = load_native(path)
    assert isinstance(back, Denoiser if precond == "edm" else DDPMDenoiser)
    assert all(torch.equal(a, b) for a, b in zip(denoiser.state_dict().values(), back.state_dict().values()))
    x = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(back(x, torch.tensor([0.3, 3.0])), denoiser(x, torch.tensor([0.3, 3.0])))
    if precond == "edm":
        assert back.sigma_data == 0.7


def test_bad_sidecar(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a maskdit-native sidecar"):
        load_native(tmp_path / "m.safetensors")
