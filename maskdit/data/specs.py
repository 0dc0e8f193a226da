"""The data section: which dataset and how its images are prepared."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from maskdit.config.registry import one_of, register
from maskdit.config.spec_model import SpecModel
from maskdit.data.imagefolder import ImageFolderDataset
from maskdit.data.latent_dataset import LatentDataset
from maskdit.data.mnist5k import MNIST5k


@register("dataset")
class MNIST5kSpec(SpecModel):
    """The 5,000 MNIST digits shipped with maskdit (the default, offline dataset).

    Images are scaled to [-1, 1]; at resolution 32 they are padded with background (-1).
    """

    name: Literal["mnist5k"] = "mnist5k"
    split: Literal["train", "heldout", "all"] = Field(
        "train", description="4,000 train / 1,000 held-out digits (digit i held out when i % 5 == 4), or all 5,000"
    )
    resolution: Literal[28, 32] = Field(32, description="28 = as stored, 32 = padded to 32x32 with background")

    @property
    def channels(self) -> int:
        return 1

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def describe(self) -> str:
        return f"mnist5k ({self.split})"

    def build(self, **context: Any) -> MNIST5k:
        return MNIST5k.from_spec(self)


@register("dataset")
class ImageFolderSpec(SpecModel):
    """RGB images in class folders (``root/<class>/<image>``, torchvision's ImageFolder layout).

    Each image is centre-cropped the ADM way (box-downsample while the short side is at least
    twice ``resolution``, bicubic-resize the short side to ``resolution``, crop the centre;
    Dhariwal & Nichol 2021) and scaled to [-1, 1].
    """

    name: Literal["imagefolder"] = "imagefolder"
    path: str = Field(min_length=1, description="root folder holding one sub-folder per class")
    resolution: int = Field(256, ge=8, le=2048, description="side of the square centre crop, in pixels")
    num_classes: int = Field(ge=1, le=1_000_000, description="class sub-folders expected (checked when built)")
    flip: bool = Field(False, description="mirror each drawn image left-right with probability 1/2")
    skip_corrupt: bool = Field(
        False, description="scan every image when built and leave out (and count) unreadable ones; false: error naming the file"
    )

    @property
    def channels(self) -> int:
        return 3

    @property
    def describe(self) -> str:
        return f"imagefolder {self.path}"

    def build(self, **context: Any) -> ImageFolderDataset:
        return ImageFolderDataset.from_spec(self)


@register("dataset")
class LatentsSpec(SpecModel):
    """VAE latents written by ``python -m maskdit.latents encode``: the posterior mean and
    log-variance per image; every draw gives a fresh z = scale * (mean + std * eps)."""

    name: Literal["latents"] = "latents"
    path: str = Field(min_length=1, description="folder holding manifest.json and the shards")
    channels: int = Field(4, ge=1, le=64, description="latent channels (checked against the manifest)")
    resolution: int = Field(32, ge=1, le=1024, description="latent side, the model's input_size (checked against the manifest)")
    num_classes: int = Field(1000, ge=1, le=1_000_000, description="label classes (checked against the manifest)")
    flip: bool = Field(
        False, description="draw the stored original or its mirror with probability 1/2 (needs shards encoded with --flip)"
    )
    verify: Literal["sha256", "size"] = Field(
        "sha256", description="check each shard's SHA-256 when built, or only its byte size (faster)"
    )

    @property
    def describe(self) -> str:
        return f"latents {self.path}"

    def build(self, **context: Any) -> LatentDataset:
        return LatentDataset.from_spec(self)


#: a registered dataset (a JSON object naming it; it has ``channels``, ``resolution``,
#: ``num_classes`` and ``describe``)
DataSpec = one_of("dataset")
