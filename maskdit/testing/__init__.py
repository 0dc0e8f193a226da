"""The contract checks every plugin of maskdit must pass, and hypothesis strategies to drive them.

Run them on your own plugins (a module that registers them, here ``my_plugins``) with::

    pip install 'maskdit[testing]'
    python -m pytest --pyargs maskdit.testing -p my_plugins

``-p`` imports the module before the tests are collected, and the tests are parametrised over
the registries, so every registered plugin, built-in or yours, is checked (plugins of installed
packages' ``maskdit.plugins`` entry points too). A failure names the broken contract. The
checks are plain functions too (``check_masking_spec``, ``check_mask``, ``check_loss_spec``,
...), to call from your own tests.
"""

try:  # the extra 'testing' installs these; say so instead of a bare ModuleNotFoundError
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
except ImportError as err:
    raise ImportError(f"maskdit.testing needs pytest and hypothesis ({err}): pip install 'maskdit[testing]'") from err

from maskdit.testing.contract import ContractError, check_spec_round_trip, require
from maskdit.testing.encoders import check_encoder, check_encoder_spec
from maskdit.testing.losses import check_loss_spec, check_loss_term
from maskdit.testing.masking import (
    check_masking_spec,
    check_masking_strategy,
    check_ratio_schedule,
    check_ratio_spec,
    check_zero_ratio,
    with_ratio,
)
from maskdit.testing.masks import check_mask
from maskdit.testing.network import check_block, check_block_spec, check_initialised, check_label_embedder_spec
from maskdit.testing.process import check_denoiser, check_process_spec
from maskdit.testing.samplers import (
    check_input_checks,
    check_pure_function,
    check_ready_sampler,
    check_sigma_schedule,
    check_steps,
)
from maskdit.testing.toys import GaussianDenoiser

__all__ = [
    "ContractError",
    "GaussianDenoiser",
    "check_block",
    "check_block_spec",
    "check_denoiser",
    "check_encoder",
    "check_encoder_spec",
    "check_process_spec",
    "check_initialised",
    "check_input_checks",
    "check_label_embedder_spec",
    "check_loss_spec",
    "check_loss_term",
    "check_mask",
    "check_masking_spec",
    "check_masking_strategy",
    "check_pure_function",
    "check_ratio_schedule",
    "check_ratio_spec",
    "check_ready_sampler",
    "check_sigma_schedule",
    "check_spec_round_trip",
    "check_steps",
    "check_zero_ratio",
    "require",
    "with_ratio",
]
