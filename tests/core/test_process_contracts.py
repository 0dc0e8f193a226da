"""The shipped process contracts, run over every registered process (once, here)."""

from maskdit.testing.test_process import test_process  # noqa: F401
