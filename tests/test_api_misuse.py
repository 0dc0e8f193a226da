"""A researcher's first day with the Python API: defaults that disagree with the model are errors
or come from the model, RandomMasking means what its docs say, and the strategy hook is public."""

import pytest
import torch

from maskdit.core import ModelSpec, build_denoiser
from maskdit.losses import maskdit_objective
from maskdit.masking import BlockMasking, GridMasking, Mask, MaskingStrategy, RandomMasking, UniformRatio

TEN_CLASSES = ModelSpec(input_size=16, in_channels=1, patch_size=4, depth=1, hidden_size=16, num_heads=1,
                        decoder_depth=1, decoder_hidden_size=16, decoder_num_heads=1, num_classes=10)


def batch(n=4):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, 16, generator=gen), torch.arange(n) % 10


def test_objective_takes_patch_size_and_classes_from_the_denoiser():
    denoiser = build_denoiser(TEN_CLASSES)
    y, labels = batch()
    objective = maskdit_objective(label_dropout=1.0)  # drop every label: each becomes the null label
    out = objective(denoiser, y, labels, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.labels, torch.full((4,), 10))  # the model's null label, not the paper's 1000
    assert out.mask.num_tokens == 16 and out.mask.num_kept == 8  # the model's patch 4 on 16 px, at r = 0.5


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 5}, "the objective has num_classes=5 but the denoiser's num_classes is 10"),
    ({"patch_size": 2}, "the objective has patch_size=2 but the denoiser's patch_size is 4"),
    ({"sigma_data": 1.0}, "dsm term has sigma_data=1 but the denoiser's sigma_data is 0.5"),
])
def test_an_objective_that_disagrees_with_the_model_names_both(kwargs, message):
    y, labels = batch()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        maskdit_objective(**kwargs)(build_denoiser(TEN_CLASSES), y, labels, generator=torch.Generator())


def test_random_masking_defaults_to_the_documented_half_and_takes_a_float():
    gen = torch.Generator().manual_seed(0)
    assert RandomMasking()(2, (4, 4), generator=gen).num_kept == 8  # it used to mask nothing
    assert RandomMasking(0.75)(2, (4, 4), generator=gen).num_kept == 4  # it used to fail on the float
    assert repr(RandomMasking()) == "RandomMasking(ratio=0.5)"
    assert repr(BlockMasking(UniformRatio(0.2, 0.7))).startswith("BlockMasking(ratio=UniformRatio(low=0.2, high=0.7)")
    assert repr(GridMasking(0.75, cell=2)) == "GridMasking(ratio=0.75, cell=2)"
    with pytest.raises(TypeError, match="ratio must be a number or a ratio schedule"):
        RandomMasking(True)
    with pytest.raises(TypeError, match="ratio must be a number or a ratio schedule"):
        RandomMasking("0.5")


def test_a_user_strategy_implements_the_public_draw_hook():
    class FirstTokens(MaskingStrategy):
        def draw(self, batch_size, grid_hw, kept, generator, device):
            order = torch.arange(grid_hw[0] * grid_hw[1], device=device).expand(batch_size, -1)
            return Mask.from_order(order.contiguous(), kept)

    mask = FirstTokens(0.25)(3, (2, 4))
    assert mask.num_kept == 6 and mask.ids_keep[0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(NotImplementedError, match="must implement draw"):
        MaskingStrategy()(1, (2, 2))
