"""The eval section: how many samples, which metrics against which reference, how often; and the
feature-extractor plugins (``eval.features`` names one).

A feature-extractor plugin's ``build(*, device, data, weights)`` returns ``extractor(images [N, C,
H, W] in [-1, 1]) -> features [N, D]`` on ``device``; ``data`` is the experiment's data spec (to
refuse data the network cannot read), ``weights`` the eval section's ``inception_weights``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from maskdit.config.registry import name_of, register
from maskdit.config.spec_model import SpecModel
from maskdit.eval.digits import check_digits_data, load_digits_classifier


@register("features")
class DigitsFeaturesSpec(SpecModel):
    """The shipped digits classifier's 128-d penultimate layer (offline; 1-channel 10-class digits)."""

    name: Literal["digits"] = "digits"

    def build(self, *, device: Any = "cpu", data: Any = None, **context: Any):
        check_digits_data(data)
        return load_digits_classifier(device=device).features


@register("features")
class InceptionFeaturesSpec(SpecModel):
    """FID Inception-v3 pool3 (2048-d) from a local weights file (Heusel et al. 2017)."""

    name: Literal["inception"] = "inception"

    def build(self, *, device: Any = "cpu", weights: str | None = None, **context: Any):
        from maskdit.eval.inception import FIDInception  # deferred: torchvision's Inception-v3

        return FIDInception.from_file(weights).to(device)


class EvalSpec(SpecModel):
    """Sampling and metrics of an evaluation (see ``maskdit.eval`` for the metrics' definitions)."""

    num_samples: int = Field(1000, ge=0, description="samples drawn per evaluation (0 = no evaluation)")
    batch_size: int = Field(100, ge=1, description="samples per sampling batch")
    every: int | None = Field(None, ge=1, description="steps between evaluations during training (None: at the end)")
    metrics: tuple[Literal["fid", "class_accuracy", "precision_recall"], ...] = Field(
        ("fid", "class_accuracy"), description="metrics to compute"
    )
    features: name_of("features") = Field(
        "digits", description="FID features: the shipped digits classifier (offline) or FID Inception-v3 pool3"
    )
    reference: str = Field(
        "heldout",
        min_length=1,
        description="'heldout' / 'train' / 'all': that split of the spec's dataset; or a path to an ADM / pytorch-fid .npz",
    )
    inception_weights: str | None = Field(
        None, description="local FID Inception weights file (else $MASKDIT_INCEPTION_WEIGHTS, else the cache dir)"
    )
    precision_recall_k: int = Field(3, ge=1, le=100, description="k of the k-NN manifolds (Kynkaanniemi et al. 2019)")
    grid_per_class: int = Field(10, ge=0, le=100, description="samples per class row of samples.png (0 = no grid)")
    quantize: bool = Field(True, description="round samples to 8-bit levels before the metrics, as a saved PNG would be")
    metrics_during_training: bool = Field(
        False, description="also compute the metrics at each evaluation during training (needs every; the held-out "
                           "loss and the sample grid are always written)"
    )

    @property
    def reference_is_split(self) -> bool:
        return self.reference in ("heldout", "train", "all")

    @model_validator(mode="after")
    def _consistent(self) -> EvalSpec:
        if not self.reference_is_split and not self.reference.endswith(".npz"):
            raise ValueError(f"reference must be 'heldout', 'train', 'all' or a path ending in .npz, got {self.reference!r}")
        if "precision_recall" in self.metrics and not self.reference_is_split:
            raise ValueError("precision_recall needs reference features: use a dataset split as reference, not an .npz")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics listed twice: {list(self.metrics)}")
        if self.metrics_during_training and (self.every is None or self.num_samples == 0):
            raise ValueError("metrics_during_training needs evaluations during training (every) that draw samples "
                             "(num_samples > 0)")
        return self
