"""Path drop through the application: the spec's checks across sections, the dry-run's FLOPs, and a
SPRINT spec with path drop in training and path-drop guidance that trains, samples and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from maskdit.app.commands.build import main as build_main
from maskdit.app.commands.evaluate import main as evaluate_main
from maskdit.app.commands.sample import main as sample_main
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides
from maskdit.app.summary import summarize
from maskdit.core import ModelSpec, build_denoiser, flops_per_forward, sampling_flops, training_flops
from maskdit.interop import save_native

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-sprint-flow.json"
PATH_DROP = ["masking.path_drop=0.1", "train.phases.1.masking.path_drop=0.1", "sampler.path_drop=true"]
TINY_RUN = ["train.phases.0.steps=3", "train.phases.1.steps=2", "train.warmup_steps=1", "train.batch_size=8",
            "train.checkpoint_every=5", "eval.num_samples=10", "eval.batch_size=10", "sampler.steps=3"]


def sprint(*overrides: str) -> dict:
    return apply_overrides(json.loads(EXAMPLE.read_text()), list(overrides))


def test_the_example_with_path_drop_validates():
    spec = ExperimentSpec.model_validate(sprint(*PATH_DROP))
    assert spec.masking.path_drop == 0.1 and spec.sampler.path_drop and spec.sampler.path_drop_label == "null"
    assert ExperimentSpec.model_validate(json.loads(EXAMPLE.read_text())).masking.path_drop == 0.0


@pytest.mark.parametrize("overrides, message", [
    (["model.routing={\"start\": 1}", "masking.path_drop=0.1"],
     r"masking\.path_drop \(0\.1\) replaces the sparse span .* model\.routing\.end is not set"),
    (["model.routing={}", "train.phases.1.masking.path_drop=0.2"],
     r"train\.phases\.1\.masking\.path_drop \(0\.2\) .* model\.routing\.end is not set"),
    (["model.routing={}", "sampler.path_drop=true"], r"sampler\.path_drop .* model\.routing\.end is not set"),
    (["sampler.path_drop=true"], r"sampler\.path_drop guides with the path-dropped model, which this spec never "
                                 r"trains: set masking\.path_drop"),
    (["masking.path_drop=0.1", "losses.terms.0.tokens=visible"], r"the loss dsm averages over the visible tokens"),
    (["model.num_classes=0", "sampler.cfg_scale=3", *PATH_DROP], r"model is unconditional"),
    (["sampler.path_drop_label=same"], r"set path_drop true"),
])
def test_spec_errors_name_the_fields(overrides, message):
    with pytest.raises(ValidationError, match=message):
        ExperimentSpec.model_validate(sprint(*overrides))


def test_same_label_guidance_is_fine_on_an_unconditional_model():
    spec = ExperimentSpec.model_validate(sprint("model.num_classes=0", *PATH_DROP, "sampler.path_drop_label=same"))
    assert spec.sampler.cfg_scale == 3.0 and not spec.sampler.needs_labels


def test_a_bad_path_drop_spec_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(sprint("model.routing={}", "masking.path_drop=0.1")))
    assert build_main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("error") == 1 and "masking.path_drop" in err and "model.routing.end" in err
    assert "Traceback" not in err


def test_the_dry_run_quotes_path_drop_against_cfg():
    spec = ExperimentSpec.model_validate(sprint(*PATH_DROP))
    model = spec.model
    rows = dict(summarize(Experiment(spec)))
    full, weak = flops_per_forward(model), flops_per_forward(model, path_dropped=True)
    guided, cfg = sampling_flops(model, guidance=True, path_drop=True), sampling_flops(model, guidance=True)
    assert guided == full + weak and cfg == 2 * full
    assert rows["sample FLOPs"] == (f"{full / 1e9:.3g} G MACs/sample per network evaluation; {guided / 1e9:.3g} G "
                                    f"with path-drop guidance (full {full / 1e9:.3g} G + path-dropped "
                                    f"{weak / 1e9:.3g} G) vs {cfg / 1e9:.3g} G with cfg's two full passes "
                                    f"({guided / cfg:.2f}x)")
    assert 0.5 < guided / cfg < 0.8  # 2 of 6 blocks dense, 4 sparse: the weak pass is about a third
    expected = training_flops(model, mask_ratio=0.75, path_drop=0.1)
    assert f"expected {expected / 1e9:.3g} G MACs/sample/step at r = 0.75" in rows["path drop"]
    assert "blocks 1-4" in rows["path drop"] and "path drop 0.1" in rows["masking"]
    assert "path-drop guidance 3 (weak branch: null label)" in rows["sampler"]
    plain = dict(summarize(Experiment(ExperimentSpec.model_validate(sprint()))))
    assert "path drop" not in plain and "with guidance" in plain["sample FLOPs"] and "cfg 3" in plain["sampler"]


@pytest.mark.filterwarnings("ignore::maskdit.eval.stats.FewSamplesWarning")  # 10 samples: a smoke run, not an FID
def test_the_sprint_example_with_path_drop_trains_samples_and_evaluates(tmp_path, capsys):
    spec = tmp_path / "sprint.json"
    spec.write_text(json.dumps(sprint(*PATH_DROP, *TINY_RUN)))
    assert build_main([str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "digits-sprint-flow"
    assert json.loads((run / "eval.json").read_text())  # evaluated with path-drop guidance during the build
    out = capsys.readouterr().out
    assert "path-drop guidance 3" in out
    grid = tmp_path / "grid.png"
    assert sample_main([str(run), "--n", "4", "--steps", "2", "--path-drop", "same", "--cfg", "2", "--out", str(grid),
                        "--no-progress"]) == 0
    assert "path-drop guidance 2 (same label)" in capsys.readouterr().out and grid.is_file()
    assert sample_main([str(run), "--n", "2", "--steps", "2", "--set", "sampler.path_drop=false", "--out", str(grid),
                        "--no-progress"]) == 0
    assert ", cfg 3," in capsys.readouterr().out
    assert evaluate_main([str(run), "--set", "eval.num_samples=10", "--out", str(tmp_path / "eval"),
                          "--no-progress"]) == 0
    assert (tmp_path / "eval" / "eval.json").is_file()


def test_sample_refuses_path_drop_on_a_model_that_never_rejoins(tmp_path, capsys):
    spec = ModelSpec(input_size=8, in_channels=1, patch_size=2, depth=1, hidden_size=32, num_heads=2, decoder_depth=1,
                     decoder_hidden_size=16, decoder_num_heads=2, num_classes=3)
    native = save_native(build_denoiser(spec, generator=torch.Generator().manual_seed(0)), tmp_path / "tiny")
    assert sample_main([str(native), "--cfg", "2", "--path-drop", "null", "--out", str(tmp_path / "g.png"),
                        "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --path-drop") and "routing.end" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal of an unknown weak label
        sample_main([str(native), "--path-drop", "maybe"])
    assert exited.value.code == 2 and "invalid choice: 'maybe'" in capsys.readouterr().err
