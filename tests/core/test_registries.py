"""Contract tests over every registered block / label embedder (built-in or plugin)."""

import pytest
import torch
from pydantic import ValidationError

from maskdit.core import BLOCKS, LABEL_EMBEDDERS, ModelSpec


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_contract(name):
    block = BLOCKS.build(name)(16, 2, cond_dim=8, mlp_ratio=2.0, qk_norm=False)
    block.init_weights(torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(block(x, torch.randn(2, 8)), x)  # adaLN-Zero: identity at init


@pytest.mark.parametrize("name", LABEL_EMBEDDERS.names())
def test_label_embedder_contract(name):
    embedder = LABEL_EMBEDDERS.build(name)(10, 16)
    embedder.init_weights(torch.Generator().manual_seed(0))
    assert embedder(torch.tensor([0, 3, 10])).shape == (3, 16)  # 10: the null label
    assert ModelSpec(label_embedder=name).label_embedder == name


def test_unknown_block_names_the_registered_ones():
    with pytest.raises(ValidationError, match="'dit'"):
        ModelSpec(block="vit")
