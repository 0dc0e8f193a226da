"""``python -m maskdit.sample``: loads native and reference checkpoints, writes a PNG grid and an
ADM-style npz, seeds per image, and reports bad input with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

core = pytest.importorskip("maskdit.core")
interop = pytest.importorskip("maskdit.interop")

from maskdit.app.commands.sample import main  # noqa: E402

TINY = dict(input_size=8, in_channels=1, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
            decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)


@pytest.fixture(scope="module")
def denoiser():
    model = core.build_denoiser(core.ModelSpec(**TINY), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero final layers, so samples depend on the weights and labels
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def native(tmp_path_factory, denoiser):
    return interop.save_native(denoiser, tmp_path_factory.mktemp("ckpt") / "tiny")


def _run(args, capsys):
    code = main([str(a) for a in args] + ["--no-progress"])
    return code, capsys.readouterr()


def test_native_checkpoint_grid_and_npz(tmp_path, native, capsys):
    out, npz = tmp_path / "grid.png", tmp_path / "s.npz"
    code, io = _run([native, "--n", 5, "--steps", 3, "--cfg", 1.5, "--seed", 3, "--out", out, "--npz", npz], capsys)
    assert code == 0, io.err
    data = np.load(npz)
    assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (5, 8, 8, 1)
    assert data["arr_1"].tolist() == [0, 1, 2, 0, 1]
    assert Image.open(out).size == (3 * 10 + 2, 2 * 10 + 2)  # 3 x 2 grid of 8-pixel images, 2-pixel gaps


def test_same_seed_same_images_at_any_batch_size(tmp_path, native, capsys):
    runs = []
    for batch in (1, 4):
        npz = tmp_path / f"b{batch}.npz"
        code, io = _run([native, "--n", 4, "--batch-size", batch, "--sampler", "heun", "--steps", 3, "--set",
                         "sampler.s_churn=5", "--out", tmp_path / "g.png", "--npz", npz], capsys)
        assert code == 0, io.err
        runs.append(np.load(npz)["arr_0"])
    assert np.array_equal(runs[0], runs[1])
    code, _ = _run([native, "--n", 4, "--steps", 3, "--seed", 9, "--out", tmp_path / "g.png", "--npz",
                    tmp_path / "other.npz"], capsys)
    assert code == 0 and not np.array_equal(np.load(tmp_path / "other.npz")["arr_0"], runs[0])


@pytest.mark.parametrize("arch", [["--arch", "num_heads=2", "--arch", "decoder_num_heads=2"],
                                  ["--set", "model.num_heads=2", "--arch", "decoder_num_heads=2"]])
def test_reference_maskdit_file_is_detected(tmp_path, denoiser, capsys, arch):
    path = tmp_path / "ref.pt"
    state = interop.export_reference_maskdit(denoiser)
    torch.save({"model": state, "ema": state}, path)
    code, io = _run([path, *arch, "--n", 2, "--steps", 2,
                     "--sampler", "dpmpp_2m", "--class-label", 1, "--out", tmp_path / "g.png", "--npz",
                     tmp_path / "r.npz"], capsys)
    assert code == 0, io.err
    assert np.load(tmp_path / "r.npz")["arr_1"].tolist() == [1, 1]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--set", "sampler.eta=2"], "sampler"),
        (["--set", "sampler.bogus=1"], "bogus"),
        (["--set", "eta=0.5"], "give the full spec path, as evaluate does, e.g. --set sampler.eta=0.5"),
        (["--steps", "0"], "steps"),
        (["--class-label", "7"], "class-label"),
        (["--format", "reference-dit"], ""),
        (["--set", "model.num_heads=2"], "apply to reference checkpoints only"),
        (["--arch", "num_heads"], "--set: override 'model.num_heads' must look like section.field=value"),
    ],
)
def test_bad_input_exits_2(tmp_path, native, capsys, extra, match):
    code, io = _run([native, "--n", 1, "--out", tmp_path / "g.png", *extra], capsys)
    assert code == 2 and io.err.startswith("error:") and match in io.err


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    code, io = _run([tmp_path / "nothing.safetensors"], capsys)
    assert code == 2 and "no such file" in io.err


def test_a_seed_beyond_32_bits_is_refused_not_folded(tmp_path, native, capsys):
    # torch keeps a seed's low 32 bits: --seed 2**32 used to draw exactly --seed 0's images
    with pytest.raises(SystemExit) as exit_info:
        main([str(native), "--seed", str(2**32), "--out", str(tmp_path / "g.png")])
    assert exit_info.value.code == 2
    assert "--seed must be in 0..4294967295" in capsys.readouterr().err
    code, io = _run([native, "--n", 1, "--steps", 2, "--seed", 2**32 - 1, "--out", tmp_path / "g.png"], capsys)
    assert code == 0, io.err
