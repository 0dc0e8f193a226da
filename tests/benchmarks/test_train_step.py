"""benchmarks/train_step/ on tiny models on the CPU: the JSON rows and fields, the library objective it
times (against an independent DSM + MAE oracle), and its report of the committed records."""

from __future__ import annotations

import json
import math

import pytest
import torch

from maskdit import Mask, build_denoiser, maskdit_objective
from maskdit.core import ModelSpec
from maskdit.masking import ConstantRatio, RandomMasking
from tests.benchmarks.dsm_mae_oracle import dsm_mae_loss
from tests.benchmarks.scripts import golden, load_study

TINY = ["depth=1", "input_size=16", "num_classes=10"]


@pytest.fixture(scope="module")
def study():
    return load_study("train_step", "measure", "steps", "table", "train_step", "gpu", "report")


def _check_row(row):
    assert row["median_ms"] > 0 and row["min_ms"] > 0 and row["min_ms"] <= row["median_ms"]
    assert math.isclose(row["images_per_s"], row["batch"] / (row["median_ms"] / 1000), rel_tol=1e-9)
    assert 0 < row["flop_ratio_vs_unmasked"] <= 1
    if row["mask_ratio"] == 0:
        assert row["flop_ratio_vs_unmasked"] == 1
    else:
        assert row["flop_ratio_vs_unmasked"] < 1


def test_train_step_suite_tiny(study, tmp_path, capsys):
    out = tmp_path / "train_step.json"
    presets, variants = ["MaskDiT-lite-S/2", "DiT-S/2"], ["eager", "eager+bf16"]
    argv = ["--presets", *presets, "--variants", *variants, "--repeats", "1", "--warmup", "0", "--batch", "1",
            "--model", *TINY, "--out", str(out)]
    assert study["train_step"].main(argv) == 0
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
    # the report regenerates what the run printed from its record
    assert study["report"].report(result) in printed


def test_presets_all_and_defaults(study):
    names = study["train_step"].resolve_presets(["all"])
    assert len(names) == 24 and {"DiT-XL/2", "MaskDiT-XL/2", "MaskDiT-lite-S/2", "TREAD-XL/2", "SPRINT-S/2",
                                 "Deferred-B/2"} <= set(names)
    assert study["train_step"].resolve_presets(["DiT-S/2"]) == ["DiT-S/2"]


def test_gpu_script_tiny_on_cpu(study, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert study["gpu"].main(["--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    keys = [(r["preset"], r["mask_ratio"]) for r in result["rows"]]
    assert keys == [("MaskDiT-XL/2", 0.5), ("MaskDiT-XL/2", 0.0), ("DiT-XL/2", 0.0)]
    for row in result["rows"]:
        _check_row(row)
        assert row["variant"] == "eager+bf16" and row["batch"] == 2 and row["memory_GiB"] > 0
    assert result["tiny"] and result["device_type"] == "cpu" and result["torch"]
    assert result["sdpa"].startswith("unrestricted")
    assert result["command"].startswith("python benchmarks/train_step/gpu.py")
    assert "NOT restricted" in capsys.readouterr().out


def test_largest_batch_doubles_then_bisects(study):
    largest_batch, tried = study["gpu"].largest_batch, []

    def fits_below(limit):
        def try_batch(batch):
            tried.append(batch)
            return batch <= limit
        return try_batch

    assert largest_batch(fits_below(200), 32, 1024) == 200
    assert tried[:4] == [32, 64, 128, 256]
    assert largest_batch(fits_below(5000), 32, 1000) == 1000
    assert largest_batch(fits_below(5), 32, 1024) == 4
    assert largest_batch(fits_below(0), 32, 1024) == 0


def test_unset_omp_wait_policy_is_warned_about(study, monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    study["measure"].warn_if_spinning()
    assert "OMP_WAIT_POLICY=PASSIVE" in capsys.readouterr().err
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    study["measure"].warn_if_spinning()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("record", ["train_step", "train_step_b"])
def test_report_reproduces_the_committed_tables(study, record, capsys):
    assert study["report"].main([f"{record}.json"]) == 0
    assert capsys.readouterr().out == golden(record)


@pytest.mark.parametrize("ratio", [0.5, 0.25])
def test_the_timed_objective_is_dsm_plus_mae_as_the_paper_states(ratio):
    """The step the study times (maskdit_objective) equals an independent DSM + 0.1 MAE on the same
    noise, sigma and mask (label dropout off, so the labels are the ones given)."""
    spec = ModelSpec(preset="MaskDiT-S/2", depth=1, hidden_size=32, num_heads=1, input_size=8, decoder_depth=1,
                     decoder_hidden_size=32, decoder_num_heads=1, num_classes=10)
    denoiser = build_denoiser(spec, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    y = torch.randn(3, spec.in_channels, 8, 8, generator=generator)
    labels, sigma = torch.tensor([1, 2, 10]), torch.tensor([0.1, 1.0, 20.0])
    noise = torch.randn(y.shape, generator=generator)
    mask: Mask = RandomMasking(ConstantRatio(ratio))(3, (4, 4), generator=generator)
    out = maskdit_objective(mask_ratio=ratio, label_dropout=0.0)(denoiser, y, labels, sigma=sigma, noise=noise,
                                                                 mask=mask)
    noisy = y + sigma.view(-1, 1, 1, 1) * noise
    expected = dsm_mae_loss(denoiser(noisy, sigma, labels=labels, mask=mask), y, noisy, sigma, mask, patch_size=2)
    assert torch.allclose(out.total, expected, rtol=1e-5, atol=1e-6)
    assert bool((out.parts["mae"] > 0).all())  # the MAE term really contributes
