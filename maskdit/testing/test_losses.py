"""The loss-term contracts (maskdit.testing.losses) over every registered loss term."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maskdit.losses import LOSS_TERMS
from maskdit.testing.losses import check_loss_spec
from maskdit.testing.strategies import CONTRACT_SETTINGS, loss_inputs, specs_of


@pytest.mark.parametrize("name", LOSS_TERMS.names())
@CONTRACT_SETTINGS
@given(data=st.data())
def test_loss_term(name: str, data: st.DataObject) -> None:
    spec = data.draw(specs_of(LOSS_TERMS.get(name)), label="spec")
    inputs = data.draw(loss_inputs(masked=data.draw(st.booleans(), label="masked")), label="inputs")
    check_loss_spec(spec, inputs)
