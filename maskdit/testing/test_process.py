"""The process contracts (maskdit.testing.process) over every registered process."""

from __future__ import annotations

import pytest

from maskdit.config.registry import registry
from maskdit.testing.process import check_process_spec


@pytest.mark.parametrize("name", registry("process").names())
def test_process(name: str) -> None:
    check_process_spec(registry("process").get(name)())
