"""Sampling across ranks: the same images for the same seeds whatever the number of ranks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from maskdit.core import ModelSpec, build_denoiser
from maskdit.eval.generation import generate_batches, rank_batch_starts
from maskdit.interop import save_native
from maskdit.app.commands.sample import main as sample_main
from maskdit.samplers import build_sampler
from maskdit.samplers.specs import HeunSamplerSpec

TINY = dict(input_size=8, in_channels=1, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
            decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)


@pytest.fixture(scope="module")
def denoiser():
    model = build_denoiser(ModelSpec(**TINY), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero final layers, so samples depend on the weights and labels
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model.eval()


def test_rank_batches_partition_the_samples():
    for n, batch, world in [(5, 2, 2), (50, 7, 3), (3, 4, 4)]:
        covered = sorted(i for rank in range(world)
                         for start in rank_batch_starts(n, batch, rank=rank, world_size=world)
                         for i in range(start, min(start + batch, n)))
        assert covered == list(range(n))
    assert rank_batch_starts(10, 2, rank=1, world_size=2) == [2, 6]
    with pytest.raises(ValueError, match="rank must be in"):
        rank_batch_starts(10, 2, rank=2, world_size=2)


def test_generate_batches_of_all_ranks_are_the_single_process_images(denoiser):
    sampler = build_sampler(HeunSamplerSpec(steps=2, s_churn=5.0), null_label=3)  # stochastic: noise draws matter too
    args = dict(num_samples=7, batch_size=2, shape=(1, 8, 8), num_classes=3, seed=4)
    whole = torch.cat([b[0] for b in generate_batches(denoiser, sampler, **args)])
    by_start = {}
    for rank in range(3):
        starts = rank_batch_starts(7, 2, rank=rank, world_size=3)
        batches = generate_batches(denoiser, sampler, rank=rank, world_size=3, **args)
        for start, (images, labels) in zip(starts, batches):
            by_start[start] = images
            assert labels.tolist() == [i % 3 for i in range(start, start + len(images))]
    assert torch.equal(torch.cat([by_start[s] for s in sorted(by_start)]), whole)


@pytest.mark.slow
def test_torchrun_two_ranks_write_the_one_rank_npz(tmp_path, denoiser, capsys):
    native = save_native(denoiser, tmp_path / "tiny")
    common = [str(native), "--num-samples", "5", "--batch-size", "2", "--steps", "2", "--set", "sampler.s_churn=5",
              "--cfg", "1.5", "--seed", "3", "--no-progress"]
    assert sample_main(common + ["--out", str(tmp_path / "one.png"), "--npz", str(tmp_path / "one.npz")]) == 0
    capsys.readouterr()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "maskdit.sample", *common, "--out", str(tmp_path / "two.png"), "--npz", str(tmp_path / "two.npz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote") == 2 and "on 2 ranks" in done.stdout  # rank 0 alone prints: grid and npz
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert two["arr_0"].shape == (5, 8, 8, 1)  # 3 batches: rank 0 drew two, rank 1 one
    assert np.array_equal(one["arr_0"], two["arr_0"])
    assert np.array_equal(one["arr_1"], two["arr_1"])
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "one.png").read_bytes()


def test_latent_model_writes_raw_samples_for_decode(tmp_path, capsys):
    """A 4-channel (latent) model: --latents writes float samples that latents decode reads."""
    from maskdit.data.latent_files import load_latent_samples

    model = build_denoiser(ModelSpec(**{**TINY, "in_channels": 4}), generator=torch.Generator().manual_seed(0))
    native = save_native(model, tmp_path / "latent")
    args = [str(native), "--num-samples", "3", "--steps", "2", "--no-progress"]
    assert sample_main(args + ["--npz", str(tmp_path / "x.npz")]) == 2
    assert "--latents" in capsys.readouterr().err
    assert sample_main(args + ["--latents", str(tmp_path / "z.npz")]) == 0
    z, labels = load_latent_samples(tmp_path / "z.npz", channels=4)
    assert z.shape == (3, 4, 8, 8) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert labels.tolist() == [0, 1, 2]
