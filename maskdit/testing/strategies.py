"""Hypothesis strategies for plugins' inputs and for their specs.

``specs_of(spec_class)`` draws valid specs of any plugin, built-in or a user's, from what its
class declares: each field keeps its default or takes a value inside its declared bounds
(``Field(ge=, le=)``, ``Literal``, bool, optional), and the class's JSON Schema examples
(``model_config = ConfigDict(json_schema_extra={"examples": [{...}]})``) are drawn too. A
required field of any other type needs such examples. Draws the class's own validators refuse
are rejected.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import annotated_types
import torch
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from maskdit.config.registry import registry
from maskdit.losses.inputs import LossInputs
from maskdit.masking.mask import Mask
from maskdit.testing.contract import require
from maskdit.testing.masking import with_ratio

#: the settings of the shipped contract tests: examples are small but many plugins are checked
CONTRACT_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

#: how far an unbounded number field is explored
FLOAT_SPAN = 1e3
INT_SPAN = 1000
#: the smallest value drawn for a field declared "> 0" (the checks test contracts at ordinary
#: magnitudes; how far validation bounds reach is the spec's own business)
POSITIVE_FLOOR = 1e-3

#: mask ratios for a strategy's ratio field (on the smallest grids some leave no token: the
#: strategy must then refuse the call)
ratios = st.floats(min_value=0.0, max_value=0.95, allow_nan=False)


def specs_of(spec_class: type, **fixed: Any) -> st.SearchStrategy[Any]:
    """Valid instances of a plugin spec class (``fixed``: field values to use as given).

    Raises ContractError ('testable spec') when a required field can be drawn from nothing."""
    examples = [] if fixed else _examples(spec_class)
    undrawable = [name for name, field in spec_class.model_fields.items()
                  if field.is_required() and name not in fixed and _values_of(field.annotation, field.metadata) is None]
    require(not undrawable or bool(examples), "testable spec", spec_class.__qualname__,
            lambda: f"required field(s) {', '.join(undrawable)} have no bounds to draw values from: give them "
                    "defaults, or list whole specs in model_config json_schema_extra={'examples': [...]}")
    if undrawable:
        return st.sampled_from(examples)
    drawn = _drawn_specs(spec_class, fixed)
    return st.one_of(drawn, st.sampled_from(examples)) if examples else drawn


@st.composite
def _drawn_specs(draw: st.DrawFn, spec_class: type, fixed: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for name, field in spec_class.model_fields.items():
        if name == "name" or name in fixed:
            continue
        values_of = _values_of(field.annotation, field.metadata)
        if not field.is_required():
            default = st.just(field.get_default(call_default_factory=True))
            values_of = default if values_of is None else st.one_of(default, values_of)
        values[name] = draw(values_of)  # required fields all have values_of here (see specs_of)
    try:
        return spec_class.model_validate({**values, **fixed})
    except ValidationError:
        reject()  # a combination the class's own validators refuse


def _values_of(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any] | None:
    """Values of a field's type within its bounds; None for types drawn only from defaults."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(options) != 1:
            return None
        inner = _values_of(options[0], metadata)
        return None if inner is None else st.one_of(st.none(), inner)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low, high, open_low, open_high = _bounds(metadata)
        low = -INT_SPAN if low is None else math.floor(low) + 1 if open_low else math.ceil(low)
        high = max(low, 0) + INT_SPAN if high is None else math.ceil(high) - 1 if open_high else math.floor(high)
        return st.integers(low, high) if low <= high else None
    if annotation is float:
        low, high, open_low, open_high = _bounds(metadata)
        low = -FLOAT_SPAN if low is None else low
        high = max(low, 0.0) + FLOAT_SPAN if high is None else high
        if open_low and low == 0.0 and high > POSITIVE_FLOOR:  # "> 0": typical magnitudes, not 5e-324
            low, open_low = POSITIVE_FLOOR, False
        return st.floats(low, high, exclude_min=open_low, exclude_max=open_high, allow_nan=False,
                         allow_infinity=False, allow_subnormal=False)
    return None


def _bounds(metadata: list[Any]) -> tuple[float | None, float | None, bool, bool]:
    """(low, high, low excluded, high excluded) from a field's annotated-types metadata."""
    low = high = None
    open_low = open_high = False
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low, open_low = float(item.ge), False
        elif isinstance(item, annotated_types.Gt):
            low, open_low = float(item.gt), True
        elif isinstance(item, annotated_types.Le):
            high, open_high = float(item.le), False
        elif isinstance(item, annotated_types.Lt):
            high, open_high = float(item.lt), True
    return low, high, open_low, open_high


def _examples(spec_class: type) -> list[Any]:
    extra = spec_class.model_config.get("json_schema_extra")
    listed = extra.get("examples", []) if isinstance(extra, dict) else []
    return [spec_class.model_validate(example) for example in listed]


def takes_ratio(spec_class: type) -> bool:
    """Whether a masking strategy's spec has a ``ratio`` field (then every schedule must fit it)."""
    return "ratio" in spec_class.model_fields


@st.composite
def mask_calls(draw: st.DrawFn, *, max_side: int = 12, max_batch: int = 5) -> dict[str, Any]:
    """The arguments of a masking strategy call: batch_size, grid_hw, sigma [B] (log-sigma in
    [-7, 5], EDM's range and beyond), step and a generator seed."""
    batch = draw(st.integers(1, max_batch), label="batch_size")
    grid = (draw(st.integers(1, max_side), label="height"), draw(st.integers(1, max_side), label="width"))
    log_sigma = draw(st.lists(st.floats(-7.0, 5.0), min_size=batch, max_size=batch), label="log_sigma")
    return {
        "batch_size": batch,
        "grid_hw": grid,
        "sigma": torch.tensor(log_sigma, dtype=torch.float64).exp(),
        "step": draw(st.integers(0, 2000), label="step"),
        "seed": draw(st.integers(0, 2**32 - 1), label="seed"),
    }


@st.composite
def masks(draw: st.DrawFn, *, batch_size: int | None = None, num_tokens: int | None = None) -> Mask:
    """A Mask from random per-sample orders, keeping 1..L tokens."""
    batch = batch_size if batch_size is not None else draw(st.integers(1, 4), label="batch_size")
    length = num_tokens if num_tokens is not None else draw(st.integers(1, 16), label="num_tokens")
    kept = draw(st.integers(1, length), label="kept")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    return Mask.from_order(torch.argsort(torch.rand(batch, length, generator=gen), dim=1), kept)


@st.composite
def loss_inputs(draw: st.DrawFn, *, dtype: torch.dtype = torch.float64, masked: bool = True) -> LossInputs:
    """A batch as a loss term sees it: y, noisy, denoised [B, C, H, W] standard normal, sigma [B]
    in [0.05, 5.05), and (``masked``) a Mask dropping 1 <= L - K < L tokens of the patch grid.
    Every patch holds >= 2 values (a per-patch normalisation is defined)."""
    batch, channels = draw(st.integers(1, 3), label="batch"), draw(st.integers(1, 3), label="channels")
    patch = draw(st.sampled_from([1, 2, 3] if channels > 1 else [2, 3]), label="patch")
    grid_h, grid_w = draw(st.integers(1, 3), label="grid_h"), draw(st.integers(2, 3), label="grid_w")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    tokens = grid_h * grid_w
    mask = None
    if masked:
        kept = draw(st.integers(1, tokens - 1), label="kept")
        mask = Mask.from_order(torch.argsort(torch.rand(batch, tokens, generator=gen), dim=1), kept)
    shape = (batch, channels, grid_h * patch, grid_w * patch)
    y, noisy, denoised = (torch.randn(shape, generator=gen, dtype=dtype) for _ in range(3))
    sigma = torch.rand(batch, generator=gen, dtype=dtype) * 5 + 0.05
    return LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=denoised, mask=mask, patch_size=patch)


@st.composite
def masking_specs(draw: st.DrawFn, spec_class: type, ratio: str) -> Any:
    """Specs of a masking strategy whose ``ratio`` field holds a drawn number (``ratio="number"``),
    a drawn spec of the registered ratio schedule named ``ratio``, or its own value (``"own"``).

    Raises ContractError('takes a ratio schedule') when the field refuses a schedule."""
    spec = draw(specs_of(spec_class), label="spec")
    if ratio == "own":
        return spec
    value = draw(ratios, label="ratio") if ratio == "number" else draw(specs_of(registry("ratio").get(ratio)),
                                                                      label="ratio")
    spec = with_ratio(spec, value)
    if spec is None:
        reject()  # a value the spec refuses for reasons of its own
    return spec
