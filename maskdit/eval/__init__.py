"""Evaluation: Fréchet distance, precision / recall, class accuracy, feature extractors
(the shipped digits classifier and the FID Inception network), sample grids and plots."""

from __future__ import annotations

from maskdit.eval import specs
from maskdit.eval.digits import DigitsClassifier, load_digits_classifier, save_digits_classifier
from maskdit.eval.evaluator import Evaluator, build_evaluator
from maskdit.eval.features import FeatureExtractor, Reference, extract_features
from maskdit.eval.frechet import SingularCovarianceWarning, frechet_distance
from maskdit.eval.grid import class_grid, save_class_grid
from maskdit.eval.images import ImageRangeWarning, prepare_images
from maskdit.eval.inception import FIDInception, inception_weights_path
from maskdit.eval.metrics import METRICS, MetricAccumulator, evaluate_samples
from maskdit.eval.plots import plot_metrics
from maskdit.eval.precision_recall import knn_radii, precision_recall
from maskdit.eval.records import append_metrics, read_metrics
from maskdit.eval.stats import FeatureStats, FewSamplesWarning, RunningStats, load_stats, save_stats

__all__ = [
    "METRICS",
    "DigitsClassifier",
    "Evaluator",
    "FIDInception",
    "FeatureExtractor",
    "FeatureStats",
    "FewSamplesWarning",
    "ImageRangeWarning",
    "MetricAccumulator",
    "Reference",
    "RunningStats",
    "SingularCovarianceWarning",
    "append_metrics",
    "build_evaluator",
    "class_grid",
    "evaluate_samples",
    "extract_features",
    "frechet_distance",
    "inception_weights_path",
    "knn_radii",
    "load_digits_classifier",
    "load_stats",
    "plot_metrics",
    "precision_recall",
    "prepare_images",
    "read_metrics",
    "save_class_grid",
    "save_digits_classifier",
    "save_stats",
    "specs",
]
