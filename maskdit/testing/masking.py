"""Contracts of masking strategies and of the mask-ratio schedules they consult.

A strategy ``strategy(batch_size, grid_hw, *, sigma=None, step=None, generator=None) -> Mask``:

- returns a Mask, or for per-sample kept counts groups of Masks, that satisfy the Mask
  contract (:mod:`maskdit.testing.masks`);
- 'kept count': keeps int(L * (1 - r)) tokens at ratio r (when r is known: a number, or what a
  ``MaskingStrategy``'s schedule answers), and never drops more than its spec's largest ratio
  (``maskdit.masking.specs.masking_max_ratio``: what FLOP counts and checks rely on);
- 'refuses a ratio that leaves no token': raises ValueError exactly when the ratio leaves no
  visible token (and for no other valid input);
- 'determinism' and 'randomness from the generator': the same seed gives the same Mask, and
  nothing is drawn from torch's global RNG;
- 'zero ratio is identity': at ratio 0 every token is kept, in grid order;
- 'takes a ratio schedule': a spec with a ``ratio`` field accepts every registered ratio
  schedule (type it ``maskdit.masking.specs.RatioSpec``), as well as a plain number;
- 'path drop': a spec with ``path_drop`` p > 0 meets every contract above with p = 0, and with p
  each sample either keeps exactly what it keeps at p = 0 (same generator) or nothing at all.

A ratio schedule ``schedule(*, step=None, sigma=None, generator=None)``: 'max_ratio' (its spec
and the built schedule have a ``max_ratio`` in [0, 1), the same), 'ratio values' (a float, or
one per sample, each finite in [0, max_ratio]), determinism and randomness from the generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import ValidationError

from maskdit.masking.mask import Mask
from maskdit.masking.specs import build_ratio_schedule, masking_max_ratio, masking_path_drop, max_ratio
from maskdit.masking.strategies import MaskingStrategy
from maskdit.testing.contract import (
    ContractError,
    call_twice,
    check_spec_round_trip,
    describe,
    require,
    seeded,
)
from maskdit.testing.masks import check_call_result, check_mask


def with_ratio(spec: Any, ratio: Any) -> Any | None:
    """``spec`` with its ``ratio`` field set to ``ratio`` (a number or a ratio schedule spec);
    None when the spec refuses that value for reasons of its own (e.g. a cross-field check).

    Raises ContractError('takes a ratio schedule') when it refuses a schedule but takes the
    schedule's largest ratio as a plain number."""
    cls = type(spec)
    data = {**spec.model_dump(), "ratio": ratio if isinstance(ratio, (int, float)) else ratio.model_dump()}
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        if isinstance(ratio, (int, float)):
            return None
        try:
            cls.model_validate({**data, "ratio": max_ratio(ratio)})
        except ValidationError:
            return None
        reason = err.errors()[0]["msg"] if err.errors() else str(err)
        raise ContractError("takes a ratio schedule", describe(spec),
                            f"its ratio field refuses the schedule {ratio.model_dump()} ({reason}); type it "
                            "maskdit.masking.specs.RatioSpec (a number or any ratio schedule)") from None


def check_masking_spec(spec: Any, *, batch_size: int, grid_hw: tuple[int, int], sigma: torch.Tensor | None = None,
                       step: int | None = None, seed: int = 0) -> Any:
    """Every contract of a masking strategy, on the strategy ``spec`` builds called once (twice,
    for determinism) with these arguments. Returns what the call returned (None: it refused)."""
    if masking_path_drop(spec) > 0:
        return check_path_drop_spec(spec, batch_size=batch_size, grid_hw=grid_hw, sigma=sigma, step=step, seed=seed)
    check_spec_round_trip(spec)
    strategy = spec.build()
    bound = masking_max_ratio(spec)
    own = getattr(strategy, "max_ratio", None)
    require(own is None or math.isclose(float(own), bound, abs_tol=1e-12), "max_ratio", describe(spec),
            lambda: f"the spec's largest ratio is {bound} but the strategy it builds says {own}")
    ratio = getattr(spec, "ratio", None)
    return check_masking_strategy(strategy, batch_size=batch_size, grid_hw=grid_hw, sigma=sigma, step=step, seed=seed,
                                  max_ratio=bound, ratio=ratio if isinstance(ratio, (int, float)) else None,
                                  subject=describe(spec))


def check_path_drop_spec(spec: Any, *, batch_size: int, grid_hw: tuple[int, int], sigma: torch.Tensor | None = None,
                         step: int | None = None, seed: int = 0) -> Any:
    """Contract 'path drop' of a spec with ``path_drop`` > 0 (and every other contract at 0).
    Returns what the call with path drop returned (None: it refused)."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    plain = check_masking_spec(spec.model_copy(update={"path_drop": 0.0}), batch_size=batch_size, grid_hw=grid_hw,
                               sigma=sigma, step=step, seed=seed)
    strategy = spec.build()

    def call(seed: int) -> Any:
        return strategy(batch_size, grid_hw, sigma=sigma, step=step, generator=seeded(seed))

    try:
        first, second = call_twice(subject, call, seed)
    except ValueError as err:
        require(plain is None, "path drop", subject, lambda: f"it raised ValueError only with path drop: {err}")
        return None
    require(plain is not None, "path drop", subject, "it refuses the call without path drop but not with it")
    length = grid_hw[0] * grid_hw[1]
    kept = check_call_result(first, batch_size=batch_size, num_tokens=length, subject=subject)
    dropped, alone = _dropped(first), _dropped(plain)
    for row, count in enumerate(kept):
        require(torch.equal(dropped[row], alone[row]) or count == 0, "path drop", subject,
                lambda: f"sample {row} keeps {count} tokens that differ from the {length - int(alone[row].sum())} "
                        "it keeps without path drop: a sample keeps its mask or nothing")
    require(_same(first, second), "determinism", subject, "two calls with generators seeded alike gave different masks")
    return first


def _dropped(result: Any) -> torch.Tensor:
    """[B, L] bool, each sample's dropped positions in batch order, of a Mask or groups of Masks."""
    if isinstance(result, Mask):
        return result.dropped.cpu()
    parts = list(zip(result.members, result.groups))
    out = torch.zeros(sum(mask.batch_size for _, mask in parts), parts[0][1].num_tokens, dtype=torch.bool)
    for rows, mask in parts:
        out[torch.as_tensor(rows).cpu()] = mask.dropped.cpu()
    return out


def check_masking_strategy(strategy: Any, *, batch_size: int, grid_hw: tuple[int, int],
                           sigma: torch.Tensor | None = None, step: int | None = None, seed: int = 0,
                           max_ratio: float, ratio: float | None = None, subject: str | None = None) -> Any:
    """The strategy's contracts on one call: ``max_ratio`` is the largest ratio it may drop,
    ``ratio`` the exact one when known. Returns what the call returned: a Mask, or groups of
    Masks for per-sample counts (None when it refused the ratio)."""
    subject = subject or describe(strategy)
    length = grid_hw[0] * grid_hw[1]
    expected = _expected_kept(strategy, batch_size, length, ratio, sigma, step, seed)
    lowest = int(length * (1.0 - max_ratio))  # fewest tokens kept at the largest ratio

    def call(seed: int) -> Any:
        return strategy(batch_size, grid_hw, sigma=sigma, step=step, generator=seeded(seed))

    must_refuse = expected is not None and min(expected) == 0
    try:
        first, second = call_twice(subject, call, seed)
    except ValueError as err:
        require(must_refuse or (expected is None and lowest < 1), "refuses a ratio that leaves no token", subject,
                lambda: f"it raised ValueError for a valid call ({batch_size}, {grid_hw}, step={step}): {err}")
        return None
    require(not must_refuse, "refuses a ratio that leaves no token", subject,
            lambda: f"its ratio leaves no token of {length} visible (kept counts {expected}), yet it returned a "
                    "mask instead of raising ValueError")
    kept = check_call_result(first, batch_size=batch_size, num_tokens=length, subject=subject)
    require(expected is None or kept == expected, "kept count", subject,
            lambda: f"its samples keep {kept} of {length} tokens; the ratio asks for int(L * (1 - r)) = {expected}")
    require(min(kept) >= lowest, "kept count", subject,
            lambda: f"keeps {min(kept)} of {length} tokens, below the {lowest} its largest ratio {max_ratio} allows")
    require(_same(first, second), "determinism", subject, "two calls with generators seeded alike gave different masks")
    return first


def check_zero_ratio(strategy: Any, *, batch_size: int, grid_hw: tuple[int, int], seed: int = 0,
                     subject: str | None = None) -> None:
    """Contract 'zero ratio is identity', for a strategy built with ratio 0 (called without sigma
    or step, as at inference)."""
    subject = subject or describe(strategy)
    mask = strategy(batch_size, grid_hw, generator=seeded(seed))
    length = grid_hw[0] * grid_hw[1]
    require(isinstance(mask, Mask), "zero ratio is identity", subject,
            lambda: f"at ratio 0 it must return one Mask, got {type(mask).__name__}")
    check_mask(mask, batch_size=batch_size, num_tokens=length, subject=subject)
    grid = torch.arange(length, device=mask.ids_keep.device).expand(batch_size, -1)
    require(mask.is_identity and torch.equal(mask.ids_keep, grid), "zero ratio is identity", subject,
            lambda: f"at ratio 0 it keeps {mask.num_kept} of {length} tokens in the order {mask.ids_keep[0].tolist()}")


def _expected_kept(strategy: Any, batch_size: int, length: int, ratio: float | None, sigma: torch.Tensor | None,
                   step: int | None, seed: int) -> list[int] | None:
    """The tokens each sample must keep (a 0: the call must refuse), or None when that is not
    known: from a number ratio, or from what a MaskingStrategy's schedule answers (one ratio, or
    one per sample) for a generator in the state the strategy will see it in."""
    answer: Any = ratio
    if ratio is None and isinstance(strategy, MaskingStrategy):
        try:
            answer = strategy.schedule(step=step, sigma=sigma, generator=seeded(seed))
        except ValueError:
            return None  # the strategy must then refuse the call too: checked as a refusal
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        ratios = [float(answer)] * batch_size
    elif isinstance(answer, torch.Tensor) and answer.shape == (batch_size,):
        ratios = answer.detach().to("cpu", torch.float64).tolist()
    else:
        return None
    return [max(int(length * (1.0 - r)), 0) for r in ratios]


def _same(first: Any, second: Any) -> bool:
    """Two call results equal: the same Masks for the same rows."""
    pairs = list(zip(_parts(first), _parts(second)))
    return len(pairs) == len(_parts(first)) == len(_parts(second)) and all(
        torch.equal(a, b) for one, two in pairs for a, b in zip(one, two))


def _parts(result: Any) -> list[tuple[torch.Tensor, ...]]:
    if isinstance(result, Mask):
        return [(result.ids_keep, result.ids_restore, result.dropped)]
    return [(rows, mask.ids_keep, mask.ids_restore, mask.dropped)
            for rows, mask in zip(getattr(result, "members", ()), getattr(result, "groups", ()))]


def check_ratio_spec(spec: Any, *, batch_size: int, sigma: torch.Tensor, step: int, seed: int = 0) -> None:
    """Every contract of a ratio schedule, on the schedule ``spec`` builds."""
    subject = describe(spec)
    check_spec_round_trip(spec)
    declared = getattr(spec, "max_ratio", None)
    require(isinstance(declared, (int, float)) and not isinstance(declared, bool), "max_ratio", subject,
            "a ratio schedule's spec needs a max_ratio property (the largest ratio it can give)")
    schedule = build_ratio_schedule(spec)
    check_ratio_schedule(schedule, batch_size=batch_size, sigma=sigma, step=step, seed=seed, subject=subject)
    require(math.isclose(float(schedule.max_ratio), float(declared), abs_tol=1e-12), "max_ratio", subject,
            lambda: f"the spec says max_ratio {declared}, the schedule it builds {schedule.max_ratio}")


def check_ratio_schedule(schedule: Any, *, batch_size: int, sigma: torch.Tensor, step: int, seed: int = 0,
                         subject: str | None = None) -> None:
    """A built schedule's contracts on one call with ``step``, ``sigma`` [B] and a seeded generator."""
    subject = subject or describe(schedule)
    largest = getattr(schedule, "max_ratio", None)
    require(isinstance(largest, (int, float)) and not isinstance(largest, bool) and 0.0 <= largest < 1.0,
            "max_ratio", subject, lambda: f"max_ratio must be a number in [0, 1), got {largest!r}")
    first, second = call_twice(subject, lambda s: schedule(step=step, sigma=sigma, generator=seeded(s)), seed)
    values = _ratio_values(first, batch_size, subject)
    require(bool(torch.isfinite(values).all()) and bool((values >= 0).all())
            and bool((values <= largest + 1e-12).all()), "ratio values", subject,
            lambda: f"gave {values.tolist()}, outside [0, max_ratio = {largest}]")
    require(torch.equal(values, _ratio_values(second, batch_size, subject)), "determinism", subject,
            "two calls with generators seeded alike gave different ratios")


def _ratio_values(answer: Any, batch_size: int, subject: str) -> torch.Tensor:
    """A schedule's answer as float64 values: one number, or one per sample."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return torch.tensor([float(answer)], dtype=torch.float64)
    ok = isinstance(answer, torch.Tensor) and answer.is_floating_point() and answer.numel() in (1, batch_size)
    require(ok, "ratio values", subject,
            lambda: f"a ratio schedule returns a float or a float tensor of one ratio per sample [B={batch_size}], "
                    f"got {answer!r}")
    return answer.detach().to(torch.float64).flatten().cpu()
