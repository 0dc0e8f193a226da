"""The shipped loss-term contracts (maskdit.testing.test_losses), over every registered term."""

from maskdit.testing.test_losses import test_loss_term  # noqa: F401
