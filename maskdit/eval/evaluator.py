"""From an eval spec (and the data spec it refers to) to a ready evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from maskdit.config.registry import Registry, registry
from maskdit.data import build_dataset
from maskdit.eval.digits import DigitsClassifier, check_digits_data, load_digits_classifier
from maskdit.eval.features import FeatureExtractor, Reference
from maskdit.eval.metrics import MetricAccumulator
from maskdit.eval.specs import EvalSpec

#: the registered feature extractors (``eval.features``): spec.build(device=, data=, weights=) -> extractor
FEATURE_EXTRACTORS: Registry = registry("features")


@dataclass(frozen=True)
class Evaluator:
    """Everything the metrics need, built once; ``accumulator()`` starts a fresh evaluation."""

    spec: EvalSpec
    reference: Reference | None
    extractor: FeatureExtractor | None
    classifier: DigitsClassifier | None

    def accumulator(self, metrics: Sequence[str] | None = None) -> MetricAccumulator:
        """A fresh accumulator for the spec's metrics (or a subset of them)."""
        return MetricAccumulator(metrics=self.spec.metrics if metrics is None else metrics, reference=self.reference, extractor=self.extractor,
                                 classifier=self.classifier, k=self.spec.precision_recall_k,
                                 quantize=self.spec.quantize)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        return self.accumulator().update(images, labels).result()


def build_evaluator(spec: EvalSpec, data=None, *, device: str | torch.device = "cpu") -> Evaluator:
    """Load the networks ``spec`` asks for and compute its reference.

    ``data`` is the experiment's data spec; a split reference ('heldout', ...) is that split of
    its dataset. The digits classifier (class accuracy, digits features) needs MNIST-style data.
    The features are the plugin ``spec.features`` names (see :mod:`maskdit.eval.specs`).
    """
    needs_classifier = "class_accuracy" in spec.metrics
    needs_features = bool({"fid", "precision_recall"} & set(spec.metrics))
    if needs_classifier:
        check_digits_data(data)
    classifier = load_digits_classifier(device=device) if needs_classifier else None
    extractor: FeatureExtractor | None = None
    if needs_features:
        extractor = FEATURE_EXTRACTORS.build(spec.features, device=device, data=data, weights=spec.inception_weights)
    reference = None
    if needs_features:
        if spec.reference_is_split:
            if data is None:
                raise ValueError(f"reference {spec.reference!r} is a dataset split, so a data spec is needed")
            if "split" not in type(data).model_fields:
                raise ValueError(f"dataset {data.name!r} has no splits; give the eval reference as an .npz path")
            split_spec = type(data).model_validate({**data.model_dump(), "split": spec.reference})
            dataset = build_dataset(split_spec)
            reference = Reference.from_images(extractor, dataset.images, name=f"{data.name}/{spec.reference}")
        else:
            reference = Reference.from_npz(spec.reference)
    return Evaluator(spec, reference, extractor, classifier)
