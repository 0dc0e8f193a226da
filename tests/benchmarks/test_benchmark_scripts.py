"""benchmarks/train_step.py and benchmarks/gpu.py on tiny models on the CPU: the JSON rows and fields."""

from __future__ import annotations

import json
import math

import pytest

from tests.benchmarks.scripts import BENCHMARKS
from tests.benchmarks.scripts import load_script as _load

TINY = ["depth=1", "input_size=16", "num_classes=10"]


@pytest.fixture(scope="module")
def train_step():
    return _load("train_step")


@pytest.fixture(scope="module")
def gpu():
    return _load("gpu")


def _check_row(row):
    assert row["median_ms"] > 0 and row["min_ms"] > 0 and row["min_ms"] <= row["median_ms"]
    assert math.isclose(row["images_per_s"], row["batch"] / (row["median_ms"] / 1000), rel_tol=1e-9)
    assert 0 < row["flop_ratio_vs_unmasked"] <= 1
    if row["mask_ratio"] == 0:
        assert row["flop_ratio_vs_unmasked"] == 1
    else:
        assert row["flop_ratio_vs_unmasked"] < 1


def test_train_step_suite_tiny(train_step, tmp_path, capsys):
    out = tmp_path / "train_step.json"
    presets, variants = ["MaskDiT-lite-S/2", "DiT-S/2"], ["eager", "eager+bf16"]
    argv = ["--presets", *presets, "--variants", *variants, "--repeats", "1", "--warmup", "0", "--batch", "1",
            "--model", *TINY, "--out", str(out)]
    assert train_step.main(argv) == 0
    result = json.loads(out.read_text())
    keys = {(r["preset"], r["variant"], r["mask_ratio"]) for r in result["rows"]}
    assert keys == {(p, v, r) for p in presets for v in variants for r in (0.5, 0.0)}
    for row in result["rows"]:
        _check_row(row)
        assert row["batch"] == 1 and len(row["samples_ms"]) == 1
        assert row["saved_activations_MiB"] > 0 and row["state_MiB"] > 0
        assert math.isclose(row["memory_MiB"], row["saved_activations_MiB"] + row["state_MiB"])
    assert result["device"] == "cpu" and "saved for backward" in result["memory_column"]
    checks = result["summary"]["checks"]
    assert "DiT-S/2 eager time/FLOP ratio" in checks
    assert "MaskDiT-lite-S/2 masked vs DiT-S/2 unmasked, eager+bf16" in checks
    printed = capsys.readouterr().out
    assert "img/s" in printed and "p+g+saved MiB" in printed and "FLOPs vs r=0" in printed


def test_presets_all_and_defaults(train_step):
    names = train_step.resolve_presets(["all"])
    assert len(names) == 24 and {"DiT-XL/2", "MaskDiT-XL/2", "MaskDiT-lite-S/2", "TREAD-XL/2", "SPRINT-S/2",
                                 "Deferred-B/2"} <= set(names)
    assert train_step.resolve_presets(["DiT-S/2"]) == ["DiT-S/2"]


def test_gpu_script_tiny_on_cpu(gpu, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    keys = [(r["preset"], r["mask_ratio"]) for r in result["rows"]]
    assert keys == [("MaskDiT-XL/2", 0.5), ("MaskDiT-XL/2", 0.0), ("DiT-XL/2", 0.0)]
    for row in result["rows"]:
        _check_row(row)
        assert row["variant"] == "eager+bf16" and row["batch"] == 2 and row["memory_GiB"] > 0
    assert result["tiny"] and result["device_type"] == "cpu" and result["torch"]
    assert result["sdpa"].startswith("unrestricted") and result["command"].startswith("python benchmarks/gpu.py")
    assert "NOT restricted" in capsys.readouterr().out


def test_largest_batch_doubles_then_bisects(gpu):
    tried = []

    def fits_below(limit):
        def try_batch(batch):
            tried.append(batch)
            return batch <= limit
        return try_batch

    assert gpu.largest_batch(fits_below(200), 32, 1024) == 200
    assert tried[:4] == [32, 64, 128, 256]
    assert gpu.largest_batch(fits_below(5000), 32, 1000) == 1000
    assert gpu.largest_batch(fits_below(5), 32, 1024) == 4
    assert gpu.largest_batch(fits_below(0), 32, 1024) == 0
