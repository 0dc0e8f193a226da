"""The shipped encoder contracts, run over every registered encoder (once, here)."""

from maskdit.testing.test_encoders import test_encoder  # noqa: F401
