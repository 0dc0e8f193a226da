"""ExperimentSpec: exact JSON round trips, preset resolution, cross-section checks."""

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec
from maskdit.config.spec_model import SEED_MAX
from maskdit.core.presets import MODEL_PRESETS
from maskdit.core.specs import ModelSpec
from maskdit.masking import MASKING, RATIO_SCHEDULES
from maskdit.masking.specs import masking_max_ratio, masking_path_drop
from maskdit.testing.strategies import masking_specs, takes_ratio

DIGITS_MODEL = {"input_size": 32, "in_channels": 1, "patch_size": 4, "depth": 2, "hidden_size": 64,
                "num_heads": 2, "decoder_depth": 1, "decoder_hidden_size": 32, "decoder_num_heads": 2,
                "num_classes": 10}


# run names: a plain folder name ("." and ".." are refused as path components)
RUN_NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True).filter(lambda name: name not in (".", ".."))


@st.composite
def experiment_specs(draw):
    strategy = MASKING.get(draw(st.sampled_from(MASKING.names())))
    ratio = draw(st.sampled_from(["number", *RATIO_SCHEDULES.names()])) if takes_ratio(strategy) else "own"
    masking = draw(masking_specs(strategy, ratio))
    assume(masking_max_ratio(masking) <= 0.95)  # leaves a token of the smallest grid drawn here visible
    heads = draw(st.sampled_from([1, 2, 4]))
    model = {**DIGITS_MODEL, "num_heads": heads, "hidden_size": heads * draw(st.integers(8, 32)),
             "patch_size": draw(st.sampled_from([2, 4])), "qk_norm": draw(st.booleans()),
             "label_embedder": draw(st.sampled_from(["table", "onehot"]))}
    if masking_path_drop(masking):  # path drop needs a routing whose dropped tokens rejoin
        model["routing"] = {"start": 1, "end": 2, "fill": "mask_token", "fuse": "concat"}
    train = {"steps": draw(st.integers(0, 10**6)), "lr": draw(st.floats(1e-7, 1.0)),
             "ema": {"decay": draw(st.floats(0.0, 0.99999))}, "precision": draw(st.sampled_from(["fp32", "bf16"]))}
    # the fields where infinity means "no limit" round-trip too (spec.json spells it "Infinity")
    top = draw(st.one_of(st.just(float("inf")), st.floats(1.0, 100.0)))
    sampler = {"name": "heun", "s_tmax": draw(st.one_of(st.none(), st.just(top))),
               "cfg_interval": draw(st.one_of(st.none(), st.tuples(st.floats(0.0, 1.0), st.just(top))))}
    return ExperimentSpec.model_validate(
        {"name": draw(RUN_NAMES), "seed": draw(st.integers(0, SEED_MAX)),
         "model": model, "masking": masking.model_dump(), "sampler": sampler, "train": train}
    )


@settings(max_examples=60, deadline=None)
@given(spec=experiment_specs())
def test_json_round_trip_is_exact(spec):
    text = spec.model_dump_json()
    again = ExperimentSpec.model_validate_json(text)
    assert again == spec
    assert again.model_dump_json() == text
    assert ExperimentSpec.model_validate(json.loads(text)) == spec


def test_specs_are_frozen():
    spec = ExperimentSpec(model=DIGITS_MODEL)
    with pytest.raises(ValidationError):
        spec.seed = 3


def test_model_is_required():
    with pytest.raises(ValidationError, match="model"):
        ExperimentSpec()


def test_preset_fills_fields_and_explicit_fields_win():
    spec = ModelSpec(preset="MaskDiT-XL/2")
    assert (spec.depth, spec.hidden_size, spec.num_heads, spec.patch_size) == (28, 1152, 16, 2)
    assert (spec.decoder_depth, spec.decoder_hidden_size, spec.decoder_num_heads) == (8, 512, 16)
    assert spec.label_embedder == "onehot" and spec.num_tokens == 256
    mine = ModelSpec(preset="DiT-B/4", depth=3)
    assert mine.depth == 3 and mine.hidden_size == 768 and mine.decoder_depth == 0 and mine.label_embedder == "table"
    assert ModelSpec.model_validate_json(mine.model_dump_json()) == mine


def test_all_preset_names():
    sizes, patches = ["S", "B", "L", "XL", "H"], [2, 4, 8]
    expected = {f"{kind}-{s}/{p}" for kind in ("DiT", "MaskDiT") for s in sizes for p in patches}
    assert expected <= set(MODEL_PRESETS)


def test_bundled_default_preset_is_valid():
    spec = load_spec("default")
    assert spec.data.name == "mnist5k" and spec.model.in_channels == 1


def test_apply_overrides_parses_json_values_and_leaves_input_alone():
    data = {"train": {"steps": 5}}
    out = apply_overrides(data, ["train.steps=7", "masking.ratio=0.25", "name=run-1", "masking.name=\"random\""])
    assert out == {"train": {"steps": 7}, "masking": {"ratio": 0.25, "name": "random"}, "name": "run-1"}
    assert data == {"train": {"steps": 5}}
