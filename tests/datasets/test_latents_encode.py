"""python -m maskdit.latents encode: shapes, manifest, checksums, exactness, resume, ranks, refusals."""

import json
import os
import shutil
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from maskdit.data.encode import encode_shards, plan_encoding, shard_ranges, shards_for_rank, write_manifest
from maskdit.data.imagefolder import prepare_image
from maskdit.data.shards import ShardError, read_manifest
from maskdit.io.files import file_sha256
from maskdit.data.vae import DEFAULT_SCALE, encode_posterior, load_vae, scaling_factor
from maskdit.app.commands.latents import main

ENCODE = ["--resolution", "16", "--shard-size", "4", "--flip", "--skip-corrupt", "--batch-size", "3"]


def encode_args(vae, data, out, *extra):
    return ["encode", "--vae", str(vae), "--data", str(data), "--out", str(out), *ENCODE, *extra]


def test_manifest_records_vae_scale_shapes_counts_and_checksums(encoded_dir, tiny_vae_dir, image_dir):
    manifest = json.loads((encoded_dir / "manifest.json").read_text())
    assert manifest["format"] == "maskdit-latents" and manifest["scale"] == DEFAULT_SCALE == 0.18215
    assert manifest["vae"]["path"] == str(tiny_vae_dir.resolve()) and len(manifest["vae"]["config_sha256"]) == 64
    assert manifest["latent_shape"] == [4, 8, 8] and manifest["classes"] == ["cat", "dog"]
    assert manifest["source"] == {**manifest["source"], "resolution": 16, "num_images": 11}
    assert manifest["count"] == 10 and manifest["flip"] is True and manifest["dtype"] == "float32"
    assert [(s["start"], s["stop"], s["count"]) for s in manifest["shards"]] == [(0, 4, 4), (4, 8, 4), (8, 11, 2)]
    for shard in manifest["shards"]:
        path = encoded_dir / shard["file"]
        assert shard["sha256"] == file_sha256(path) and shard["bytes"] == path.stat().st_size
    skipped = read_manifest(encoded_dir).skipped
    assert len(skipped) == 1 and skipped[0][0].endswith("dog/zz_garbage.png") and "cannot identify" in skipped[0][1]


def test_shards_hold_the_vae_posterior_of_each_centre_crop(encoded_dir, tiny_vae_dir, image_dir):
    vae = load_vae(tiny_vae_dir)
    plan = plan_encoding(vae, image_dir, vae_path=str(tiny_vae_dir), resolution=16, flip=True, shard_size=4)
    shard = load_file(encoded_dir / "shard-00001.safetensors")
    assert set(shard) == {"mean", "logvar", "mean_flip", "logvar_flip", "label", "index"}
    assert shard["mean"].shape == shard["logvar_flip"].shape == (4, 4, 8, 8)
    assert shard["index"].tolist() == [4, 5, 6, 7] and shard["label"].tolist() == [0, 1, 1, 1]
    images = torch.stack([prepare_image(plan.samples[i][0], 16) for i in range(4, 8)])  # [4, 3, 16, 16]
    mean, logvar = encode_posterior(vae, images)
    mean_flip, _ = encode_posterior(vae, images.flip(-1))
    torch.testing.assert_close(shard["mean"], mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shard["logvar"], logvar, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shard["mean_flip"], mean_flip, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(shard["mean"], shard["mean_flip"])


def test_corrupt_image_without_skip_fails_naming_it(tmp_path, tiny_vae_dir, image_dir, capsys):
    args = [a for a in encode_args(tiny_vae_dir, image_dir, tmp_path / "out") if a != "--skip-corrupt"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read image ") and "dog/zz_garbage.png" in err
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert (tmp_path / "out" / "shard-00000.safetensors").exists()  # the finished shards stay for a rerun


class Interrupted(Exception):
    pass


def test_resume_keeps_verified_shards_and_redoes_the_rest(tmp_path, tiny_vae_dir, image_dir, encoded_dir, capsys):
    vae = load_vae(tiny_vae_dir)
    plan = plan_encoding(vae, image_dir, vae_path=str(tiny_vae_dir), resolution=16, flip=True, shard_size=4)
    out = tmp_path / "out"

    def stop_after_first(record, reused):
        raise Interrupted

    with pytest.raises(Interrupted):
        encode_shards(vae, plan, out, batch_size=3, skip_corrupt=True, on_shard=stop_after_first)
    shutil.copy(encoded_dir / "shard-00001.safetensors", out)  # written, but its record never was (crash)
    shutil.copy(encoded_dir / "shard-00002.safetensors", out)
    shutil.copy(encoded_dir / "shard-00002.json", out)
    with open(out / "shard-00002.safetensors", "r+b") as handle:  # finished, then damaged
        handle.seek(-5, os.SEEK_END)
        handle.write(b"xxxxx")
    kept = (out / "shard-00000.safetensors").stat().st_mtime_ns
    calls = []
    import maskdit.data.encode as encode_module

    original = encode_module.encode_shard
    try:
        encode_module.encode_shard = lambda *a, **k: calls.append(a[3]) or original(*a, **k)
        assert main(encode_args(tiny_vae_dir, image_dir, out)) == 0
    finally:
        encode_module.encode_shard = original
    printed = capsys.readouterr().out
    assert "shard-00000.safetensors: 4 latents - kept (verified)" in printed
    assert calls == [1, 2]
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == kept
    fresh, reference = read_manifest(out), read_manifest(encoded_dir)
    assert [s.sha256 for s in fresh.shards] == [s.sha256 for s in reference.shards]  # encoding is deterministic
    assert main(encode_args(tiny_vae_dir, image_dir, out)) == 0  # a finished folder is only re-verified
    assert capsys.readouterr().out.count("kept (verified)") == 3


def test_other_settings_in_the_same_folder_are_refused(tmp_path, tiny_vae_dir, image_dir, encoded_dir, capsys):
    out = tmp_path / "out"
    shutil.copytree(encoded_dir, out)
    args = [a if a != "4" else "5" for a in encode_args(tiny_vae_dir, image_dir, out)]  # --shard-size 5
    assert main(args) == 1
    assert "other settings" in capsys.readouterr().err


@given(num_shards=st.integers(0, 50), world=st.integers(1, 9))
def test_rank_assignment_partitions_the_shards(num_shards, world):
    parts = [shards_for_rank(num_shards, rank, world) for rank in range(world)]
    assert sorted(k for part in parts for k in part) == list(range(num_shards))
    assert all(k % world == rank for rank, part in enumerate(parts) for k in part)


def test_rank_assignment_and_ranges_reject_bad_input():
    with pytest.raises(ValueError, match="rank"):
        shards_for_rank(4, 2, 2)
    with pytest.raises(ValueError, match="rank"):
        shards_for_rank(4, 0, 0)
    with pytest.raises(ValueError, match="shard_size"):
        shard_ranges(10, 0)
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)] and shard_ranges(0, 4) == []


def test_two_ranks_write_the_same_shards_as_one(tmp_path, tiny_vae_dir, image_dir, encoded_dir):
    vae = load_vae(tiny_vae_dir)
    plan = plan_encoding(vae, image_dir, vae_path=str(tiny_vae_dir), resolution=16, flip=True, shard_size=4)
    out = tmp_path / "out"
    done = encode_shards(vae, plan, out, rank=1, world_size=2, batch_size=4, skip_corrupt=True)
    assert [r.file for r in done] == ["shard-00001.safetensors"]
    with pytest.raises(ShardError, match="shard-00000.safetensors is not finished"):
        write_manifest(plan, out)
    encode_shards(vae, plan, out, rank=0, world_size=2, batch_size=4, skip_corrupt=True)
    manifest = write_manifest(plan, out)
    assert [s.sha256 for s in manifest.shards] == [s.sha256 for s in read_manifest(encoded_dir).shards]


def test_scale_factor_comes_from_the_vae_config(tmp_path, tiny_vae_dir):
    vae = load_vae(tiny_vae_dir)
    assert scaling_factor(vae) == 0.18215
    vae.register_to_config(scaling_factor=0.13025)
    assert scaling_factor(vae) == 0.13025


def test_missing_diffusers_gives_install_hint(tmp_path, tiny_vae_dir, image_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match="pip install diffusers"):
        load_vae(tiny_vae_dir)
    assert main(encode_args(tiny_vae_dir, image_dir, tmp_path / "out")) == 2
    assert "pip install diffusers" in capsys.readouterr().err


def test_bad_paths_and_arguments(tmp_path, tiny_vae_dir, image_dir, capsys):
    assert main(encode_args(tmp_path / "no-vae", image_dir, tmp_path / "out")) == 2
    assert "not a local diffusers VAE folder" in capsys.readouterr().err
    assert main(encode_args(tiny_vae_dir, tmp_path / "no-data", tmp_path / "out")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(encode_args(tiny_vae_dir, image_dir, tmp_path / "out", "--resolution", "15")) == 2
    assert "not divisible by the VAE's downsampling factor 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(encode_args(tiny_vae_dir, image_dir, tmp_path / "out", "--batch-size", "0"))
