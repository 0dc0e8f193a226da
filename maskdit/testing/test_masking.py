"""The masking contracts (maskdit.testing.masking) over every registered masking strategy, with
every registered ratio schedule, and over every ratio schedule on its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from maskdit.masking import MASKING, RATIO_SCHEDULES
from maskdit.masking.specs import masking_path_drop
from maskdit.testing.masking import check_masking_spec, check_ratio_spec, check_zero_ratio, with_ratio
from maskdit.testing.strategies import CONTRACT_SETTINGS, mask_calls, masking_specs, specs_of, takes_ratio


def _strategy_cases() -> Iterator[tuple[str, str]]:
    """(strategy, what its ratio field holds): a number and each ratio schedule, or its own value."""
    for name in MASKING.names():
        kinds = ("number", *RATIO_SCHEDULES.names()) if takes_ratio(MASKING.get(name)) else ("own",)
        for kind in kinds:
            yield name, kind


@pytest.mark.parametrize("name, ratio", list(_strategy_cases()))
@CONTRACT_SETTINGS
@given(data=st.data())
def test_masking_strategy(name: str, ratio: str, data: st.DataObject) -> None:
    spec = data.draw(masking_specs(MASKING.get(name), ratio), label="spec")
    check_masking_spec(spec, **data.draw(mask_calls(), label="call"))


@pytest.mark.parametrize("name", [name for name in MASKING.names() if takes_ratio(MASKING.get(name))])
@CONTRACT_SETTINGS
@given(data=st.data())
def test_masking_strategy_at_zero_ratio(name: str, data: st.DataObject) -> None:
    spec = with_ratio(data.draw(specs_of(MASKING.get(name)), label="spec"), 0.0)
    assume(spec is not None)
    if masking_path_drop(spec):  # path drop's own contract is test_masking_strategy's
        spec = spec.model_copy(update={"path_drop": 0.0})
    call = data.draw(mask_calls(), label="call")
    check_zero_ratio(spec.build(), batch_size=call["batch_size"], grid_hw=call["grid_hw"], seed=call["seed"])


@pytest.mark.parametrize("name", RATIO_SCHEDULES.names())
@CONTRACT_SETTINGS
@given(data=st.data())
def test_ratio_schedule(name: str, data: st.DataObject) -> None:
    spec = data.draw(specs_of(RATIO_SCHEDULES.get(name)), label="spec")
    call = data.draw(mask_calls(), label="call")
    check_ratio_spec(spec, batch_size=call["batch_size"], sigma=call["sigma"], step=call["step"], seed=call["seed"])
