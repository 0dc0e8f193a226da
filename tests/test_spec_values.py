"""Validated means runnable: every float of every spec refuses NaN and the infinities, except the
fields where +infinity means "no limit", which round-trip through spec.json; seeds are bounded to
the 32 bits torch's generators use.

The spec classes come from the registries and the spec base class, not from a list here, so a
new spec (or a plugin's, once registered) is checked without anyone adding it."""

import json
import math
import types
import typing

import pytest
import torch
from pydantic import ValidationError

import maskdit  # noqa: F401 - registers every built-in plugin and imports every section spec
import maskdit.data.shards  # noqa: F401 - the latent manifest's records are specs too
from maskdit.app.commands.build import main as build_main
from maskdit.app.experiment_spec import ExperimentSpec, load_spec
from maskdit.config.registry import PLUGINS
from maskdit.config.spec_model import SEED_MAX, SpecModel
from maskdit.core import ModelSpec
from maskdit.losses.dsm import edm_weight
from maskdit.losses.specs import DSMSpec
from maskdit.samplers.specs import HeunSamplerSpec

BAD_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def spec_classes() -> list[type]:
    """Every registered plugin spec and every SpecModel defined in maskdit (sections, nested parts)."""
    found = {cls for cls in _subclasses(SpecModel) if cls.__module__.startswith("maskdit.")}
    for kind in PLUGINS.kinds():
        found |= set(PLUGINS[kind].members())
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


def _float_slots(annotation, where=()):
    """Where a float sits inside a field's annotation: () for the field itself, (i,) for tuple item
    i, ("number",) for the plain-number alternative of a plugin field."""
    origin = typing.get_origin(annotation)
    if annotation is float:
        yield where
    elif origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        yield from _float_slots(inner, where)
        for item in metadata:
            if getattr(item, "number", None) is not None:  # one_of(kind, number=...): a number or a plugin
                yield from _float_slots(item.number, where + ("number",))
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _float_slots(arg, where)
    elif origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            yield from _float_slots(args[0], where + (0,))
        else:
            for index, arg in enumerate(args):
                yield from _float_slots(arg, where + (index,))


def float_fields() -> list[tuple[type, str, tuple]]:
    slots = []
    for cls in spec_classes():
        for name, field in cls.model_fields.items():
            annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            for slot in dict.fromkeys(_float_slots(annotation)):
                slots.append((cls, name, slot))
    return slots


def _tuple_length(annotation) -> int:
    """Items of the fixed-length tuple inside an annotation (1 for ``tuple[X, ...]``)."""
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        return 1 if args[-1] is Ellipsis else len(args)
    return max((_tuple_length(arg) for arg in typing.get_args(annotation)), default=0)


def _input(cls, name, slot, value):
    """The spec input with ``value`` at ``slot`` of field ``name``; other tuple items a plain 0.5."""
    if slot and isinstance(slot[0], int):
        items = [0.5] * _tuple_length(cls.model_fields[name].annotation)
        items[slot[0]] = value
        return {name: items}
    return {name: value}


def _slot_errors(cls, data, name, slot):
    """The validation errors at exactly that float (others, e.g. missing required fields, ignored)."""
    try:
        cls.model_validate(data)
    except ValidationError as err:
        return [problem for problem in err.errors() if problem["loc"] == (name, *slot)]
    return []


FLOAT_FIELDS = float_fields()


def test_the_spec_classes_are_found_from_the_registries():
    names = {cls.__name__ for cls in spec_classes()}
    assert {"HeunSamplerSpec", "AdamWSpec", "ModelSpec", "ExperimentSpec", "SigmaRatioSpec", "DSMSpec"} <= names
    assert len(FLOAT_FIELDS) >= 60  # every float of every spec, not a sample


@pytest.mark.parametrize("spelling", sorted(BAD_FLOATS))
@pytest.mark.parametrize("cls,name,slot", FLOAT_FIELDS,
                         ids=[f"{c.__qualname__}.{n}{''.join(f'[{s}]' for s in slot)}" for c, n, slot in FLOAT_FIELDS])
def test_every_float_refuses_nan_and_infinity_or_means_and_keeps_it(cls, name, slot, spelling):
    value = BAD_FLOATS[spelling]
    if _slot_errors(cls, _input(cls, name, slot, value), name, slot):
        return  # refused by the float's own check, not only by a cross-field one
    # accepted: only +infinity, only where the field says what it means, and it must round-trip
    assert value == math.inf, f"{cls.__qualname__}.{name} accepts {spelling}"
    assert "Infinity" in (cls.model_fields[name].description or ""), f"{cls.__qualname__}.{name} must say so"
    spec = cls.model_validate(_input(cls, name, slot, value))
    assert cls.model_validate_json(spec.model_dump_json()) == spec
    strict_json = json.dumps(spec.model_dump(mode="json"), allow_nan=False)  # what state.json holds
    assert cls.model_validate(json.loads(strict_json)) == spec


@pytest.mark.parametrize("override", ["sampler.s_tmin=Infinity", "sampler.s_churn=NaN", "train.grad_clip=1e999",
                                      "sampler.cfg_interval=[NaN, 1]", "train.optimizer.betas=[0.9, NaN]"])
def test_build_refuses_non_finite_values_in_one_line(override, capsys):
    # s_tmin=Infinity used to pass --dry-run, train fully, then die sampling with a traceback
    assert build_main(["default", "--dry-run", "--set", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {override.split('=')[0]}")
    assert "finite" in lines[0] or "NaN" in lines[0]


def test_build_accepts_an_infinite_guidance_interval_and_the_run_resumes_from_its_spec_json(tmp_path, capsys):
    # spec.json used to store null for the infinity, so the printed resume command failed
    tiny = {
        "name": "inf", "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 16,
                                 "num_heads": 1, "decoder_depth": 0, "num_classes": 10},
        "masking": {"name": "none"}, "sampler": {"name": "heun", "steps": 2, "s_churn": 1.0},
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 2}, "eval": {"num_samples": 0},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny))
    infinite = ["--set", "sampler.cfg_interval=[0, Infinity]", "--set", "sampler.s_tmax=Infinity"]
    assert build_main([str(path), "--dry-run", *infinite]) == 0
    assert build_main([str(path), "--runs", str(tmp_path / "runs"), *infinite]) == 0
    saved = tmp_path / "runs" / "inf" / "spec.json"
    assert json.loads(saved.read_text())["sampler"]["cfg_interval"] == [0.0, "Infinity"]
    spec = load_spec(str(saved))
    assert spec.sampler.cfg_interval == (0.0, math.inf) and spec.sampler.s_tmax == math.inf
    capsys.readouterr()
    assert build_main([str(saved), "--runs", str(tmp_path / "runs"), "--resume", "--set", "train.steps=3"]) == 0
    assert "resuming from step 2" in capsys.readouterr().err


def test_infinity_means_no_limit_only_upwards():
    assert HeunSamplerSpec(s_tmax="Infinity").s_tmax == math.inf
    assert HeunSamplerSpec(cfg_interval=(1.0, "inf")).cfg_interval == (1.0, math.inf)
    for bad in ({"s_tmax": "-Infinity"}, {"s_tmax": "NaN"}, {"cfg_interval": ("Infinity", "Infinity")}):
        with pytest.raises(ValidationError):
            HeunSamplerSpec(**bad)


def test_torch_keeps_only_32_bits_of_a_seed():
    """Why seeds stop at 2**32 - 1: a larger one repeats a smaller one."""
    def draw(seed):
        return torch.randn(4, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(0), draw(2**32)) and not torch.equal(draw(0), draw(1))


def test_spec_seeds_are_bounded_to_32_bits(capsys):
    assert SEED_MAX == 2**32 - 1
    data = load_spec("default").model_dump(mode="json")
    assert ExperimentSpec.model_validate({**data, "seed": SEED_MAX}).seed == SEED_MAX
    with pytest.raises(ValidationError, match="less than or equal to 4294967295"):
        ExperimentSpec.model_validate({**data, "seed": 2**32})  # it used to train seed 0's run again
    assert build_main(["default", "--dry-run", "--set", f"seed={2**32}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: seed: Input should be less than or equal to 4294967295")


def test_a_tiny_sigma_data_is_refused_where_it_would_overflow_edms_weights():
    for cls in (DSMSpec, ModelSpec):
        with pytest.raises(ValidationError, match="sigma_data"):
            cls(sigma_data=5e-324)
    weight = edm_weight(torch.tensor([0.002, 80.0]), sigma_data=1e-4)  # the smallest accepted
    assert torch.isfinite(weight).all()
