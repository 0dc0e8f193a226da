"""Latent folders that keep their source crops (``encode --keep-images``), for alignment on latents:
the crops are the VAE's input to the bit, they are drawn with their latents (mirrored with them),
and every way the images can be missing or wrong is an error naming the folder and the fix."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from maskdit.data.draws import row_seeds
from maskdit.data.encode import plan_encoding
from maskdit.data.imagefolder import list_image_folder, prepare_image
from maskdit.data.latent_dataset import LatentDataset
from maskdit.data.shards import ShardError, open_shard, read_manifest
from maskdit.data.vae import load_vae
from maskdit.train.batches import BatchStream


def test_the_shards_keep_the_crops_the_vae_encoded(encoded_images_dir, image_dir):
    manifest = read_manifest(encoded_images_dir)
    assert manifest.images and manifest.count == 10
    samples, _ = list_image_folder(image_dir)
    for record in manifest.shards:
        tensors = open_shard(encoded_images_dir / record.file)
        assert tensors["image"].dtype == torch.uint8 and tensors["image"].shape == (record.count, 3, 16, 16)
        for image, index in zip(tensors["image"], tensors["index"].tolist()):
            crop = prepare_image(samples[index][0], 16)  # [3, 16, 16] in [-1, 1]
            assert torch.equal(image.float().div(127.5).sub(1), crop)  # the 8-bit pixels, exactly


def test_keeping_images_is_part_of_the_settings_fingerprint(tiny_vae_dir, image_dir, encoded_dir):
    vae = load_vae(tiny_vae_dir)
    options = dict(vae_path=str(tiny_vae_dir), resolution=16, flip=True, shard_size=4)
    plain, kept = plan_encoding(vae, image_dir, **options), plan_encoding(vae, image_dir, keep_images=True, **options)
    assert plain.key == read_manifest(encoded_dir).key  # a folder encoded without the option keeps its key
    assert kept.key != plain.key  # so a folder of the other kind is refused, never mixed


def test_draw_with_images_gives_the_same_latents_and_mirrors_the_crops_with_them(encoded_images_dir):
    data = LatentDataset(encoded_images_dir, flip=True)
    ids, seeds = torch.arange(10), row_seeds(3, 0, torch.arange(10))
    z, labels = data.draw(ids, seeds=seeds)
    z2, labels2, images = data.draw(ids, seeds=seeds, with_images=True)
    assert torch.equal(z, z2) and torch.equal(labels, labels2)  # the images draw nothing
    assert images.shape == (10, 3, 16, 16) and images.dtype == torch.float32
    mean, _, _ = data.posterior(ids, seeds=seeds)
    unflipped = LatentDataset(encoded_images_dir)
    plain, _, _ = unflipped.posterior(ids)  # never mirrored
    _, _, originals = unflipped.draw(ids, seeds=seeds, with_images=True)
    mirrored = [not torch.equal(mean[i], plain[i]) for i in range(10)]
    assert any(mirrored) and not all(mirrored)  # both kinds of row occur with these seeds
    for i, flipped in enumerate(mirrored):
        assert torch.equal(images[i], originals[i].flip(-1) if flipped else originals[i])


def test_a_batch_stream_hands_the_images_out_only_when_asked(encoded_images_dir):
    stream = BatchStream(LatentDataset(encoded_images_dir, flip=True), 4, seed=1)
    z, labels = stream.batch(2)
    z2, labels2, images = stream.batch(2, with_images=True)
    assert torch.equal(z, z2) and torch.equal(labels, labels2) and images.shape == (4, 3, 16, 16)
    rows = stream.batch(2, rows=slice(1, 3), with_images=True)  # a rank's rows: the same rows of each part
    assert all(torch.equal(part, whole[1:3]) for part, whole in zip(rows, (z2, labels2, images)))


def test_a_folder_without_images_names_the_option(encoded_dir):
    data = LatentDataset(encoded_dir, flip=True)
    assert not data.stores_images
    with pytest.raises(ShardError, match=r"holds no source images.*--keep-images"):
        data.draw(torch.arange(2), seeds=torch.arange(2), with_images=True)
    with pytest.raises(ShardError, match="--keep-images"):
        BatchStream(data, 2, seed=0).batch(0, with_images=True)


def test_a_manifest_that_claims_images_its_shards_lack_is_refused(encoded_dir, tmp_path):
    copy = tmp_path / "lat"
    shutil.copytree(encoded_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "images": True}))
    with pytest.raises(ShardError, match=r"'image' should be uint8 \(4, 3, 16, 16\), found nothing"):
        LatentDataset(copy)


def test_a_dataset_that_cannot_draw_images_says_so():
    from maskdit.data.errors import DataError

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(4, 2, 2), 0

    with pytest.raises(DataError, match="cannot hand out the clean images"):
        BatchStream(Plain(), 2, seed=0).batch(0, with_images=True)


def test_a_dataset_that_draws_but_stores_no_crops_says_so(image_dir):
    """A flipped image folder draws (its mirrors) but has no crops beside its samples: a clear
    DataError, not a TypeError from its draw."""
    from maskdit.data.errors import DataError
    from maskdit.data.imagefolder import ImageFolderDataset

    images = ImageFolderDataset(image_dir, resolution=16, flip=True, skip_corrupt=True)
    with pytest.raises(DataError, match="ImageFolderDataset .*cannot hand out the clean images"):
        BatchStream(images, 2, seed=0).batch(0, with_images=True)


def test_shards_with_crops_the_manifest_denies_are_refused(encoded_images_dir, tmp_path):
    """A manifest that says ``images: false`` over shards that hold them does not describe its
    shards: refused, naming the shard, the manifest and the fix (not read as a folder without crops)."""
    copy = tmp_path / "lat"
    shutil.copytree(encoded_images_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "images": False}))
    with pytest.raises(ShardError, match=r"shard-00000.safetensors holds 'image'.*manifest.json says images: "
                                         r"false.*encode the image folder again"):
        LatentDataset(copy)


def test_a_wrong_image_tensor_names_the_fix(encoded_images_dir, tmp_path):
    """A shard whose crops are not uint8 [n, 3, R, R] names the shard and says to encode again."""
    from safetensors.torch import save_file

    from maskdit.io.files import file_sha256

    copy = tmp_path / "lat"
    shutil.copytree(encoded_images_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    record = manifest["shards"][0]
    path = copy / record["file"]
    tensors = {name: value.clone() for name, value in open_shard(path).items()}
    tensors["image"] = tensors["image"].float()
    save_file(tensors, str(path))
    record.update(bytes=path.stat().st_size, sha256=file_sha256(path))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"shard-00000.safetensors: 'image' should be uint8 \(4, 3, 16, 16\), "
                                         r"found .*float32.*--keep-images` into a new --out folder"):
        LatentDataset(copy)
