"""The base every spec derives from: strict (unknown fields are errors), frozen, JSON round-trippable."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from maskdit.config.registry import PLUGINS


class SpecModel(BaseModel):
    """Strict, immutable spec: extra fields are rejected, values are validated on assignment.

    A JSON ``true`` / ``false`` is accepted only where the field holds a boolean: pydantic's lax
    mode would read ``"steps": true`` as 1 step and ``false`` as 0."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

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
