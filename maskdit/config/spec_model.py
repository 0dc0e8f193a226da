"""The base every spec derives from: strict (unknown fields are errors), frozen, JSON round-trippable.

Floats are finite: NaN and the infinities are refused in every float of every spec (a value that
passes validation must run). A field where infinity means something ("no upper limit") declares
it with :data:`FloatOrInfinity`; since JSON has no infinity, such a value is written to JSON as
the string ``"Infinity"`` and reads back from it, so a saved spec.json rebuilds the same run.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from maskdit.config.registry import PLUGINS


class SpecModel(BaseModel):
    """Strict, immutable spec: extra fields are rejected, values are validated on assignment.

    A JSON ``true`` / ``false`` is accepted only where the field holds a boolean: pydantic's lax
    mode would read ``"steps": true`` as 1 step and ``false`` as 0. Floats must be finite
    (``allow_inf_nan=False``), except where a field is declared :data:`FloatOrInfinity`."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        PLUGINS.track(cls)  # a spec referring to a plugin kind is rebuilt when the kind gains a member

    @model_validator(mode="before")
    @classmethod
    def _booleans_only_for_booleans(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        bad = [key for key, value in data.items() if isinstance(value, bool) and key in fields
               and _numeric(fields[key].annotation) and not _accepts_bool(fields[key].annotation)]
        if not bad:
            return data
        return {key: _Boolean(value) if key in bad else value for key, value in data.items()}


#: the JSON spelling of +infinity in a spec (what Python's json writes bare, as a string)
INFINITY = "Infinity"


def _plus_infinity_only(value: float) -> float:
    if math.isnan(value) or value == -math.inf:
        raise ValueError(f"expected a number or {INFINITY!r} (meaning no limit), not {value}")
    return value


def _infinity_as_string(value: float) -> float | str:
    return INFINITY if value == math.inf else value


class _InfinityInSchema:
    """JSON Schema: the number as declared, or the string "Infinity"."""

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"anyOf": [handler(schema), {"const": INFINITY}]}


#: A float field where +infinity means "no limit" (EDM's S_tmax, the top of a guidance interval).
#: NaN and -infinity stay errors. In JSON the value is the string "Infinity" (also read: Python's
#: bare ``Infinity`` and ``1e999``, and "inf"); spec.json stores "Infinity", so it round-trips.
FloatOrInfinity = Annotated[
    float,
    AllowInfNan(True),
    AfterValidator(_plus_infinity_only),
    PlainSerializer(_infinity_as_string, return_type=float | str, when_used="json"),
    _InfinityInSchema(),
]


#: The largest seed: torch's CPU generator keeps only the low 32 bits of a seed (seeds 0 and 2**32
#: draw the same numbers), so seeds are bounded to [0, 2**32 - 1], where distinct seeds differ.
SEED_MAX = 2**32 - 1

#: a seed field: an int in [0, SEED_MAX]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class _Boolean:
    """Stands in for a boolean given to a numeric field, so the field's own type check fails there
    (naming the field path) and the error shows the JSON spelling."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"


def _args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return (typing.get_args(annotation)[0],)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return ()


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in _args(annotation))


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(annotation))
    return any(_accepts_bool(arg) for arg in _args(annotation))
