"""Evaluation: Fréchet distance, precision / recall, class accuracy, feature extractors
(the shipped digits classifier and the FID Inception network), sampling for evaluation,
sample grids and plots.

Names are imported on first use (PEP 562), so ``import maskdit.app.experiment_spec`` (which needs only
:mod:`maskdit.eval.specs`) does not pay for torchvision, scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maskdit.eval import specs

_EXPORTS = {
    "DigitsClassifier": "digits", "load_digits_classifier": "digits", "save_digits_classifier": "digits",
    "Evaluator": "evaluator", "FEATURE_EXTRACTORS": "evaluator", "build_evaluator": "evaluator",
    "FeatureExtractor": "features", "Reference": "features", "extract_features": "features",
    "SingularCovarianceWarning": "frechet", "frechet_distance": "frechet",
    "class_grid": "maskdit.io.images", "save_class_grid": "maskdit.io.images",
    "ImageRangeWarning": "images", "prepare_images": "images",
    "FIDInception": "inception", "inception_weights_path": "inception",
    "METRICS": "metrics", "MetricAccumulator": "metrics", "evaluate_samples": "metrics",
    "plot_metrics": "plots",
    "knn_radii": "manifolds", "precision_recall": "manifolds",
    "append_metrics": "maskdit.io.jsonl", "read_metrics": "maskdit.io.jsonl",
    "balanced_labels": "generation", "generate_batches": "generation", "image_seed": "generation",
    "FeatureStats": "stats", "FewSamplesWarning": "stats", "RunningStats": "stats", "load_stats": "stats",
    "save_stats": "stats",
    "HeldOutLoss": "heldout",
}

__all__ = sorted(_EXPORTS) + ["specs"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maskdit.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module if "." in module else f"maskdit.eval.{module}"), name)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from maskdit.eval.digits import DigitsClassifier, load_digits_classifier, save_digits_classifier
    from maskdit.eval.evaluator import FEATURE_EXTRACTORS, Evaluator, build_evaluator
    from maskdit.eval.features import FeatureExtractor, Reference, extract_features
    from maskdit.eval.frechet import SingularCovarianceWarning, frechet_distance
    from maskdit.eval.generation import balanced_labels, generate_batches, image_seed
    from maskdit.eval.heldout import HeldOutLoss
    from maskdit.eval.images import ImageRangeWarning, prepare_images
    from maskdit.eval.inception import FIDInception, inception_weights_path
    from maskdit.eval.manifolds import knn_radii, precision_recall
    from maskdit.eval.metrics import METRICS, MetricAccumulator, evaluate_samples
    from maskdit.eval.plots import plot_metrics
    from maskdit.io.jsonl import append_metrics, read_metrics
    from maskdit.eval.stats import FeatureStats, FewSamplesWarning, RunningStats, load_stats, save_stats
    from maskdit.io.images import class_grid, save_class_grid
