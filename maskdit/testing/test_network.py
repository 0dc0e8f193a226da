"""The network contracts (maskdit.testing.network) over every registered block and label embedder."""

from __future__ import annotations

import pytest

from maskdit.core import BLOCKS, LABEL_EMBEDDERS
from maskdit.testing.network import check_block_spec, check_label_embedder_spec


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block(name: str) -> None:
    check_block_spec(BLOCKS.get(name)())


@pytest.mark.parametrize("name", LABEL_EMBEDDERS.names())
def test_label_embedder(name: str) -> None:
    check_label_embedder_spec(LABEL_EMBEDDERS.get(name)())
