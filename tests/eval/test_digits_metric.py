"""The shipped digits classifier and the digits FID / precision-recall / class accuracy on real data."""

import pytest
import torch
import torch.nn.functional as F

from maskdit.data import MNIST5k
from maskdit.eval import Reference, evaluate_samples, extract_features, load_digits_classifier
from maskdit.eval.digits import ASSET, DigitsClassifier, digits_weights_path, save_digits_classifier


@pytest.fixture(scope="module")
def classifier():
    return load_digits_classifier()


@pytest.fixture(scope="module")
def heldout():
    return MNIST5k("heldout")


@pytest.fixture(scope="module")
def train():
    return MNIST5k("train")


@pytest.fixture(scope="module")
def reference(classifier, heldout):
    return Reference.from_images(classifier.features, heldout.images, name="heldout")


def test_shipped_weights_are_small():
    assert ASSET.is_file() and ASSET.stat().st_size < 1_000_000


def test_heldout_accuracy_is_at_least_97_percent(classifier, heldout):
    with torch.no_grad():
        predictions = classifier(heldout.images).argmax(dim=1)
    assert (predictions == heldout.labels).float().mean() >= 0.97


def test_accepts_28_pixel_digits_and_rejects_other_shapes(classifier):
    d28, d32 = MNIST5k("heldout", resolution=28), None
    with torch.no_grad():
        logits28 = classifier(d28.images[:50])
        logits32 = classifier(F.pad(d28.images[:50], (2, 2, 2, 2), value=-1.0))
    torch.testing.assert_close(logits28, logits32)
    with pytest.raises(ValueError, match=r"\[N, 1, 32, 32\]"):
        classifier(torch.zeros(2, 3, 32, 32))
    assert d32 is None


def _blur(images):
    kernel = torch.ones(1, 1, 5, 5) / 25
    return F.conv2d(F.pad(images, (2, 2, 2, 2), value=-1.0), kernel)


def test_digits_fid_separates_real_from_degraded(classifier, reference, train):
    generator = torch.Generator().manual_seed(0)
    real = evaluate_samples(train.images[::4], train.labels[::4], reference=reference, classifier=classifier)
    noise = torch.rand(1000, 1, 32, 32, generator=generator) * 2 - 1
    noisy = evaluate_samples(noise, train.labels[::4], reference=reference, classifier=classifier)
    blurred = evaluate_samples(_blur(train.images[::4]), train.labels[::4], reference=reference, classifier=classifier)
    assert real["fid"] < 10
    assert blurred["fid"] > 10 * real["fid"]
    assert noisy["fid"] > 100 * real["fid"]
    assert real["class_accuracy"] > 0.97 and noisy["class_accuracy"] < 0.3
    assert real["precision"] > 0.6 and real["recall"] > 0.6
    assert noisy["precision"] < 0.05


def test_digits_fid_does_not_depend_on_batching(classifier, reference, train):
    images, labels = train.images[::6][:600], train.labels[::6][:600]
    whole = evaluate_samples(images, labels, reference=reference, classifier=classifier, batch_size=600)
    pieces = evaluate_samples(images, labels, reference=reference, classifier=classifier, batch_size=70)
    assert whole["fid"] == pytest.approx(pieces["fid"], rel=1e-4)
    assert whole["class_accuracy"] == pieces["class_accuracy"]


def test_class_accuracy_counts_wrong_labels(classifier, reference, heldout):
    wrong = (heldout.labels + 1) % 10
    result = evaluate_samples(heldout.images, wrong, reference=reference, classifier=classifier,
                              metrics=("class_accuracy",))
    assert result == {"num_samples": 1000, "class_accuracy": pytest.approx(0.0, abs=0.03)}


def test_features_are_128_d_and_deterministic(classifier, heldout):
    a = extract_features(classifier.features, heldout.images[:100], batch_size=30)
    b = extract_features(classifier.features, heldout.images[:100], batch_size=100)
    assert a.shape == (100, 128)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_weights_round_trip_and_missing_file(tmp_path, monkeypatch):
    model = DigitsClassifier().eval()
    path = tmp_path / "w.safetensors"
    save_digits_classifier(model, path)
    loaded = load_digits_classifier(path)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), model.half().float()(x), rtol=1e-3, atol=1e-3)
    monkeypatch.setenv("MASKDIT_DIGITS_WEIGHTS", str(tmp_path / "absent.safetensors"))
    with pytest.raises(FileNotFoundError, match="train_digits_classifier.py"):
        digits_weights_path()
