"""Shared, built-once fixtures: a tiny VAE, a small image folder, and its encoded latents."""

import pytest

from tests.datasets.folders import make_image_folder, make_tiny_vae


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory):
    pytest.importorskip("diffusers")
    return make_tiny_vae(tmp_path_factory.mktemp("vae") / "vae")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """10 readable 2-class images (sorted: cat/0..4, dog/0..4) and one garbage file (dog/zz_garbage.png)."""
    return make_image_folder(tmp_path_factory.mktemp("images") / "imgs", corrupt=("garbage",))


@pytest.fixture(scope="session")
def encoded_dir(tmp_path_factory, tiny_vae_dir, image_dir):
    """The image folder encoded at 16 px with mirrors, shards of 4 source images (3 shards; the last
    holds 2 latents, the garbage file skipped)."""
    from maskdit.app.commands.latents import main

    out = tmp_path_factory.mktemp("latents") / "lat"
    code = main(["encode", "--vae", str(tiny_vae_dir), "--data", str(image_dir), "--out", str(out),
                 "--resolution", "16", "--shard-size", "4", "--flip", "--skip-corrupt", "--batch-size", "3"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def encoded_images_dir(tmp_path_factory, tiny_vae_dir, image_dir):
    """As ``encoded_dir``, with the source crops kept (``--keep-images``)."""
    from maskdit.app.commands.latents import main

    out = tmp_path_factory.mktemp("latents-images") / "lat"
    code = main(["encode", "--vae", str(tiny_vae_dir), "--data", str(image_dir), "--out", str(out),
                 "--resolution", "16", "--shard-size", "4", "--flip", "--skip-corrupt", "--batch-size", "3",
                 "--keep-images"])
    assert code == 0
    return out
