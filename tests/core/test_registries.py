"""Every block / label-embedder name in the spec is registered, and vice versa."""

import typing

from maskdit.core import BLOCKS, LABEL_EMBEDDERS, ModelSpec


def _literal(field):
    return set(typing.get_args(ModelSpec.model_fields[field].annotation))


def test_registries_match_spec_literals():
    assert set(BLOCKS.names()) == _literal("block") == {"dit"}
    assert set(LABEL_EMBEDDERS.names()) == _literal("label_embedder") == {"table", "onehot"}


def test_block_contract():
    import torch

    for name in BLOCKS:
        block = BLOCKS.get(name)(16, 2, cond_dim=8, mlp_ratio=2.0, qk_norm=False)
        block.init_weights(torch.Generator().manual_seed(0))
        x = torch.randn(2, 5, 16)
        torch.testing.assert_close(block(x, torch.randn(2, 8)), x)  # adaLN-Zero: identity at init
