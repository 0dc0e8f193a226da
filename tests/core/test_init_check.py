"""Plugins checked, not trusted: a parameter or buffer that init_weights leaves unwritten is an
error naming it and the plugin, where it used to keep whatever memory held (a q_norm weight of
1e34 was seen, and training went non-finite)."""

from typing import Any, Literal

import pytest
import torch
from torch import nn

from maskdit.config import SpecModel, register, registry
from maskdit.core import BLOCKS, LABEL_EMBEDDERS, DiTBlock, UninitializedWeightsError, build_denoiser
from tests.core.helpers import tiny_spec


class ForgetfulBlock(DiTBlock):
    """DiT's block with qk-norm and a gain of its own, whose init_weights forgets both."""

    def __init__(self, dim: int, num_heads: int, **options: Any) -> None:
        super().__init__(dim, num_heads, **options)
        self.gain = nn.Parameter(torch.empty(dim))

    def init_weights(self, generator: torch.Generator | None) -> None:
        for linear in (self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2):
            nn.init.xavier_uniform_(linear.weight, generator=generator)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)
        nn.init.ones_(self.attn.k_norm.weight)
        nn.init.zeros_(self.attn.k_norm.bias)  # the query norm and the gain are forgotten


class ForgetfulBlockSpec(SpecModel):
    name: Literal["forgetful_test"] = "forgetful_test"

    def build(self, **context: Any):
        return ForgetfulBlock


class NeverWrites(nn.Module):
    """A label embedder whose init_weights writes nothing at all."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)

    def init_weights(self, generator: torch.Generator | None) -> None:
        pass


class NeverWritesSpec(SpecModel):
    name: Literal["never_writes_test"] = "never_writes_test"

    def build(self, **context: Any):
        return NeverWrites


@pytest.fixture
def plugins():
    register("block")(ForgetfulBlockSpec)
    register("label_embedder")(NeverWritesSpec)
    yield
    registry("block").remove("forgetful_test")
    registry("label_embedder").remove("never_writes_test")


def test_a_block_plugin_that_leaves_parameters_unwritten_is_named(plugins):
    spec = tiny_spec(block="forgetful_test", qk_norm=True)  # 2 encoder blocks and 1 decoder block
    with pytest.raises(UninitializedWeightsError) as err:
        build_denoiser(spec)
    message = str(err.value)
    assert message.startswith("init_weights did not write every parameter and buffer: block plugin "
                              "'forgetful_test' left blocks.0.gain, blocks.0.attn.q_norm.weight, "
                              "blocks.0.attn.q_norm.bias, blocks.1.gain, blocks.1.attn.q_norm.weight and 4 more")
    assert "k_norm" not in message and "MaskDiT" not in message


def test_a_label_embedder_that_writes_nothing_is_named(plugins):
    with pytest.raises(UninitializedWeightsError, match="label-embedder plugin 'never_writes_test' left "
                                                        "y_embedder.embedding_table.weight"):
        build_denoiser(tiny_spec(label_embedder="never_writes_test"))


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("label_embedder", LABEL_EMBEDDERS.names())
@pytest.mark.parametrize("variant", [
    {},
    {"qk_norm": True, "precond": "ddpm", "learn_sigma": True},
    {"decoder_depth": 0, "routing": {"start": 1, "end": 2, "fill": "mask_token", "fuse": "concat"}},
    {"decoder_depth": 0, "routing": {"start": 1, "end": 2}, "num_classes": 0},
])
def test_built_in_blocks_and_embedders_write_every_tensor(block, label_embedder, variant):
    denoiser = build_denoiser(tiny_spec(block=block, label_embedder=label_embedder, **variant))
    tensors = list(denoiser.parameters()) + list(denoiser.buffers())
    assert tensors and all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_the_meta_device_allocates_nothing_and_checks_nothing(plugins):
    net = build_denoiser(tiny_spec(block="forgetful_test", qk_norm=True), device="meta").net
    assert all(p.is_meta for p in net.parameters())  # parameter counts of a plugin's model still work
