"""python -m maskdit.fid: streamed ADM npz batches, reference statistics or images, FID value and bad inputs.

The value path runs on small pooled-pixel features (a 2048-d matrix square root takes about a
minute on these machines); the FID Inception path runs with random weights on a few images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskdit.app.commands import fid
from maskdit.config.errors import InputError
from maskdit.eval.frechet import frechet_distance
from maskdit.eval.inception import WEIGHTS_NAME, FIDInception
from maskdit.eval.stats import FeatureStats, FewSamplesWarning, save_stats


def pooled(x: torch.Tensor) -> torch.Tensor:
    """images [B, 3, H, W] -> 2x2 average-pooled pixels [B, 12]: a small deterministic extractor."""
    return F.adaptive_avg_pool2d(x, 2).flatten(1)  # [B, 3, 2, 2] -> [B, 12]


def images(n: int, seed: int, size: int = 8, *, darkest: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3] with per-image brightness in [darkest, 200), so features are not isotropic noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(darkest, 200, (n, 1, 1, 1))
    return (base + rng.integers(0, 56, (n, size, size, 3))).astype(np.uint8)


def features_of(pixels: np.ndarray) -> torch.Tensor:
    return pooled(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1)  # NHWC -> NCHW -> [N, 12]


@pytest.fixture
def small_features(monkeypatch):
    monkeypatch.setattr(fid, "load_extractor", lambda weights, device: (pooled, 12, "pooled-pixels"))


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_NAME
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FIDInception()
        for module in model.modules():  # He init: the default one shrinks the features to ~1e-7
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(model.net.state_dict(), path)  # random weights, pytorch-fid's file layout
    return path


@pytest.mark.parametrize("batch_size, compressed", [(3, False), (1000, True)])
def test_value_is_the_frechet_distance_of_the_streamed_features(tmp_path, small_features, capsys, batch_size,
                                                                 compressed):
    samples, ref = images(40, 0), images(50, 1, darkest=100)
    (np.savez_compressed if compressed else np.savez)(tmp_path / "s.npz", arr_0=samples, arr_1=np.arange(40))
    ref_stats = FeatureStats.from_features(features_of(ref))
    save_stats(tmp_path / "ref.npz", ref_stats)
    argv = [str(tmp_path / "s.npz"), str(tmp_path / "ref.npz"), "--batch-size", str(batch_size), "--device", "cpu",
            "--json", str(tmp_path / "out" / "fid.json"), "--no-progress"]
    assert fid.main(argv) == 0
    expected = frechet_distance(FeatureStats.from_features(features_of(samples)), ref_stats)
    assert expected > 0.01
    out = capsys.readouterr().out
    assert f"FID: {expected:.4f}" in out and "40 images" in out
    record = json.loads((tmp_path / "out" / "fid.json").read_text())
    assert record["fid"] == pytest.approx(expected, rel=1e-9)
    assert record["num_samples"] == 40 and record["feature_dim"] == 12 and record["reference_count"] is None


def test_reference_images_give_the_same_value_as_their_statistics(tmp_path, small_features, capsys):
    samples, ref = images(30, 2), images(25, 3, darkest=100)
    np.savez(tmp_path / "s.npz", arr_0=samples)
    np.savez(tmp_path / "ref_images.npz", arr_0=ref)
    save_stats(tmp_path / "ref_stats.npz", FeatureStats.from_features(features_of(ref)))
    results = []
    for name in ("ref_images.npz", "ref_stats.npz"):
        out = tmp_path / f"{name}.json"
        assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / name), "--json", str(out), "--batch-size", "7",
                         "--no-progress"]) == 0
        results.append(json.loads(out.read_text()))
    assert results[0]["fid"] == pytest.approx(results[1]["fid"], rel=1e-9)
    assert results[0]["reference_count"] == 25
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "s.npz"), "--no-progress", "--json",
                     str(tmp_path / "self.json")]) == 0
    assert abs(json.loads((tmp_path / "self.json").read_text())["fid"]) < 1e-8  # a set against itself


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_images_stream_in_order_and_truncation_is_named(tmp_path, save):
    pixels = images(11, 4, size=5)
    save(tmp_path / "x.npz", arr_0=pixels)
    reader = fid.NpzImages(tmp_path / "x.npz")
    assert len(reader) == 11 and reader.shape == (11, 5, 5, 3)
    batches = list(reader.batches(4))
    assert [len(b) for b in batches] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(batches), pixels)
    if save is np.savez:  # a stored member cut short: the header says 11 images, fewer bytes follow
        with np.load(tmp_path / "x.npz") as data:
            np.save(tmp_path / "arr_0.npy", data["arr_0"])
        raw = (tmp_path / "arr_0.npy").read_bytes()
        import zipfile

        with zipfile.ZipFile(tmp_path / "cut.npz", "w") as archive:
            archive.writestr("arr_0.npy", raw[: len(raw) - 5 * 5 * 3 * 2])
        with pytest.raises(InputError, match=r"cut.npz: arr_0: its header declares shape \(11, 5, 5, 3\) of uint8 "
                                             r"\(825 bytes\) but the member holds 675 bytes"):
            fid.NpzImages(tmp_path / "cut.npz")  # refused before a byte of data is read
        (tmp_path / "x.npz").write_bytes((tmp_path / "cut.npz").read_bytes())  # cut after it was opened
        with pytest.raises(ValueError, match=r"ends after 9 of 11 images"):
            list(reader.batches(4))


def test_random_inception_wiring_streams_2048_d_features(tmp_path, random_inception, monkeypatch, capsys):
    pixels = images(3, 5, size=12)
    np.savez(tmp_path / "s.npz", arr_0=pixels)
    monkeypatch.setenv("MASKDIT_INCEPTION_WEIGHTS", str(random_inception))
    extractor, dim, path = fid.load_extractor(None, "cpu")
    assert dim == 2048 and path == random_inception
    with pytest.warns(FewSamplesWarning):  # 3 images, 2048-d: a singular covariance, as announced
        stats = fid.image_statistics(fid.NpzImages(tmp_path / "s.npz"), extractor, batch_size=2)
    with torch.no_grad():
        direct = extractor(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1)  # [3, 2048]
    assert stats.dim == 2048 and stats.count == 3 and float(direct.std(0).max()) > 1e-3
    np.testing.assert_allclose(stats.mu, direct.double().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.diag(stats.sigma), direct.double().var(0).numpy(), rtol=1e-4, atol=1e-9)
    # reference statistics of another network are refused before any image is processed
    save_stats(tmp_path / "ref12.npz", FeatureStats.from_features(features_of(images(20, 6))))
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref12.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "12-d features" in err and "2048-d" in err


BAD_SAMPLES = {
    "missing": (None, "no such file"),
    "no arr_0": ({"images": images(4, 0)}, "no 'arr_0' array"),
    "float": ({"arr_0": images(4, 0).astype(np.float32)}, "must be uint8"),
    "channels first": ({"arr_0": images(4, 0).transpose(0, 3, 1, 2).copy()}, "channels first"),
    "no channel axis": ({"arr_0": images(4, 0)[..., 0]}, "must be [N, H, W, 3]"),
    "one image": ({"arr_0": images(1, 0)}, "at least 2"),
    "not an npz": (b"plain text", "not a readable .npz"),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLES))
def test_bad_sample_files_exit_2_in_one_line(tmp_path, small_features, capsys, case):
    content, fragment = BAD_SAMPLES[case]
    if isinstance(content, dict):
        np.savez(tmp_path / "s.npz", **content)
    elif content is not None:
        (tmp_path / "s.npz").write_bytes(content)
    save_stats(tmp_path / "ref.npz", FeatureStats.from_features(features_of(images(20, 1))))
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err


@pytest.mark.parametrize("arrays, fragment", [
    ({"features": np.zeros((3, 4))}, "expected statistics ('mu' [D] and 'sigma' [D, D]) or images"),
    ({"mu": np.zeros(4), "sigma": np.zeros((3, 3))}, "sigma must be [D, D]"),
    ({"arr_0": np.zeros((4, 3, 8, 8), dtype=np.uint8)}, "channels first"),
])
def test_bad_reference_files_exit_2_in_one_line(tmp_path, small_features, capsys, arrays, fragment):
    np.savez(tmp_path / "s.npz", arr_0=images(4, 0))
    np.savez(tmp_path / "ref.npz", **arrays)
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err


def test_missing_or_wrong_weights_exit_2(tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "s.npz", arr_0=images(4, 0))
    np.savez(tmp_path / "ref.npz", arr_0=images(4, 1))
    monkeypatch.delenv("MASKDIT_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("MASKDIT_CACHE", str(tmp_path / "cache"))
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "never downloads" in err and WEIGHTS_NAME in err
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref.npz"), "--inception-weights",
                     str(tmp_path / "other.pth")]) == 2
    assert "not an FID Inception state dict" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert fid.main([str(tmp_path / "s.npz"), str(tmp_path / "ref.npz"), "--inception-weights",
                     str(tmp_path / "junk.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "junk.pth" in err, err
