"""benchmarks/quality_vs_compute.py: the summary arithmetic, and a tiny end-to-end run."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_vs_compute.py"


@pytest.fixture(scope="module")
def qvc():
    spec = importlib.util.spec_from_file_location("quality_vs_compute", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def point(variant, step, seconds, macs, fid):
    return {"variant": variant, "step": step, "train_seconds": seconds, "train_macs": macs, "fid": fid,
            "class_accuracy": 0.5}


def test_first_reach_interpolates_between_evaluations(qvc):
    series = [point("m", 1, 10, 100, 90.0), point("m", 2, 20, 200, 50.0), point("m", 3, 30, 300, 30.0)]
    reach = qvc.first_reach(series, 40.0, "train_seconds")
    assert reach == {"first_point": 30.0, "interpolated": pytest.approx(25.0)}  # 40 lies halfway from 50 to 30
    assert qvc.first_reach(series, 90.0, "train_macs") == {"first_point": 100.0, "interpolated": 100.0}
    assert qvc.first_reach(series, 10.0, "train_seconds") is None


def test_summary_fractions_are_of_dit_final_time_and_flops(qvc):
    points = [point("dit", 1, 50, 1000, 80.0), point("dit", 2, 100, 2000, 40.0),
              point("maskdit", 1, 25, 400, 60.0), point("maskdit", 2, 50, 800, 40.0), point("maskdit", 3, 100, 1600, 20.0),
              point("never", 1, 100, 900, 41.0)]
    summary = qvc.summarize(points)
    assert summary["target_fid"] == 40.0
    rows = summary["variants"]
    assert rows["dit"]["fraction_of_dit_train_seconds"] == {"first_point": 1.0, "interpolated": 1.0}
    assert rows["maskdit"]["fraction_of_dit_train_seconds"] == {"first_point": 0.5, "interpolated": 0.5}
    assert rows["maskdit"]["fraction_of_dit_train_macs"] == {"first_point": 0.4, "interpolated": 0.4}
    assert rows["maskdit"]["final_fid"] == 20.0 and rows["maskdit"]["best_fid"] == 20.0
    assert rows["never"]["fraction_of_dit_train_seconds"] is None
    assert "not reached" in qvc.format_table(summary)
    with pytest.raises(ValueError, match="baseline"):
        qvc.summarize([p for p in points if p["variant"] != "dit"])


def test_variant_specs_differ_only_where_the_recipe_says(qvc):
    dit = qvc.variant_spec("dit", 100)
    maskdit = qvc.variant_spec("maskdit", 100, unmasking_steps=10)
    assert dit.model.decoder_depth == 0 and maskdit.model.decoder_depth == 2
    assert dit.model.model_copy(update={"decoder_depth": 2}) == maskdit.model
    assert dit.train.total_steps == maskdit.train.total_steps == 100
    assert [p.steps for p in maskdit.train.phases] == [90, 10]
    assert maskdit.train.phases[1].masking.name == "none"
    for field in ("batch_size", "lr", "warmup_steps", "grad_clip", "ema", "precision"):
        assert getattr(dit.train, field) == getattr(maskdit.train, field)
    assert dit.losses.noise == maskdit.losses.noise and dit.sampler == maskdit.sampler
    assert [t.name for t in qvc.variant_spec("maskdit-nomae", 100, unmasking_steps=10).losses.terms] == ["dsm"]
    assert qvc.variant_spec("maskdit-block", 100, unmasking_steps=10).masking.name == "block"


def test_tiny_run_writes_points_plot_and_summary(qvc, tmp_path, capsys):
    out = tmp_path / "qvc.json"
    code = qvc.main(["--quick", "--variants", "dit", "maskdit", "--train-seconds", "0.5", "--num-samples", "16",
                     "--sampler-steps", "1", "--calibration-steps", "8", "--work-dir", str(tmp_path / "work"),
                     "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    points = result["points"]
    assert {p["variant"] for p in points} == {"dit", "maskdit"}
    for name in ("dit", "maskdit"):
        series = sorted((p for p in points if p["variant"] == name), key=lambda p: p["step"])
        assert [p["step"] for p in series] == [10, 18, 20]  # 20 steps at least; evaluations at 0.5, 0.9, 1.0
        seconds = [p["train_seconds"] for p in series]
        macs = [p["train_macs"] for p in series]
        assert seconds == sorted(seconds) and seconds[0] > 0
        assert macs == sorted(macs) and macs[0] > 0
    masked = {p["step"]: p for p in points if p["variant"] == "maskdit"}
    dit = {p["step"]: p for p in points if p["variant"] == "dit"}
    assert masked[18]["phase"] == "main" and masked[20]["phase"] == "unmasking"
    # FLOPs follow the mask: 18 masked steps of MaskDiT cost less than 18 unmasked steps of DiT
    assert masked[18]["train_macs"] < dit[18]["train_macs"]
    assert "time to DiT FID" in capsys.readouterr().out
    # DiT reaches its own final FID by its last evaluation at the latest
    assert 0 < result["summary"]["variants"]["dit"]["fraction_of_dit_train_seconds"]["first_point"] <= 1.0


def test_refuses_a_work_dir_it_did_not_write(qvc, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        qvc.main(["--quick", "--work-dir", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert (tmp_path / "precious.txt").read_text() == "keep me"
