"""python -m maskdit.latents decode: latent samples (.npz / .pt / .safetensors) to ADM npz + PNG grid."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from maskdit.data.latent_files import load_latent_samples
from maskdit.data.vae import decode_latents, load_vae
from maskdit.app.commands.latents import main


@pytest.fixture(scope="module")
def latents():
    return torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.2  # [N, C, h, w]


def test_decode_npz_writes_adm_batch_and_grid(tmp_path, tiny_vae_dir, latents, capsys):
    labels = np.array([3, 1, 4, 1, 5, 9])
    np.savez(tmp_path / "samples.npz", latents=latents.numpy(), labels=labels)
    assert main(["decode", "--vae", str(tiny_vae_dir), str(tmp_path / "samples.npz"), "--out", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(tmp_path / "out" / "samples.npz") as batch:
        images, written_labels = batch["arr_0"], batch["arr_1"]
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    assert written_labels.tolist() == labels.tolist()
    vae = load_vae(tiny_vae_dir)
    with torch.no_grad():
        expected = vae.decode(latents / 0.18215).sample.clamp(-1, 1)  # [6, 3, 16, 16]
    expected = ((expected + 1) * 127.5).round().clamp(0, 255).permute(0, 2, 3, 1).numpy()  # -> [6, 16, 16, 3]
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1
    grid = Image.open(tmp_path / "out" / "grid.png")
    assert grid.size == (3 * 18 + 2, 2 * 18 + 2)  # 3 columns x 2 rows of 16 px, 2 px gaps


def test_decode_pt_and_channels_last_and_explicit_scale(tmp_path, tiny_vae_dir, latents):
    torch.save(latents.permute(0, 2, 3, 1).contiguous(), tmp_path / "z.pt")  # [N, h, w, C], a bare tensor
    args = ["decode", "--vae", str(tiny_vae_dir), str(tmp_path / "z.pt"), "--out", str(tmp_path / "out"),
            "--grid", "0", "--scale", "1.0", "--batch-size", "4"]
    assert main(args) == 0
    assert not (tmp_path / "out" / "grid.png").exists()
    with np.load(tmp_path / "out" / "samples.npz") as batch:
        assert set(batch.files) == {"arr_0"}
        images = batch["arr_0"]
    expected = decode_latents(load_vae(tiny_vae_dir), latents, scale=1.0)
    expected = ((expected + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()  # [N, 3, H, W] -> [N, H, W, 3]
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1


def test_load_safetensors_samples(tmp_path, latents):
    save_file({"samples": latents, "labels": torch.arange(6)}, tmp_path / "s.safetensors")
    z, labels = load_latent_samples(tmp_path / "s.safetensors", channels=4)
    assert torch.equal(z, latents) and labels.tolist() == list(range(6))


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"arr_0": np.zeros((2, 8, 8, 3), dtype=np.uint8)}, "uint8 arrays are images"),
        ({"latents": np.zeros((2, 3, 8, 8), dtype=np.float32)}, "the VAE takes 4-channel latents"),
        ({"latents": np.zeros((2, 4, 8), dtype=np.float32)}, "must be [N, C, h, w]"),
        ({"pictures": np.zeros((2, 4, 8, 8), dtype=np.float32)}, "expected latents under one of"),
        ({"latents": np.zeros((2, 4, 8, 8), dtype=np.float32), "labels": np.zeros(3)}, "3 labels for 2 latents"),
    ],
)
def test_bad_sample_files_exit_2_with_a_reason(tmp_path, tiny_vae_dir, arrays, fragment, capsys):
    np.savez(tmp_path / "bad.npz", **arrays)
    assert main(["decode", "--vae", str(tiny_vae_dir), str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err


def test_decode_after_encode_round_trip(tmp_path, tiny_vae_dir, encoded_dir):
    """Training-time latents of the encoded folder decode back to 16 px RGB images."""
    from maskdit.data.latent_dataset import LatentDataset

    z, labels = LatentDataset(encoded_dir).draw(torch.arange(10), generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "z.npz", latents=z.numpy(), labels=labels.numpy())
    assert main(["decode", "--vae", str(tiny_vae_dir), str(tmp_path / "z.npz"), "--out", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out" / "samples.npz") as batch:
        assert batch["arr_0"].shape == (10, 16, 16, 3) and batch["arr_1"].tolist() == labels.tolist()
