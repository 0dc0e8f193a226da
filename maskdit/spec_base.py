"""The base every spec derives from: strict (unknown fields are errors), frozen, JSON round-trippable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """Strict, immutable spec: extra fields are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
