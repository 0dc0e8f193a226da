import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from maskdit.eval.frechet import SingularCovarianceWarning, frechet_distance
from maskdit.eval.stats import FeatureStats, FewSamplesWarning, RunningStats, load_stats, save_stats


def _random_spd(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 32))
    stats = FeatureStats.from_features(x)
    assert abs(frechet_distance(stats, stats)) < 1e-6


def test_closed_form_diagonal_gaussians():
    # N(m1, diag(a)) vs N(m2, diag(b)): |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.5, 2, size=8), rng.uniform(0.5, 2, size=8)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(FeatureStats(m1, np.diag(a)), FeatureStats(m2, np.diag(b)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_closed_form_commuting_full_covariances():
    # S and c^2 S commute: d^2 = |dm|^2 + (1 - c)^2 tr(S)
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 16)
    mu = rng.normal(size=16)
    got = frechet_distance(FeatureStats(mu, s), FeatureStats(mu + 1.0, 4.0 * s))
    assert got == pytest.approx(16.0 + np.trace(s), rel=1e-8)


def test_agrees_with_direct_float64_computation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24))
    y = rng.normal(size=(300, 24)) @ rng.normal(size=(24, 24)) + 0.5
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # independent route: tr((S1 S2)^1/2) = tr((R S2 R)^1/2) with R = S1^1/2 (symmetric, eigh-based)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    got = frechet_distance(FeatureStats.from_features(x), FeatureStats.from_features(torch.from_numpy(y).float()))
    assert got == pytest.approx(direct, rel=1e-5)


def test_streaming_matches_numpy_and_survives_large_offsets():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 10)) + 1e6  # a raw sum-of-outer-products estimator loses everything here
    running = RunningStats()
    for chunk in np.array_split(x, 13):
        running.update(torch.from_numpy(chunk))
    stats = running.finalize()
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), atol=1e-8)


def test_npz_round_trip_in_pytorch_fid_format(tmp_path):
    stats = FeatureStats.from_features(np.random.default_rng(5).normal(size=(50, 6)))
    path = save_stats(tmp_path / "ref.npz", stats)
    with np.load(path) as data:
        assert set(data.files) == {"mu", "sigma"}
    loaded = load_stats(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)


def test_adm_reference_batch_layout_loads(tmp_path):
    # ADM reference batches also hold images ('arr_0') and spatial statistics; only mu/sigma are read.
    path = tmp_path / "VIRTUAL_tiny_labeled.npz"
    np.savez(path, arr_0=np.zeros((2, 8, 8, 3), np.uint8), mu=np.zeros(4), sigma=np.eye(4),
             mu_s=np.zeros(3), sigma_s=np.eye(3))
    assert load_stats(path).dim == 4


def test_stats_file_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, mean=np.zeros(3), cov=np.eye(3))
    with pytest.raises(ValueError, match="lacks 'mu' and 'sigma'.*holds \\['cov', 'mean'\\]"):
        load_stats(path)
    with pytest.raises(FileNotFoundError):
        load_stats(tmp_path / "absent.npz")


def test_stats_file_mismatched_dims(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(ValueError, match=r"bad.npz: sigma must be \[D, D\]"):
        load_stats(path)
    a = FeatureStats(np.zeros(3), np.eye(3))
    b = FeatureStats(np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="feature dimensions differ: 3 vs 4"):
        frechet_distance(a, b)


def test_nan_features_raise():
    x = np.random.default_rng(6).normal(size=(20, 4))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="1 of 20 feature rows contain NaN"):
        RunningStats().update(x)
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats(np.array([np.nan, 0.0]), np.eye(2))


def test_fewer_samples_than_dims_warns_and_offset_is_announced():
    x = np.random.default_rng(7).normal(size=(10, 64))
    with pytest.warns(FewSamplesWarning, match="only 10 samples"):
        stats = FeatureStats.from_features(x)
    # a rank-deficient product whose sqrtm fails outright triggers the announced diagonal offset
    singular = FeatureStats(np.zeros(3), np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]))
    nilpotent = FeatureStats(np.zeros(3), np.array([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
    with pytest.warns(SingularCovarianceWarning, match="adding 1e-06"):
        d = frechet_distance(singular, nilpotent)
    assert d == pytest.approx(2.0, abs=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCovarianceWarning)
        frechet_distance(stats, FeatureStats.from_features(np.random.default_rng(8).normal(size=(200, 64))))


def test_dimension_change_and_tiny_sets_raise():
    running = RunningStats().update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="changed from 4 to 5"):
        running.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        RunningStats().update(np.zeros((1, 4))).finalize()
    with pytest.raises(ValueError, match="matrix"):
        RunningStats().update(np.zeros(4))


def test_large_imaginary_part_raises(monkeypatch):
    stats = FeatureStats(np.zeros(2), np.eye(2))
    negative = FeatureStats(np.zeros(2), -np.eye(2))  # not a covariance: sqrtm(-I) = iI
    with pytest.raises(ValueError, match="imaginary component of 1"):
        frechet_distance(stats, negative)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: np.eye(2) * (1 + 1e-9j))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-12)
