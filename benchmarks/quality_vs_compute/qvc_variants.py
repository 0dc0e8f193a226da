"""The quality-vs-compute study's variants: four token-sparsity methods and DiT on one backbone.

Every variant of a layout shares the encoder (depth, width, heads, patch), the optimiser, precision
(fp32), batch, data order and noise distribution of the ``maskdit-demo`` preset (``make demo``'s
until 2026-12-05), the layout's EMA and sampler (STUDY_EMA, the demo's until 2026-12-02, pinned so
the committed records stay comparable; the "64s" layout, added later, uses today's); they differ only
in the model's routing (where tokens leave and rejoin, what fills them), the decoder (MaskDiT
only), the mask ratio, what the loss covers, and whether the model needs unmasked tuning before
it is used. Each variant is the ``maskdit-demo`` preset with one JSON patch (field path -> JSON value,
what ``python -m maskdit.build --set`` applies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from maskdit import ExperimentSpec, read_spec, validate_spec

BASE_PRESET = "maskdit-demo"

DSM = [{"name": "dsm", "weight": 1.0}]
DSM_MAE = [{"name": "dsm", "weight": 1.0}, {"name": "mae", "weight": 0.1}]
TUNE_LR = 5e-4  # the maskdit-demo preset's unmasking lr
STUDY_EMA = {"decay": 0.999, "warmup": True}  # every committed record was trained with it


@dataclass(frozen=True)
class Objective:
    """How a variant is trained beyond its tokens: the model's process, the dsm weighting, the
    training time distribution (None: the preset's EDM lognormal) and the sampler's time grid."""

    process: dict[str, Any] | None = None
    weighting: str = "edm"
    noise: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None


EDM = Objective()
SIT = {"name": "flow", "convention": "sit", "prediction": "v"}
UNIFORM_GRID = {"name": "uniform_t"}  # SiT's sampling grid: uniform in t from pure noise
OBJECTIVES = {
    # flow matching as SiT trains it: velocity MSE, t ~ U(0, 1)
    "fm-u": Objective(SIT, "v", {"name": "uniform_t"}, UNIFORM_GRID),
    # as SD3 / SPRINT / LightningDiT: velocity MSE, logit-normal(0, 1) t
    "fm-ln": Objective(SIT, "v", {"name": "logit_normal_t", "m": 0.0, "s": 1.0}, UNIFORM_GRID),
    # the control: EDM's objective on fm-ln's noise levels (logit-normal(0, 1) t is lognormal(0, 1) sigma),
    # so the time distribution and the objective (process, weighting) can be told apart
    "edm-ln": Objective(None, "edm", {"name": "lognormal", "p_mean": 0.0, "p_std": 1.0}, None),
}


@dataclass(frozen=True)
class Variant:
    """One training recipe: the model changes, the mask ratio, the loss terms, whether a ready
    model needs a short unmasked tuning (MaskDiT's unmasking tuning, MicroDiT's and SPRINT's
    fine-tune), and the objective (EDM unless named). ``twin``: the EDM variant with the same
    network and tokens, whose calibrated step time a flow variant shares (the process changes a
    few element-wise operations around the same network), or, for an ``aligned`` variant, the
    variant without alignment whose calibrated step time it scales by a measured ratio."""

    method: str
    ratio: float
    model: dict[str, Any]
    terms: list[dict[str, Any]]
    tune: bool
    objective: Objective = EDM
    twin: str | None = None
    aligned: bool = False  # a repa term: its step costs more than its twin's (``repa-cost`` measures by how much)
    cost_of: str | None = None  # an aligned variant of another objective whose measured cost this one shares

    def loss_terms(self, terms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``terms`` with this variant's dsm weighting."""
        if self.objective.weighting == "edm":
            return terms
        return [{**term, "weighting": self.objective.weighting} if term["name"] == "dsm" else term for term in terms]


def _variants(depth: int, *, flow: bool) -> dict[str, Variant]:
    route = {"start": 1, "end": depth - 1}  # TREAD / SPRINT: first and last block dense
    mixer = {"start": max(1, depth // 3)}  # deferred masking's patch-mixer: 2 of 6 blocks, 1 of 4
    maskdit = {"decoder": True}
    edm = {
        "dit": Variant("dit", 0.0, {}, DSM, tune=False),
        "maskdit-0.25": Variant("maskdit", 0.25, maskdit, DSM_MAE, tune=True),
        "maskdit-0.5": Variant("maskdit", 0.5, maskdit, DSM_MAE, tune=True),
        "deferred-0.5": Variant("deferred", 0.5, {"routing": mixer}, DSM, tune=True),
        "deferred-0.75": Variant("deferred", 0.75, {"routing": mixer}, DSM, tune=True),
        "tread-0.5": Variant("tread", 0.5, {"routing": {**route, "fill": "exit"}}, DSM, tune=False),
        "sprint-0.75": Variant("sprint", 0.75, {"routing": {**route, "fill": "mask_token", "fuse": "concat"}}, DSM,
                               tune=True),
    }
    if not flow:
        return edm
    # flow matching beside EDM: DiT under both time distributions, the best sparse method (TREAD) under each
    flows = {f"{name}-{key}": replace(edm[name], objective=OBJECTIVES[key], twin=name)
             for name in ("dit", "tread-0.5") for key in OBJECTIVES}
    # representation alignment (issue 29) under the best objective found (edm-ln), to the shipped digits
    # encoder, and the control that aligns to a randomly initialised encoder of the same shape
    aligned = {f"{name}-edm-ln-repa": aligned_variant(edm[name], name, "pretrained") for name in ("dit", "tread-0.5")}
    aligned["dit-edm-ln-repa-random"] = aligned_variant(edm["dit"], "dit", "random")
    # and the other objective for the best aligned variant: flow matching on the same noise levels; the
    # process changes a few element-wise operations, so it pays DiT + REPA's measured cost (as flow
    # variants share their EDM twin's step time)
    aligned["dit-fm-ln-repa"] = replace(aligned_variant(edm["dit"], "dit", "pretrained", "fm-ln"),
                                        cost_of="dit-edm-ln-repa")
    return {**edm, **flows, **aligned}


# REPA's term, scaled to the digits: weight 0.5, the aligned block 8/28 of the depth (depth None), a
# 256-wide projector, the shipped unsupervised digits encoder (or a random one), features cached per image
REPA_TERM = {"name": "repa", "weight": 0.5, "projector_dim": 256, "cache_features": True}


def aligned_variant(base: Variant, twin: str, weights: str, objective: str = "edm-ln") -> Variant:
    """``base`` trained on ``objective`` with a repa term to ``digits_ssl`` with these ``weights``."""
    term = {**REPA_TERM, "encoder": {"name": "digits_ssl", "weights": weights}}
    return replace(base, terms=[*base.terms, term], objective=OBJECTIVES[objective], twin=twin, aligned=True)


@dataclass(frozen=True)
class Layout:
    """A token layout of the digits: the encoder and the decoder MaskDiT adds to it."""

    name: str
    patch_size: int
    depth: int
    hidden_size: int
    num_heads: int
    train_seconds: float  # DiT's training budget; every variant gets the same calibrated wall-clock
    ema: tuple[float, bool] = (STUDY_EMA["decay"], STUDY_EMA["warmup"])  # (decay, warm-up)
    sampler: tuple[tuple[str, Any], ...] = ()  # sampler settings beyond Euler's steps and guidance
    flow: bool = True  # with the flow-matching variants (not on 64s, whose EDM sampler has churn)

    @property
    def tokens(self) -> int:
        return (32 // self.patch_size) ** 2

    def model(self) -> dict[str, Any]:
        return {"input_size": 32, "in_channels": 1, "patch_size": self.patch_size, "depth": self.depth,
                "hidden_size": self.hidden_size, "num_heads": self.num_heads, "decoder_depth": 0,
                "num_classes": 10, "label_embedder": "onehot"}

    def decoder(self) -> dict[str, Any]:
        width = self.hidden_size // 2  # as maskdit-demo: 2 blocks at half the width, 32-wide heads
        return {"decoder_depth": 2, "decoder_hidden_size": width, "decoder_num_heads": max(width // 32, 1)}

    @property
    def variants(self) -> dict[str, Variant]:
        return _variants(self.depth, flow=self.flow)


LAYOUTS = {
    # the maskdit-demo preset's backbone: patch 4 on 32 x 32 digits, 6 x 128, 2.1M parameters
    "64": Layout("64", patch_size=4, depth=6, hidden_size=128, num_heads=4, train_seconds=600),
    # patch 2: four times the tokens, half the width so that a DiT step costs about the same
    "256": Layout("256", patch_size=2, depth=6, hidden_size=64, num_heads=2, train_seconds=600),
    # make demo's DiT since 2026-12-05 (4 x 96, 0.73M parameters), with its EMA and sampler: the size
    # at which dense DiT trains best for the demo's FLOPs. 730 s is its 4,250 steps at 1 thread on the
    # AVX512-BF16 EPYC VM (calibrate and run with --threads 1)
    "64s": Layout("64s", patch_size=4, depth=4, hidden_size=96, num_heads=3, train_seconds=730,
                  ema=(0.98, True), sampler=(("cfg_interval", (0.1, 8.0)), ("s_churn", 4.0)), flow=False),
}


def overrides(patch: dict[str, Any]) -> list[str]:
    """A JSON patch as the ``--set FIELD=VALUE`` arguments that apply it."""
    return [f"{path}={json.dumps(value)}" for path, value in patch.items()]


def patched(data: dict[str, Any], patch: dict[str, Any]) -> ExperimentSpec:
    """A spec document with a JSON patch applied and validated, as ``--set`` does."""
    return validate_spec(data, overrides(patch))


def variant_patch(layout: Layout, name: str, *, main_steps: int, tune_steps: int = 0, seed: int = 0,
                  eval_every: int | None = None, num_samples: int = 1000, sampler_steps: int = 9,
                  cfg_scale: float = 1.0) -> dict[str, Any]:
    """The JSON patch of one variant over the base preset: ``main_steps`` of its recipe, then (a
    tuning branch) ``tune_steps`` unmasked DSM steps at the tuning lr."""
    variant = layout.variants[name]
    objective = variant.objective
    model = layout.model()
    if variant.model.get("decoder"):
        model.update(layout.decoder())
    if "routing" in variant.model:
        model["routing"] = variant.model["routing"]
    if objective.process is not None:
        model["process"] = objective.process
    phases = [{"name": "main", "steps": main_steps}]
    if tune_steps:
        phases.append({"name": "tune", "steps": tune_steps, "masking": {"name": "none"},
                       "loss_terms": variant.loss_terms(DSM), "lr": TUNE_LR})
    sampler = {"name": "euler", "steps": sampler_steps, "cfg_scale": cfg_scale, **dict(layout.sampler)}
    if objective.schedule is not None:
        sampler["schedule"] = objective.schedule
    noise = {} if objective.noise is None else {"losses.noise": objective.noise}
    return {
        "name": f"qvc-{layout.name}-{name}", "seed": seed, "model": model,
        "masking": {"name": "random", "ratio": variant.ratio} if variant.ratio else {"name": "none"},
        "losses.terms": variant.loss_terms(variant.terms), **noise,
        "sampler": sampler,
        "train.phases": phases, "train.checkpoint_every": eval_every or main_steps + tune_steps,
        "train.keep_checkpoints": 1, "train.sample_every": eval_every, "train.log_every": 50,
        "train.ema": {"decay": layout.ema[0], "warmup": layout.ema[1]},
        "eval.num_samples": num_samples, "eval.batch_size": 250, "eval.metrics": ["fid", "class_accuracy"],
        "eval.grid_per_class": 10,
    }


def variant_spec(layout: Layout, name: str, *, main_steps: int, tune_steps: int = 0, seed: int = 0,
                 eval_every: int | None = None, num_samples: int = 1000, sampler_steps: int = 9,
                 cfg_scale: float = 1.0) -> ExperimentSpec:
    """The experiment spec of one variant: the base preset with its :func:`variant_patch`."""
    patch = variant_patch(layout, name, main_steps=main_steps, tune_steps=tune_steps, seed=seed, eval_every=eval_every,
                          num_samples=num_samples, sampler_steps=sampler_steps, cfg_scale=cfg_scale)
    return read_spec(BASE_PRESET, overrides(patch))
