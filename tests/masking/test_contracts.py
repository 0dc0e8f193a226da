"""The shipped masking contracts (maskdit.testing.test_masking), collected here so the project's
own run checks every registered strategy and ratio schedule with the copy users run."""

from maskdit.testing.test_masking import (  # noqa: F401
    test_masking_strategy,
    test_masking_strategy_at_zero_ratio,
    test_ratio_schedule,
)
