"""From an eval spec (and the data spec it refers to) to a ready evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from maskdit.data import build_dataset
from maskdit.eval.digits import DigitsClassifier, load_digits_classifier
from maskdit.eval.features import FeatureExtractor, Reference
from maskdit.eval.inception import FIDInception
from maskdit.eval.metrics import MetricAccumulator
from maskdit.eval.specs import EvalSpec


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
    """
    needs_classifier = "class_accuracy" in spec.metrics or spec.features == "digits"
    needs_features = bool({"fid", "precision_recall"} & set(spec.metrics))
    if needs_classifier and data is not None and (data.channels, data.num_classes) != (1, 10):
        raise ValueError(
            f"the digits classifier needs 1-channel 10-class digits, but the data has {data.channels} channel(s) and "
            f"{data.num_classes} classes; use features='inception' and drop class_accuracy"
        )
    classifier = load_digits_classifier(device=device) if needs_classifier else None
    extractor: FeatureExtractor | None = None
    if needs_features:
        extractor = classifier.features if spec.features == "digits" else FIDInception.from_file(spec.inception_weights).to(device)
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
