"""The losses section: weighted loss terms, the noise-level distribution, label dropout.

Example: ``{"terms": [{"name": "dsm", "weight": 1.0}, {"name": "mae", "weight": 0.1}],
"noise": {"name": "lognormal", "p_mean": -1.2, "p_std": 1.2}, "label_dropout": 0.1}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import ConfigDict, Field, model_validator

from maskdit.config.registry import one_of, register, registry
from maskdit.config.spec_model import SpecModel
from maskdit.losses.dsm import DSMLoss
from maskdit.losses.mae import MAELoss
from maskdit.losses.repa import RepaLoss
from maskdit.losses.velocity_cosine import VelocityCosineLoss
from maskdit.masking.strategies import num_kept
from maskdit.processes.flow_noise import LogitNormalTimeNoise, UniformTimeNoise
from maskdit.processes.noise import DDPMNoise, LogNormalNoise, LogUniformNoise


@register("loss")
class DSMSpec(SpecModel):
    """EDM denoising score matching, averaged over visible tokens."""

    name: Literal["dsm"] = "dsm"
    weight: float = Field(1.0, ge=0, le=1e6, description="weight of this term in the total")
    sigma_data: float = Field(0.5, ge=1e-4, le=100,  # below 1e-4 lambda(sigma) overflows float32
                              description="EDM sigma_data in the weight lambda(sigma)")
    tokens: Literal["visible", "all"] | None = Field(
        None, description="positions the loss covers: 'visible' (MaskDiT, MicroDiT), 'all' (TREAD, SPRINT); "
                          "None: what the model's routing implies (all when dropped tokens rejoin)")
    weighting: Literal["edm", "v", "eps"] = Field(
        "edm", description="lambda(sigma) on |D - y|^2: 'edm' (Karras et al. 2022), 'v' = the velocity MSE of flow "
                           "matching (SiT, REPA, SPRINT), 'eps' = DDPM's noise MSE")

    def build(self, *, loss_tokens: str = "visible", **context: Any):
        """``loss_tokens``: what the term covers when ``tokens`` is None (the model's routing)."""
        return DSMLoss(sigma_data=self.sigma_data, tokens=self.tokens or loss_tokens, weighting=self.weighting)


@register("loss")
class VelocityCosineSpec(SpecModel):
    """LightningDiT's 1 - cos(v_hat, v) over channels, averaged over positions (added to the v-MSE)."""

    name: Literal["velocity_cosine"] = "velocity_cosine"
    weight: float = Field(1.0, ge=0, le=1e6, description="weight of this term in the total (LightningDiT: 1)")
    tokens: Literal["visible", "all"] | None = Field(
        None, description="positions the term covers; None: as the model's routing implies (as dsm)")

    def build(self, *, loss_tokens: str = "visible", **context: Any):
        return VelocityCosineLoss(tokens=self.tokens or loss_tokens)


@register("loss")
class MAESpec(SpecModel):
    """MAE reconstruction of the masked patches (normalised noisy-input targets)."""

    name: Literal["mae"] = "mae"
    weight: float = Field(0.1, ge=0, le=1e6, description="weight of this term in the total (paper: 0.1)")
    eps: float = Field(1e-6, ge=0, le=1, description="added to the per-patch variance before the square root")
    normalize_target: bool = Field(True, description="normalise each target patch (reference: True)")

    def build(self, **context: Any):
        return MAELoss(eps=self.eps, normalize_target=self.normalize_target)


#: a registered representation encoder (maskdit.encoders)
EncoderSpec = one_of("encoder")


class AlignmentCost(NamedTuple):
    """A repa term's training cost per sample: the tokens present at the aligned block, the
    projector's multiply-adds per step (forward and backward), the frozen encoder's forward
    multiply-adds per image, and the encoder's feature width."""

    present: int
    projector_macs: int
    encoder_macs: int
    encoder_width: int


@register("loss")
class RepaSpec(SpecModel):
    """REPA: align the tokens after an early block with a frozen encoder's features (Yu et al. 2025)."""

    # the encoder is a plugin spec of its own: the contract tests draw whole examples
    model_config = ConfigDict(**SpecModel.model_config, json_schema_extra={"examples": [
        {"name": "repa", "encoder": {"name": "digits_ssl", "weights": "random"}, "depth": 1, "projector_dim": 16},
        {"name": "repa", "weight": 1.0, "encoder": {"name": "digits_ssl", "weights": "random"}, "projector_dim": 8,
         "until_step": 1000},
    ]})

    name: Literal["repa"] = "repa"
    weight: float = Field(0.5, ge=0, le=1e6, description="weight of this term in the total (REPA: 0.5)")
    encoder: EncoderSpec = Field(description="the frozen representation encoder aligned to")
    depth: int | None = Field(None, ge=1, le=128,
                              description="align the tokens after this many encoder blocks (REPA: 8 of SiT-XL's "
                                          "28); None: 8/28 of the model's depth, at least 1")
    projector_dim: int = Field(2048, ge=1, le=16384, description="hidden width of the projector MLP (REPA: 2048)")
    until_step: int | None = Field(None, ge=0, le=10**9,
                                   description="switch the term off from this training step on (HASTE); None: never")
    cache_features: bool = Field(False, description="encode each distinct clean image once and keep its features "
                                                    "(for data without augmentation that fits in memory: the digits)")

    def aligned_depth(self, model_depth: int) -> int:
        """The blocks run before alignment for a model of ``model_depth`` encoder blocks."""
        return self.depth if self.depth is not None else max(1, round(model_depth * 8 / 28))

    def training_macs(self, model: Any, mask_ratio: float = 0.0) -> AlignmentCost:
        """The term's place in the training FLOP ledger of ``model`` (a ModelSpec) trained at
        ``mask_ratio``, counted on a randomly initialised encoder of the same shape (no weights file is read)."""
        depth = self.aligned_depth(model.depth)
        sparse = mask_ratio > 0 and depth - 1 in model.sparse_blocks
        present = num_kept(model.num_tokens, mask_ratio) if sparse else model.num_tokens
        encoder = self.encoder.model_copy(update={"weights": "random"}) if "weights" in type(self.encoder).model_fields \
            else self.encoder
        built = self.model_copy(update={"encoder": encoder}).build(model_depth=model.depth)
        side = built.encoder.image_size  # every image is resized to the encoder's own input first (latents too)
        projector, encoder_macs = built.training_macs(model.hidden_size, present,
                                                      (built.encoder.in_channels, side, side))
        return AlignmentCost(present, projector, encoder_macs, built.encoder.width)

    def build(self, *, model_depth: int | None = None, **context: Any):
        """``model_depth``: the model's encoder blocks (needed when ``depth`` is None)."""
        if self.depth is None and model_depth is None:
            raise ValueError("repa with depth None needs the model's depth to choose the aligned block")
        encoder = registry("encoder").build(self.encoder)
        return RepaLoss(encoder, depth=self.aligned_depth(model_depth or 0), projector_dim=self.projector_dim,
                        until_step=self.until_step, cache_features=self.cache_features)


#: a registered loss term (a JSON object naming it, with its ``weight``)
LossTermSpec = one_of("loss")


@register("noise")
class LognormalNoiseSpec(SpecModel):
    """ln(sigma) ~ N(p_mean, p_std^2), EDM's training distribution."""

    name: Literal["lognormal"] = "lognormal"
    p_mean: float = Field(-1.2, ge=-20, le=20, description="mean of ln(sigma)")
    p_std: float = Field(1.2, gt=0, le=20, description="standard deviation of ln(sigma)")

    def build(self, **context: Any):
        return LogNormalNoise(self.p_mean, self.p_std)


@register("noise")
class LoguniformNoiseSpec(SpecModel):
    """ln(sigma) uniform between ln(sigma_min) and ln(sigma_max)."""

    name: Literal["loguniform"] = "loguniform"
    sigma_min: float = Field(0.002, gt=0, le=1e4, description="smallest noise level")
    sigma_max: float = Field(80.0, gt=0, le=1e4, description="largest noise level")

    @model_validator(mode="after")
    def _ordered(self) -> LoguniformNoiseSpec:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self

    def build(self, **context: Any):
        return LogUniformNoise(self.sigma_min, self.sigma_max)


@register("noise")
class DDPMNoiseSpec(SpecModel):
    """Integer DDPM timesteps t ~ U{0..T-1} mapped to sigma_t (for epsilon-trained networks)."""

    name: Literal["ddpm"] = "ddpm"
    num_timesteps: int = Field(1000, ge=2, le=100_000, description="training timesteps T")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta_0")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta_{T-1}")
    beta_schedule: Literal["linear", "scaled_linear"] = Field("linear", description="how betas go from start to end")

    @model_validator(mode="after")
    def _ordered(self) -> DDPMNoiseSpec:
        if self.beta_start > self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must not exceed beta_end ({self.beta_end})")
        return self

    def build(self, **context: Any):
        return DDPMNoise(self.num_timesteps, self.beta_start, self.beta_end, self.beta_schedule)


@register("noise")
class UniformTimeNoiseSpec(SpecModel):
    """Flow matching's uniform time t ~ U[t_eps, 1 - t_eps] (SiT, REPA), as sigma = t / (1 - t)."""

    name: Literal["uniform_t"] = "uniform_t"
    flow_time: ClassVar[bool] = True  # a flow-matching time distribution (see process specs)
    t_eps: float = Field(1e-5, ge=1e-6, le=0.25,
                         description="distance kept from each end of [0, 1], where sigma is 0 or infinite")

    def build(self, **context: Any):
        return UniformTimeNoise(self.t_eps)


@register("noise")
class LogitNormalTimeNoiseSpec(SpecModel):
    """Flow matching's logit-normal time on t with t = 1 at noise (SD3, LightningDiT, SPRINT), with
    SD3's optional shift; unshifted, the same sigmas as lognormal with p_mean = m, p_std = s."""

    name: Literal["logit_normal_t"] = "logit_normal_t"
    flow_time: ClassVar[bool] = True
    m: float = Field(0.0, ge=-20, le=20, description="mean of logit(t), t = 1 at noise")
    s: float = Field(1.0, gt=0, le=20, description="standard deviation of logit(t)")
    shift: float = Field(1.0, ge=0.01, le=100,
                         description="SD3 time shift a: t' = a t / (1 + (a - 1) t), i.e. sigma times a; 1 = none")

    def build(self, **context: Any):
        return LogitNormalTimeNoise(self.m, self.s, self.shift)


#: a registered noise-level distribution
NoiseSpec = one_of("noise")


class LossesSpec(SpecModel):
    terms: tuple[LossTermSpec, ...] = Field(
        (DSMSpec(), MAESpec()), min_length=1, description="loss terms, summed with their weights"
    )
    noise: NoiseSpec = Field(LognormalNoiseSpec(), description="distribution of training noise levels")
    label_dropout: float = Field(0.1, ge=0, le=1, description="probability a label is replaced by null (for CFG)")

    @model_validator(mode="after")
    def _unique_terms(self) -> LossesSpec:
        names = [term.name for term in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"each loss term may appear once, got {names}")
        return self
