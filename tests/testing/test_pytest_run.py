"""The one documented command, run as a user would in a project of their own: a good plugin
module passes the shipped contract tests, a broken one fails them naming the contracts broken."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maskdit.masking import RATIO_SCHEDULES

ROOT = Path(__file__).parents[2]

GOOD = '''
"""A reversed-raster masking strategy and an absolute-error loss term."""
from typing import Any, Literal

import torch
from pydantic import Field

from maskdit.config import SpecModel, register
from maskdit.masking import Mask, MaskingStrategy, build_ratio_schedule
from maskdit.masking.specs import RatioSpec


class Reversed(MaskingStrategy):
    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        order = torch.arange(grid_hw[0] * grid_hw[1], device=device).flip(0)  # last positions kept
        return Mask.from_order(order.repeat(batch_size, 1), kept)


@register("masking")
class ReversedSpec(SpecModel):
    name: Literal["tailkeep"] = "tailkeep"
    ratio: RatioSpec = Field(0.5, description="mask ratio: a number or a ratio schedule")

    def build(self, **context: Any) -> Reversed:
        return Reversed(build_ratio_schedule(self.ratio))


@register("loss")
class AbsErrSpec(SpecModel):
    name: Literal["abserr"] = "abserr"
    weight: float = Field(1.0, ge=0, le=10, description="weight of this term")

    def build(self, **context: Any):
        return lambda inputs: (inputs.denoised - inputs.y).abs().flatten(1).mean(1)  # [B]
'''

BROKEN = '''
"""Two classic slips: a Mask whose ids_restore is the order itself (not its inverse) behind a
float-only ratio, and a loss term that averages over the batch."""
from typing import Any, Literal

import torch
from pydantic import Field

from maskdit.config import SpecModel, register
from maskdit.masking import Mask, MaskingStrategy


class Leaky(MaskingStrategy):
    def draw(self, batch_size, grid_hw, kept, generator, device) -> Mask:
        order = torch.argsort(torch.rand(batch_size, grid_hw[0] * grid_hw[1], generator=generator), dim=1)
        dropped = torch.argsort(order, dim=1) >= kept  # right
        return Mask(order[:, :kept].contiguous(), order, dropped)  # ids_restore should be argsort(order)


@register("masking")
class LeakySpec(SpecModel):
    name: Literal["leaky"] = "leaky"
    ratio: float = Field(0.5, ge=0, lt=1, description="fraction of tokens dropped")

    def build(self, **context: Any) -> Leaky:
        return Leaky(self.ratio)


@register("loss")
class BatchMeanSpec(SpecModel):
    name: Literal["batchmean"] = "batchmean"
    weight: float = Field(1.0, ge=0, le=10, description="weight of this term")

    def build(self, **context: Any):
        return lambda inputs: (inputs.denoised - inputs.y).square().mean().expand(inputs.y.shape[0])
'''


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m pytest --pyargs maskdit.testing ARGS`` in ``folder`` (a project of the user's,
    outside this repository: its own rootdir, none of our pytest settings)."""
    project = folder / "project"
    project.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "--pyargs", "maskdit.testing", "-rf", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_good_plugin_passes_and_a_broken_one_fails_naming_the_contracts(tmp_path):
    """One run: the good module installed as a package (an entry point: checked without naming
    it), the broken one named with -p, the documented command."""
    (tmp_path / "good_plugins.py").write_text(textwrap.dedent(GOOD))
    dist = tmp_path / "good_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: good-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[maskdit.plugins]\ngood = good_plugins\n")
    (tmp_path / "broken_plugins.py").write_text(textwrap.dedent(BROKEN))
    result = _run(tmp_path, "-p", "broken_plugins", "-k", "tailkeep or abserr or leaky or batchmean", "-v")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out

    good = ["test_masking_strategy[tailkeep-number]", "test_masking_strategy_at_zero_ratio[tailkeep]",
            "test_loss_term[abserr]"] + [f"test_masking_strategy[tailkeep-{name}]" for name in RATIO_SCHEDULES.names()]
    for test in good:
        assert f"{test} PASSED" in out, out

    for test in ["test_masking_strategy[leaky-number]", "test_loss_term[batchmean]"] + [
            f"test_masking_strategy[leaky-{name}]" for name in RATIO_SCHEDULES.names()]:
        assert f"{test} FAILED" in out, out
    assert "contract 'ids_restore inverse' broken by broken_plugins.LeakySpec (name 'leaky')" in out
    assert "contract 'takes a ratio schedule' broken by broken_plugins.LeakySpec (name 'leaky')" in out
    assert "contract 'per-sample values' broken by broken_plugins.BatchMeanSpec (name 'batchmean')" in out
