"""What encoders do to images before their network: ImageNet statistics, channels, size."""

import pytest
import torch

from maskdit.encoders.preprocess import imagenet_normalise, resize_square, to_channels


def test_white_black_and_grey_pixels_get_imagenets_normalised_values():
    pixels = torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1).expand(3, 3, 1, 1)  # white, black, mid-grey
    normalised = imagenet_normalise(pixels)[:, :, 0, 0]
    expected = torch.tensor([
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225],
        [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225],
        [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225],
    ])
    torch.testing.assert_close(normalised, expected)
    assert imagenet_normalise(pixels.double()).dtype == torch.float64


def test_grey_is_repeated_and_other_channel_counts_are_refused():
    grey = torch.rand(2, 1, 4, 4)
    rgb = to_channels(grey, 3, encoder="test")
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    assert to_channels(rgb, 3, encoder="test") is rgb
    with pytest.raises(ValueError, match="the test encoder reads images with 1 or 3 channels, got 4 channels"):
        to_channels(torch.zeros(1, 4, 4, 4), 3, encoder="test")
    with pytest.raises(ValueError, match="reads images with 1 channel, got 3 channels"):
        to_channels(rgb, 1, encoder="test")


def test_resize_is_bicubic_to_the_encoders_square_size():
    ramp = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)
    resized = resize_square(ramp, 7)
    assert resized.shape == (1, 1, 7, 7)
    expected = torch.nn.functional.interpolate(ramp, size=(7, 7), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized, expected)
    bilinear = torch.nn.functional.interpolate(ramp, size=(7, 7), mode="bilinear", align_corners=False)
    assert not torch.allclose(resized, bilinear)
    assert resize_square(ramp, 4) is ramp
    assert resize_square(torch.zeros(1, 3, 32, 48), 14).shape == (1, 3, 14, 14)
