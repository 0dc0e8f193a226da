"""The shipped network contracts (maskdit.testing.test_network, collected here) over every
registered block and label embedder, and the model spec's errors for unknown names."""

import pytest
from pydantic import ValidationError

from maskdit.core import ModelSpec
from maskdit.testing.test_network import test_block, test_label_embedder  # noqa: F401


def test_unknown_block_names_the_registered_ones():
    with pytest.raises(ValidationError, match="'dit'"):
        ModelSpec(block="vit")
