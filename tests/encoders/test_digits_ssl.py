"""The digits_ssl encoder: the packaged weights (hash-checked), other files, its input handling,
and the training script (a few seeded steps, labels never read)."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from maskdit.config.errors import CheckpointError
from maskdit.data import MNIST5k
from maskdit.encoders import DigitsSSLEncoder, DigitsViT, build_digits_ssl, build_encoder, load_digits_ssl
from maskdit.encoders import digits_ssl as module
from maskdit.eval.digits import ASSET as CLASSIFIER_ASSET
from maskdit.io.files import file_sha256

ROOT = Path(__file__).parents[2]


def _digits(n: int = 4) -> torch.Tensor:
    return MNIST5k("heldout").images[:n]  # [n, 1, 32, 32] in [-1, 1]


def test_the_packaged_weights_are_the_hashed_small_file_with_their_command():
    assert module.ASSET.is_file() and file_sha256(module.ASSET) == module.ASSET_SHA256
    assert module.ASSET.stat().st_size < 2 * 1024 * 1024
    assert file_sha256(module.ASSET) != file_sha256(CLASSIFIER_ASSET)
    with safe_open(str(module.ASSET), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["arch"] == module.ARCH
    assert metadata["command"].startswith("python scripts/train_digits_ssl.py")
    assert int(metadata["steps"]) > 0 and metadata["seed"].isdigit()


def test_the_packaged_encoder_gives_128_channels_on_the_8_by_8_patch_grid():
    encoder = build_encoder({"name": "digits_ssl"})
    normalised = []
    encoder.network.norm.register_forward_hook(lambda module_, inputs, output: normalised.append(output))
    features = encoder(_digits())
    assert features.shape == (4, 128, 8, 8) and (encoder.width, encoder.grid_size, encoder.in_channels) == (128, 8, 1)
    # the final LayerNorm's output on all 64 patches, raster order: token 8 i + j is position (i, j)
    assert normalised[0].shape == (4, 64, 128)
    torch.testing.assert_close(features[:, :, 2, 5], normalised[0][:, 2 * 8 + 5])
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), normalised[0])
    random = build_encoder({"name": "digits_ssl", "weights": "random"})
    assert not torch.allclose(random(_digits()), features, atol=1e-2)


def test_a_changed_packaged_file_is_refused_naming_it_and_both_hashes(tmp_path, monkeypatch):
    copy = tmp_path / "digits_ssl.safetensors"
    shutil.copyfile(module.ASSET, copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(module, "ASSET", copy)
    with pytest.raises(CheckpointError, match=f"{copy}: SHA-256 {file_sha256(copy)} is not the packaged "
                                              f"{module.ASSET_SHA256}"):
        build_digits_ssl()
    monkeypatch.setattr(module, "ASSET", tmp_path / "gone.safetensors")
    with pytest.raises(CheckpointError, match="packaged encoder weights .*gone.safetensors are missing"):
        build_digits_ssl()


def test_another_file_loads_without_the_hash_check(tmp_path):
    network = DigitsViT(generator=torch.Generator().manual_seed(7))
    path = tmp_path / "mine.safetensors"
    module.save_digits_ssl(network, path, metadata={"seed": "7"})
    encoder = build_encoder({"name": "digits_ssl", "path": str(path)})
    with torch.no_grad():
        expected = network(_digits()).transpose(1, 2).reshape(4, 128, 8, 8)  # [B, 64, D] raster -> [B, D, 8, 8]
    torch.testing.assert_close(encoder(_digits()), expected, rtol=2e-2, atol=2e-2)  # stored as float16
    for key, value in network.state_dict().items():
        torch.testing.assert_close(encoder.network.state_dict()[key], value.half().float())


def test_a_file_of_another_network_is_refused_naming_it(tmp_path):
    classifier = tmp_path / "classifier.safetensors"
    shutil.copyfile(CLASSIFIER_ASSET, classifier)
    with pytest.raises(CheckpointError, match=f"{classifier}: holds architecture 'digits-cnn-v1', expected "
                                              f"'digits-ssl-mae-v1'"):
        load_digits_ssl(classifier)
    state = DigitsViT(generator=torch.Generator().manual_seed(0)).state_dict()
    state.pop("blocks.3.mlp.fc2.bias")
    partial = tmp_path / "partial.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(partial), metadata={"arch": module.ARCH})
    with pytest.raises(CheckpointError, match=f"{partial}: not weights of this encoder: missing key.s. "
                                              "blocks.3.mlp.fc2.bias"):
        load_digits_ssl(partial)


def test_28_pixel_digits_are_padded_like_the_data_and_colour_is_refused():
    encoder = build_digits_ssl(weights="random", seed=1)
    digits = _digits()
    torch.testing.assert_close(encoder(digits[:, :, 2:-2, 2:-2]), encoder(digits))  # the data's margin is background
    assert encoder(F.interpolate(digits, size=(48, 48))).shape == (4, 128, 8, 8)
    with pytest.raises(ValueError, match="the digits_ssl encoder reads images with 1 channel, got 3 channels"):
        encoder(digits.repeat(1, 3, 1, 1))
    assert isinstance(encoder, DigitsSSLEncoder)


def _script():
    spec = importlib.util.spec_from_file_location("train_digits_ssl", ROOT / "scripts" / "train_digits_ssl.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_script_is_seeded_and_never_reads_a_label(tmp_path, monkeypatch):
    script = _script()
    real = MNIST5k.__init__

    def without_labels(self, *args, **kwargs):  # training sees the images only
        real(self, *args, **kwargs)
        del self.labels

    monkeypatch.setattr(MNIST5k, "__init__", without_labels)
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # the suite keeps its own threads
    argv = ["--steps", "2", "--batch-size", "8", "--warmup", "1", "--threads", "1", "--no-probe"]
    for name in ("a", "b"):
        assert script.main([*argv, "--out", str(tmp_path / f"{name}.safetensors")]) == 0
    assert script.main([*argv, "--seed", "1", "--out", str(tmp_path / "c.safetensors")]) == 0
    a, b, c = (load_file(tmp_path / f"{name}.safetensors") for name in "abc")
    assert all(torch.equal(a[key], b[key]) for key in a)  # the same seed: the same weights
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert (metadata["steps"], metadata["seed"]) == ("2", "0")
    assert metadata["command"] == "python scripts/train_digits_ssl.py " + " ".join(
        [*argv, "--out", str(tmp_path / "a.safetensors")])
    trained = load_digits_ssl(tmp_path / "a.safetensors")
    untouched = DigitsViT(generator=torch.Generator().manual_seed(0))
    assert not torch.equal(trained.blocks[0].attn.qkv.weight, untouched.blocks[0].attn.qkv.weight.half().float())


def test_the_mae_loss_covers_only_the_hidden_patches():
    script = _script()
    encoder = DigitsViT(generator=torch.Generator().manual_seed(0))
    decoder = script.MAEDecoder(encoder, generator=torch.Generator().manual_seed(1))
    images = _digits(2)
    hidden_only = []

    def spy(module_, inputs, output):
        hidden_only.append(inputs[0].shape[1])  # how many tokens the encoder's first block sees

    encoder.blocks[0].register_forward_hook(spy)
    loss = script.mae_loss(encoder, decoder, images, torch.Generator().manual_seed(2))
    assert hidden_only == [16] and loss.ndim == 0 and loss.item() > 0  # 25 % of 64 patches seen
    loss.backward()
    assert encoder.patch_embed.proj.weight.grad.abs().sum() > 0
