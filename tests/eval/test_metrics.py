"""The metric accumulator, image checks, precision / recall, and the evaluator built from a spec."""

import warnings
from typing import Literal

import numpy as np
import pytest
import torch

from maskdit.config.registry import registry
from maskdit.config.spec_model import SpecModel
from maskdit.data.specs import MNIST5kSpec
from maskdit.eval import (
    ImageRangeWarning,
    MetricAccumulator,
    Reference,
    build_evaluator,
    evaluate_samples,
    knn_radii,
    precision_recall,
    prepare_images,
    save_stats,
)
from maskdit.eval.specs import EvalSpec
from maskdit.eval.stats import FeatureStats


def _flat(x):
    return x.flatten(1)  # [N, C, H, W] -> [N, C*H*W]: a trivial feature extractor


def test_prepare_images_range_errors_and_warnings():
    with pytest.raises(ValueError, match=r"look like 0..255 pixels"):
        prepare_images(torch.full((2, 1, 4, 4), 200.0))
    with pytest.raises(ValueError, match="must be in \\[-1, 1\\]"):
        prepare_images(torch.full((2, 1, 4, 4), -3.0))
    with pytest.raises(ValueError, match="uint8"):
        prepare_images(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        prepare_images(torch.zeros(1, 4, 4))
    nan = torch.zeros(3, 1, 4, 4)
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 of 3 images contain NaN"):
        prepare_images(nan)
    with pytest.warns(ImageRangeWarning, match="\\[0, 1\\]"):
        prepare_images(torch.rand(2, 1, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = prepare_images(torch.tensor([-1.2, -0.5, 0.3, 1.1]).view(1, 1, 2, 2))
    assert out.min() == -1 and out.max() == 1
    assert torch.allclose((out + 1) * 127.5, ((out + 1) * 127.5).round(), atol=1e-4)  # 8-bit levels


def test_precision_recall_of_identical_and_disjoint_sets():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(300, 5, generator=generator)
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far, k=3) == (0.0, 0.0)
    # a generator that covers half of the real modes: full precision, about half the recall
    modes = torch.cat([torch.randn(200, 2, generator=generator) * 0.1, torch.randn(200, 2, generator=generator) * 0.1 + 10])
    collapsed = torch.randn(200, 2, generator=generator) * 0.1
    precision, recall = precision_recall(modes, collapsed, k=3)
    assert precision > 0.9 and 0.4 < recall < 0.6


def test_knn_radii_matches_brute_force():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    distances = torch.cdist(x, x)
    expected = distances.sort(dim=1).values[:, 3]
    torch.testing.assert_close(knn_radii(x, 3, chunk=7), expected)
    with pytest.raises(ValueError, match="k \\+ 1"):
        knn_radii(x[:3], 3)


def test_accumulator_validates_its_inputs():
    reference = Reference.from_features(torch.randn(50, 16))
    with pytest.raises(ValueError, match="unknown metrics"):
        MetricAccumulator(metrics=("fid", "is"))
    with pytest.raises(ValueError, match="need a reference and a feature extractor"):
        MetricAccumulator(metrics=("fid",), extractor=_flat)
    with pytest.raises(ValueError, match="class_accuracy needs a classifier"):
        MetricAccumulator(metrics=("class_accuracy",))
    npz_only = Reference(reference.stats)
    with pytest.raises(ValueError, match="holds only mu/sigma"):
        MetricAccumulator(metrics=("precision_recall",), reference=npz_only, extractor=_flat)
    accumulator = MetricAccumulator(metrics=("fid",), reference=reference, extractor=_flat)
    with pytest.raises(ValueError, match="no images"):
        accumulator.result()
    with pytest.raises(ValueError, match="64-d but reference is 16-d"):
        accumulator.update(torch.full((4, 1, 8, 8), -0.5))


def test_fid_with_a_trivial_extractor_matches_direct_statistics():
    generator = torch.Generator().manual_seed(2)
    real = torch.rand(400, 1, 3, 3, generator=generator) * 2 - 1
    fake = torch.rand(300, 1, 3, 3, generator=generator) * 1.5 - 0.8
    reference = Reference.from_images(_flat, real)
    got = evaluate_samples(fake, reference=reference, extractor=_flat, metrics=("fid",), quantize=False)
    from maskdit.eval import frechet_distance

    expected = frechet_distance(FeatureStats.from_features(fake.flatten(1).double()), reference.stats)
    assert got["fid"] == pytest.approx(expected, rel=1e-5) and got["num_samples"] == 300


def test_eval_spec_validation():
    assert EvalSpec().metrics == ("fid", "class_accuracy") and EvalSpec().num_samples == 1000
    with pytest.raises(Exception, match="precision_recall needs reference features"):
        EvalSpec(reference="stats.npz", metrics=("fid", "precision_recall"))
    with pytest.raises(Exception, match="reference must be"):
        EvalSpec(reference="stats.txt")
    with pytest.raises(Exception, match="listed twice"):
        EvalSpec(metrics=("fid", "fid"))
    with pytest.raises(Exception):
        EvalSpec(bogus=1)


def test_build_evaluator_from_specs_with_split_and_npz_references(tmp_path):
    spec = EvalSpec(metrics=("fid", "class_accuracy", "precision_recall"))
    evaluator = build_evaluator(spec, MNIST5kSpec())
    assert evaluator.reference.name == "mnist5k/heldout" and evaluator.reference.features.shape == (1000, 128)
    generator = torch.Generator().manual_seed(3)
    result = evaluator(torch.rand(200, 1, 32, 32, generator=generator) * 2 - 1, torch.arange(200) % 10)
    assert set(result) == {"num_samples", "fid", "class_accuracy", "precision", "recall"}
    assert result["fid"] > 100
    path = save_stats(tmp_path / "heldout.npz", evaluator.reference.stats)
    from_npz = build_evaluator(EvalSpec(reference=str(path)), MNIST5kSpec())
    np.testing.assert_array_equal(from_npz.reference.stats.mu, evaluator.reference.stats.mu)
    with pytest.raises(ValueError, match="a data spec is needed"):
        build_evaluator(EvalSpec())


class PooledPixelsSpec(SpecModel):
    """A feature-extractor plugin from outside the package: 4x4 average-pooled pixels."""

    name: Literal["pooled_test"] = "pooled_test"

    def build(self, *, device="cpu", data=None, **context):
        seen.append((torch.device(device), data))
        return lambda images: torch.nn.functional.avg_pool2d(images, 8).flatten(1)  # [N, 1, 32, 32] -> [N, 16]


seen = []


def test_a_feature_extractor_plugin_is_named_by_eval_features():
    registry("features").add(PooledPixelsSpec)
    try:
        spec = EvalSpec.model_validate({"features": "pooled_test", "metrics": ["fid"]})
        evaluator = build_evaluator(spec, MNIST5kSpec())
        assert seen == [(torch.device("cpu"), MNIST5kSpec())] and evaluator.classifier is None
        assert evaluator.reference.features.shape == (1000, 16)
        images = torch.rand(50, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        assert evaluator(images)["fid"] > 0
    finally:
        registry("features").remove("pooled_test")
    with pytest.raises(Exception, match="'digits' or 'inception'"):
        EvalSpec.model_validate({"features": "pooled_test"})

