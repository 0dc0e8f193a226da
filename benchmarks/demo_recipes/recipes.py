"""The candidate recipes for ``make demo``: each one a JSON patch of the ``maskdit-demo`` preset
(field path -> JSON value, what ``python -m maskdit.build --set`` applies)."""

from __future__ import annotations

import json
from typing import Any

BASE_PRESET = "maskdit-demo"  # what every recipe patches: make demo's MaskDiT until 2026-12-05

Patch = dict[str, Any]

# warm-up-stable-decay: the masked phase cools down over its second half to 0.25 x lr
# (2e-3 -> 5e-4, the unmasking lr), then the unmasking phase anneals linearly to 0
WSD: Patch = {"train.phases.0.lr_decay": {"shape": "linear", "fraction": 0.5, "final": 0.25},
              "train.phases.1.lr_decay": {"shape": "linear", "fraction": 1.0, "final": 0.0}}
# the preset's EMA before 2026-12-02 (the posthoc_ema study found 0.98 samples far better)
EMA_999: Patch = {"train.ema.decay": 0.999}
# the sparsity study's 256-token layout (patch 2, 6 x 64, DSM only) at the preset's wall-clock: a
# step there costs ~2x the preset's masked step, so ~half the steps
PATCH_2: Patch = {"model.patch_size": 2, "model.hidden_size": 64, "model.num_heads": 2, "model.decoder_depth": 0,
                  "losses.terms": [{"name": "dsm", "weight": 1.0}],
                  "train.phases.0.steps": 1250, "train.phases.1.steps": 125}
# plain DiT (no mask, no decoder, DSM only): the sparsity study found it ahead of every sparse
# method at 64 tokens after ~half its budget
DIT_BASE: Patch = {"model.decoder_depth": 0, "masking": {"name": "none"},
                   "losses.terms": [{"name": "dsm", "weight": 1.0}]}


def dit(steps: int, **model: Any) -> Patch:
    """DiT with these model fields, trained ``steps`` steps in one dense phase (the steps that cost
    the preset's training FLOPs)."""
    return {**DIT_BASE, **{f"model.{field}": value for field, value in model.items()},
            "train.phases": [{"name": "dense", "steps": steps}]}


RECIPES: dict[str, Patch] = {
    "base": {},  # the base preset as it is (make demo's MaskDiT until 2026-12-05)
    "ema999": EMA_999,
    "wsd": {**WSD, **EMA_999},  # as it was tested
    "wsd98": WSD,  # the cool-down with the preset's EMA (0.98)
    # half the batch, ~1.7x the steps: a step at batch 32 costs ~0.6x one at 64 (masked; ~0.52x unmasked)
    "b32": {"train.batch_size": 32, "train.warmup_steps": 400, "train.phases.0.steps": 3800,
            "train.phases.1.steps": 560},
    # a quarter of the batch, ~3.5x the steps (b32 at seed 1: FID 21.0 against the preset's 37.0)
    "b16": {"train.batch_size": 16, "train.warmup_steps": 800, "train.phases.0.steps": 7600,
            "train.phases.1.steps": 1100},
    "dit": dit(1650),
    # DiT at other widths and depths: every lr / EMA / batch / method recipe above sat at a median
    # FID of ~21, so the model's size is the axis left (a smaller model for more steps, or a larger
    # one for fewer)
    "dit-d4": dit(2450, depth=4),
    "dit-d3": dit(3250, depth=3),
    "dit-d2": dit(4900, depth=2),
    "dit-w96": dit(2800, hidden_size=96, num_heads=3),
    "dit-d4w96": dit(4250, depth=4, hidden_size=96, num_heads=3),
    "dit-w160": dit(1080, hidden_size=160, num_heads=5),
    # the study's best FID at 256 tokens: deferred masking (MicroDiT) after a 2-block patch-mixer
    "p2-deferred": {**PATCH_2, "model.routing": {"start": 2}},
    # TREAD routing: blocks 1-4 on the kept half, the rest rejoin before block 5
    "p2-tread": {**PATCH_2, "model.routing": {"start": 1, "end": 5}},
}

# EDM on lognormal(0, 1) sigma (flow matching's logit-normal(0, 1) levels): the quality_vs_compute
# control beat the preset's N(-0.4, 1.4^2) threefold in FID at 64 tokens (RESULTS.md#flow_vs_edm)
LOGNORMAL_0_1: Patch = {"losses.noise": {"name": "lognormal", "p_mean": 0.0, "p_std": 1.0}}
D4W96 = {"depth": 4, "hidden_size": 96, "num_heads": 3}  # make demo's DiT since 2026-12-05
# REPA to the shipped digits encoder after block 1 of 4 (8/28 of the depth), features cached per image
REPA_TERMS: Patch = {"losses.terms": [{"name": "dsm", "weight": 1.0},
                                      {"name": "repa", "weight": 0.5, "encoder": {"name": "digits_ssl"}, "depth": 1,
                                       "projector_dim": 256, "cache_features": True}]}
RECIPES.update({
    "d4w96-ln": {**dit(4250, **D4W96), **LOGNORMAL_0_1},
    # ~0.6 of the steps: make demo within 10 minutes on the slow EPYC (12:47 for 4,250 steps there)
    "d4w96-ln-2600": {**dit(2600, **D4W96), **LOGNORMAL_0_1},
    # the same wall-clock with alignment: its projector adds ~0.2x to a step (encoder cached)
    "d4w96-ln-2150-repa": {**dit(2150, **D4W96), **LOGNORMAL_0_1, **REPA_TERMS},
    # the slow EPYC's limit with a ~10 % margin (make demo ~5:15 here at ~10 steps/s), the lr annealed linearly
    # to 0 over the last 40 % (a short run's cool-down; the EMA is only 0.98)
    "d4w96-ln-3000-cool": {**dit(3000, **D4W96), **LOGNORMAL_0_1,
                           "train.phases": [{"name": "dense", "steps": 3000,
                                             "lr_decay": {"shape": "linear", "fraction": 0.4, "final": 0.0}}]},
})

#: recipes sized to make demo's 10-minute target on the slow EPYC, not to the preset's cost
SHORTER = frozenset({"d4w96-ln-2600", "d4w96-ln-2150-repa", "d4w96-ln-3000-cool"})


def overrides(patch: Patch) -> list[str]:
    """A JSON patch as the ``--set FIELD=VALUE`` arguments that apply it (what a record stores)."""
    return [f"{path}={json.dumps(value)}" for path, value in patch.items()]
