"""What every check shares: the error naming the broken contract, and the checks that apply to
plugins of every kind (the spec round trip, randomness only from the generator passed in)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class ContractError(AssertionError):
    """A plugin broke one of the contracts maskdit's parts rely on.

    An AssertionError, so pytest reports it as a failed check; ``contract`` is the short name of
    the rule (it also starts the message) and ``subject`` says what broke it."""

    def __init__(self, contract: str, subject: str, detail: str) -> None:
        super().__init__(f"contract {contract!r} broken by {subject}: {detail}")
        self.contract = contract
        self.subject = subject
        self.detail = detail


def require(condition: bool, contract: str, subject: str, detail: str | Callable[[], str]) -> None:
    """Raise ContractError(contract, subject, detail) unless ``condition``; a callable detail is
    only formatted on failure."""
    if not condition:
        raise ContractError(contract, subject, detail() if callable(detail) else detail)


def describe(obj: Any) -> str:
    """How a checked object is named in errors: a spec by its kind and name, else its repr."""
    name = getattr(obj, "name", None)
    if isinstance(name, str) and hasattr(type(obj), "model_fields"):
        return f"{type(obj).__module__}.{type(obj).__qualname__} (name {name!r})"
    return repr(obj)


def describe_value(value: object) -> str:
    """A returned value in errors: a tensor by dtype and shape, anything else by its type."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def check_spec_round_trip(spec: Any) -> None:
    """Contract 'spec round trip': a spec written as JSON reads back equal (spec.json is enough to
    rebuild a run)."""
    subject = describe(spec)
    try:
        again = type(spec).model_validate_json(spec.model_dump_json())
    except Exception as err:  # any failure to read its own JSON back is the broken contract
        raise ContractError("spec round trip", subject, f"its JSON does not read back: {err}") from err
    require(again == spec, "spec round trip", subject,
            lambda: f"{spec.model_dump_json()} reads back as {again.model_dump_json()}")


def seeded(seed: int) -> torch.Generator:
    """A fresh CPU generator in the state ``seed`` gives."""
    return torch.Generator().manual_seed(seed)


@contextmanager
def generator_only(subject: str) -> Iterator[None]:
    """Contract 'randomness from the generator': the block draws nothing from torch's global RNG
    (library code gets its randomness passed in)."""
    before = torch.random.get_rng_state()
    yield
    require(torch.equal(before, torch.random.get_rng_state()), "randomness from the generator", subject,
            "it drew from torch's global RNG; draw from the generator passed in")


def call_twice(subject: str, call: Callable[[int], T], seed: int) -> tuple[T, T]:
    """``call(seed)`` twice, each under :func:`generator_only`: the two results, for a
    determinism comparison by the caller."""
    with generator_only(subject):
        first = call(seed)
    with generator_only(subject):
        second = call(seed)
    return first, second
