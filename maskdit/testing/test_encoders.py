"""The encoder contracts (maskdit.testing.encoders) over every registered encoder, with random weights."""

from __future__ import annotations

import pytest

from maskdit.encoders import ENCODERS
from maskdit.testing.encoders import check_encoder_spec, contract_spec


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder(name: str) -> None:
    try:
        check_encoder_spec(contract_spec(ENCODERS.get(name)))
    except ImportError as err:  # an optional dependency it needs is not installed (timm for dinov2)
        pytest.skip(str(err))
