"""The metrics of a set of generated images, accumulated batch by batch.

- ``fid``: Fréchet distance between the samples' features and the reference's (Heusel et al. 2017);
- ``precision_recall``: improved precision and recall, k-NN manifolds (Kynkäänniemi et al. 2019);
- ``class_accuracy``: fraction of class-conditional samples the digits classifier assigns to the
  label they were drawn for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from maskdit.eval.digits import DigitsClassifier
from maskdit.eval.features import FeatureExtractor, Reference, extractor_device
from maskdit.eval.frechet import frechet_distance
from maskdit.eval.images import prepare_images
from maskdit.eval.manifolds import precision_recall
from maskdit.eval.stats import RunningStats

METRICS = ("fid", "class_accuracy", "precision_recall")


class MetricAccumulator:
    """Feed ``update(images, labels)`` batches, then read ``result()``.

    Feature statistics stream in float64; features are kept only when precision / recall is
    asked for (it needs all of them). When ``extractor`` is the classifier's own ``features``,
    the class logits reuse those features instead of running the network twice.
    """

    def __init__(
        self,
        *,
        metrics: Sequence[str] = METRICS,
        reference: Reference | None = None,
        extractor: FeatureExtractor | None = None,
        classifier: DigitsClassifier | None = None,
        k: int = 3,
        quantize: bool = True,
        batch_size: int = 250,
    ) -> None:
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; valid: {', '.join(METRICS)}")
        self.metrics = tuple(dict.fromkeys(metrics))
        needs_features = {"fid", "precision_recall"} & set(self.metrics)
        if extractor is None and classifier is not None:
            extractor = classifier.features
        if needs_features and (reference is None or extractor is None):
            raise ValueError(f"{' and '.join(sorted(needs_features))} need a reference and a feature extractor")
        if "precision_recall" in self.metrics and reference.features is None:
            raise ValueError(f"precision_recall needs reference features, but {reference.name} holds only mu/sigma")
        if "class_accuracy" in self.metrics and classifier is None:
            raise ValueError("class_accuracy needs a classifier (e.g. load_digits_classifier())")
        self.reference, self.extractor, self.classifier = reference, extractor, classifier
        self.k, self.quantize, self.batch_size = k, quantize, batch_size
        self._stats = RunningStats()
        self._features: list[torch.Tensor] = []
        self._correct = 0
        self.count = 0

    @torch.no_grad()
    def update(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MetricAccumulator:
        """Add generated ``images`` [B, C, H, W] in [-1, 1] (and the labels [B] they were drawn for)."""
        x = prepare_images(images, quantize=self.quantize)
        if "class_accuracy" in self.metrics:
            if labels is None or labels.shape != (x.shape[0],):
                raise ValueError(f"class_accuracy needs labels [{x.shape[0]}], got "
                                 f"{None if labels is None else tuple(labels.shape)}")
        for start in range(0, x.shape[0], self.batch_size):
            self._update_chunk(x[start:start + self.batch_size],
                               None if labels is None else labels[start:start + self.batch_size])
        self.count += x.shape[0]
        return self

    def _update_chunk(self, x: torch.Tensor, labels: torch.Tensor | None) -> None:
        features = None
        if self.extractor is not None:
            device = extractor_device(self.extractor)
            features = self.extractor(x.to(device)).float()
            if features.ndim != 2 or features.shape[0] != x.shape[0]:
                raise ValueError(f"the extractor must return [N, D] features, got {tuple(features.shape)}")
            if self.reference is not None and features.shape[1] != self.reference.dim:
                raise ValueError(f"sample features are {features.shape[1]}-d but {self.reference.name} is "
                                 f"{self.reference.dim}-d (different feature extractors?)")
            self._stats.update(features)
            if "precision_recall" in self.metrics:
                self._features.append(features.cpu())
        if "class_accuracy" in self.metrics:
            classifier = self.classifier
            if features is not None and self.extractor == classifier.features:
                logits = classifier.classify(features)
            else:
                logits = classifier(x.to(extractor_device(classifier)))
            self._correct += int((logits.argmax(dim=1).cpu() == labels.cpu()).sum())

    def result(self) -> dict[str, float]:
        """The metrics so far: ``fid``, ``precision``, ``recall``, ``class_accuracy``, ``num_samples``."""
        if self.count == 0:
            raise ValueError("no images were added")
        out: dict[str, float] = {"num_samples": self.count}
        if "fid" in self.metrics:
            out["fid"] = frechet_distance(self._stats.finalize(), self.reference.stats)
        if "precision_recall" in self.metrics:
            out["precision"], out["recall"] = precision_recall(self.reference.features, torch.cat(self._features), k=self.k)
        if "class_accuracy" in self.metrics:
            out["class_accuracy"] = self._correct / self.count
        return out


def evaluate_samples(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    reference: Reference | None = None,
    extractor: FeatureExtractor | None = None,
    classifier: DigitsClassifier | None = None,
    metrics: Sequence[str] = METRICS,
    k: int = 3,
    quantize: bool = True,
    batch_size: int = 250,
) -> dict[str, float]:
    """Metrics of generated ``images`` [N, C, H, W] in [-1, 1] drawn for ``labels`` [N] against ``reference``."""
    accumulator = MetricAccumulator(metrics=metrics, reference=reference, extractor=extractor, classifier=classifier,
                                    k=k, quantize=quantize, batch_size=batch_size)
    return accumulator.update(images, labels).result()
