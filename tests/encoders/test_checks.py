"""Each encoder contract check catches what it is about: an encoder broken in exactly that way
fails it, naming the contract; a well-behaved one passes."""

import pytest
import torch
from torch import nn

from maskdit.encoders import FrozenEncoder
from maskdit.testing import ContractError
from maskdit.testing.encoders import check_encoder

IMAGES = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Pooling(FrozenEncoder):
    """A good encoder: 4 x 4 average pooling through a fixed 1 x 1 convolution to width 2."""

    width, in_channels, image_size, patch_size = 2, 3, 8, 4

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([1.0, -0.5, 0.25, 0.5, 2.0, -1.0]).view(2, 3, 1, 1))
            self.mix.bias.fill_(0.1)
        self.drop = nn.Dropout(0.5)
        self.freeze()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return self.drop(nn.functional.avg_pool2d(self.mix(x), 4))  # [B, 2, 2, 2]


def _broken(contract: str):
    return pytest.raises(ContractError, match=f"contract '{contract}' broken by")


def test_a_well_behaved_encoder_passes():
    features = check_encoder(Pooling(), IMAGES)
    assert features.shape == (3, 2, 2, 2)


def test_a_parameter_left_trainable_breaks_frozen():
    encoder = Pooling()
    encoder.mix.bias.requires_grad_(True)
    with _broken("frozen encoder"):
        check_encoder(encoder, IMAGES)


def test_an_encoder_that_can_be_switched_to_training_breaks_frozen():
    class Trainable(Pooling):
        def train(self, mode: bool = True):
            return nn.Module.train(self, mode)  # dropout would switch on inside a training loop

    with _broken("frozen encoder"):
        check_encoder(Trainable(), IMAGES)


def test_features_of_the_wrong_grid_break_features_shape():
    class Coarse(Pooling):
        def encode(self, images):
            return nn.functional.avg_pool2d(super().encode(images), 2)  # [B, 2, 1, 1], grid_size says 2

    with _broken("features shape"):
        check_encoder(Coarse(), IMAGES)


def test_drawing_from_the_global_rng_breaks_randomness_from_the_generator():
    class Noisy(Pooling):
        def encode(self, images):
            return super().encode(images) + 0.01 * torch.randn(images.shape[0], 2, 2, 2)

    with pytest.raises(ContractError, match="contract 'randomness from the generator'"):
        check_encoder(Noisy(), IMAGES)


def test_batch_statistics_break_per_sample_features():
    class BatchNormalised(Pooling):
        def encode(self, images):
            features = super().encode(images)
            return features - features.mean(0, keepdim=True)

    with _broken("per-sample features"):
        check_encoder(BatchNormalised(), IMAGES)


def test_a_gradient_reaching_the_encoder_breaks_no_gradient():
    class Leaky(Pooling):
        def forward(self, images):  # skips the base class's no_grad and turns a parameter back on
            self.mix.weight.requires_grad_(True)
            return self.encode(images)

    with _broken("no gradient to the encoder"):
        check_encoder(Leaky(), IMAGES)


def test_treating_grey_unlike_repeated_grey_breaks_channels():
    class ColourBlind(Pooling):
        def encode(self, images):
            return super().encode(images) * (2.0 if images.shape[1] == 1 else 1.0)

    with _broken("channels"):
        check_encoder(ColourBlind(), IMAGES)


def test_changing_the_images_breaks_inputs_unchanged():
    class Clamping(Pooling):
        def encode(self, images):
            return super().encode(images.clamp_(-0.5, 0.5))

    with _broken("inputs unchanged"):
        check_encoder(Clamping(), IMAGES.clone())
