"""Image folders: ADM centre crop, [-1, 1] scaling, seeded flips, corrupt files named or skipped."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.data import build_dataset
from maskdit.data.crop import adm_center_crop, to_tensor
from maskdit.data.imagefolder import CorruptImageError, ImageFolderDataset, load_image
from maskdit.data.specs import ImageFolderSpec
from tests.datasets.folders import make_image_folder


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 300), height=st.integers(1, 300), size=st.integers(1, 64))
def test_crop_is_always_size_by_size(width, height, size):
    image = Image.new("RGB", (width, height), (10, 200, 30))
    out = adm_center_crop(image, size)
    assert out.size == (size, size)
    assert np.abs(np.asarray(out, dtype=int) - [10, 200, 30]).max() <= 1  # a flat colour stays flat


def test_crop_of_exact_size_is_identity():
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(adm_center_crop(Image.fromarray(pixels), 16)), pixels)


def test_box_halving_of_blocky_image_is_exact():
    # 2x2 constant blocks: one BOX halving (the short side 32 is >= 2 * 16) recovers the 16x16 source exactly
    small = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    big = small.repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(np.asarray(adm_center_crop(Image.fromarray(big), 16)), small)


def test_crop_takes_the_centre_of_the_long_side():
    # 16 x 48 (h x w): no resize needed, the crop is columns 16..31
    pixels = np.zeros((16, 48, 3), dtype=np.uint8)
    pixels[:, 16:32] = 255
    assert np.asarray(adm_center_crop(Image.fromarray(pixels), 16)).min() == 255


def test_to_tensor_range_and_layout():
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = [255, 0, 255]
    x = to_tensor(Image.fromarray(pixels))
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert x[:, 0, 0].tolist() == [1.0, -1.0, 1.0] and x.min() == -1 and x.max() == 1


def test_grey_and_rgba_images_become_rgb(tmp_path):
    Image.new("L", (20, 20), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (20, 20), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "grey.png").mode == "RGB" and load_image(tmp_path / "rgba.png").mode == "RGB"


def test_dataset_items_shape_range_and_labels(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    data = build_dataset(ImageFolderSpec(path=str(root), resolution=16, num_classes=2))
    assert isinstance(data, ImageFolderDataset) and len(data) == 10 and data.classes == ["cat", "dog"]
    assert data.labels.tolist() == [0] * 5 + [1] * 5
    image, label = data[7]
    assert image.shape == (3, 16, 16) and label == 1
    assert -1 <= image.min() < image.max() <= 1
    assert torch.equal(image, data[7][0])  # deterministic


def test_corrupt_image_error_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "imgs", corrupt=("garbage",))
    data = ImageFolderDataset(root, resolution=16)
    assert len(data) == 11  # listing decodes nothing
    bad = next(i for i, (path, _) in enumerate(data.samples) if path.endswith("zz_garbage.png"))
    with pytest.raises(CorruptImageError, match=r"cannot read image .*dog/zz_garbage\.png"):
        data[bad]
    with pytest.raises(CorruptImageError, match="zz_garbage.png"):
        data.draw(torch.arange(len(data)), generator=torch.Generator().manual_seed(0))


def test_truncated_image_error_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "imgs", corrupt=("truncated",))
    with pytest.raises(CorruptImageError, match="zz_truncated.png"):
        load_image(root / "dog" / "zz_truncated.png")


def test_skip_corrupt_leaves_out_and_counts(tmp_path):
    root = make_image_folder(tmp_path / "imgs", corrupt=("garbage", "truncated"))
    data = build_dataset(ImageFolderSpec(path=str(root), resolution=16, num_classes=2, skip_corrupt=True))
    assert len(data) == 10 and data.num_skipped == 2
    assert sorted(path.rsplit("/", 1)[-1] for path, _ in data.skipped) == ["zz_garbage.png", "zz_truncated.png"]
    images, labels = data.draw(torch.arange(10), generator=torch.Generator().manual_seed(0))
    assert images.shape == (10, 3, 16, 16) and labels.tolist() == [0] * 5 + [1] * 5


def test_flip_draws_are_seeded_and_mirror(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    data = ImageFolderDataset(root, resolution=16, flip=True)
    ids = torch.arange(10)
    a, _ = data.draw(ids, generator=torch.Generator().manual_seed(3))
    b, _ = data.draw(ids, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    plain = torch.stack([data[i][0] for i in range(10)])
    mirrored = (a == plain.flip(-1)).flatten(1).all(1)  # [B, 3*16*16] -> [B]
    same = (a == plain).flatten(1).all(1)
    assert bool((mirrored | same).all()) and 0 < int(mirrored.sum()) < 10
    unflipped = ImageFolderDataset(root, resolution=16, flip=False)
    assert torch.equal(unflipped.draw(ids, generator=torch.Generator().manual_seed(3))[0], plain)


def test_wrong_class_count_and_missing_folder(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    with pytest.raises(ValueError, match="2 class folders but num_classes is 3"):
        ImageFolderDataset(root, resolution=16, num_classes=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope", resolution=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="expected root/<class>/<image>"):
        ImageFolderDataset(tmp_path / "empty", resolution=16)


def test_spec_fields_and_experiment_checks():
    spec = ImageFolderSpec(path="/data/imagenet/train", num_classes=1000)
    assert (spec.channels, spec.resolution, spec.flip, spec.skip_corrupt) == (3, 256, False, False)
    with pytest.raises(ValidationError):
        ImageFolderSpec(path="x", num_classes=10, colour=True)
    model = {"input_size": 32, "in_channels": 3, "patch_size": 4, "depth": 1, "hidden_size": 32, "num_heads": 2,
             "decoder_depth": 8, "decoder_hidden_size": 16, "decoder_num_heads": 2, "num_classes": 10}
    data = {"name": "imagefolder", "path": "x", "resolution": 32, "num_classes": 10}
    ExperimentSpec.model_validate({"model": model, "data": data})
    with pytest.raises(ValidationError, match="data resolution 64 differs from model.input_size 32"):
        ExperimentSpec.model_validate({"model": model, "data": {**data, "resolution": 64}})


def test_seeded_flips_are_per_row(tmp_path):
    from maskdit.data.draws import row_seeds

    data = ImageFolderDataset(make_image_folder(tmp_path / "imgs"), resolution=16, flip=True)
    ids, seeds = torch.arange(10), row_seeds(0, 3, torch.arange(10))
    whole, _ = data.draw(ids, seeds=seeds)
    assert torch.equal(data.draw(ids[4:], seeds=seeds[4:])[0], whole[4:])
