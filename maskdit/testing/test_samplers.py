"""The sampler contracts (maskdit.testing.samplers) over every registered sampler and sigma schedule."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from maskdit.samplers import SAMPLERS, SIGMA_SCHEDULES
from maskdit.testing.contract import check_spec_round_trip
from maskdit.testing.samplers import (
    check_input_checks,
    check_pure_function,
    check_ready_sampler,
    check_sigma_schedule,
    check_steps,
)
from maskdit.testing.strategies import CONTRACT_SETTINGS, specs_of

SMALL = settings(CONTRACT_SETTINGS, max_examples=10)  # each example runs a whole sampler


@pytest.mark.parametrize("name", SIGMA_SCHEDULES.names())
@SMALL
@given(data=st.data())
def test_sigma_schedule(name: str, data: st.DataObject) -> None:
    made = check_sigma_schedule(data.draw(specs_of(SIGMA_SCHEDULES.get(name)), label="spec"),
                                steps=data.draw(st.integers(1, 12), label="steps"))
    assume(made)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_is_a_pure_function(name: str) -> None:
    spec = SAMPLERS.get(name)()
    check_pure_function(spec.sample_function(), subject=f"sampler {name!r}")


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_steps(name: str) -> None:
    check_steps(SAMPLERS.get(name)().sample_function(), subject=f"sampler {name!r}")


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_input_checks(name: str) -> None:
    check_input_checks(SAMPLERS.get(name)().sample_function(), subject=f"sampler {name!r}")


@pytest.mark.parametrize("name", SAMPLERS.names())
@SMALL
@given(data=st.data())
def test_ready_sampler(name: str, data: st.DataObject) -> None:
    check_ready_sampler(data.draw(specs_of(SAMPLERS.get(name), steps=4, cfg_scale=1.0), label="spec"))
    check_spec_round_trip(SAMPLERS.get(name)(cfg_scale=1.5, cfg_interval=(0.2, 3.0)))
