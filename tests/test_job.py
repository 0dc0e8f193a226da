"""The main job end to end on the embedded digits: train a tiny MaskDiT, sample, evaluate."""

import json

import pytest

from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.app.experiment import Experiment
from maskdit.app.training_run import train_run
from maskdit.app.commands.build import main
from maskdit.io import checkpoint as ckpt
from maskdit.train.compile import compile_model

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 32, "num_heads": 2,
              "decoder_depth": 1, "decoder_hidden_size": 32, "decoder_num_heads": 2, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5},
    "sampler": {"name": "heun", "steps": 2},
    "train": {"phases": [{"name": "masked", "steps": 24},
                         {"name": "unmasking", "steps": 6, "masking": {"name": "none"}, "loss_terms": [{"name": "dsm"}]}],
              "batch_size": 32, "lr": 3e-3, "log_every": 5, "checkpoint_every": 10, "ema": {"decay": 0.9}},
    "eval": {"num_samples": 20, "batch_size": 20, "grid_per_class": 1},
}


def test_tiny_run_on_digits_lowers_loss_and_writes_every_output(tmp_path):
    spec = ExperimentSpec.model_validate(TINY)
    result = train_run(Experiment(spec), tmp_path / "tiny")
    history = result.state.history
    assert len(history) == 30 and result.state.skipped == 0
    assert sum(history[-6:]) / 6 < 0.8 * sum(history[:6]) / 6
    for name in ("spec.json", "metrics.jsonl", "loss.png", "samples.png", "eval.json"):
        assert (tmp_path / "tiny" / name).is_file(), name
    record = json.loads((tmp_path / "tiny" / "eval.json").read_text())
    assert record["num_samples"] == 20 and 0.0 <= record["class_accuracy"] <= 1.0 and record["fid"] > 0
    lines = [json.loads(line) for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    ratios = {line["phase"]: line["mask_ratio"] for line in lines if "mask_ratio" in line}
    assert ratios == {"masked": 0.5, "unmasking": 0.0}
    assert ExperimentSpec.model_validate_json((tmp_path / "tiny" / "spec.json").read_text()) == spec


def test_rerun_without_resume_refuses_and_resume_continues(tmp_path, capsys):
    spec_path = tmp_path / "tiny.json"
    spec_path.write_text(json.dumps({**TINY, "eval": {"num_samples": 0}}))
    args = [str(spec_path), "--runs", str(tmp_path), "--set", "train.phases=[{\"name\":\"a\",\"steps\":4}]"]
    assert main(args) == 0
    assert main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    more = [str(spec_path), "--runs", str(tmp_path), "--resume", "--set", "train.phases=[{\"name\":\"a\",\"steps\":6}]"]
    assert main(more) == 0
    assert ckpt.latest_checkpoint(tmp_path / "tiny" / "checkpoints").name == "step-00000006"


def test_compile_switch_compiles_each_block_in_place():
    from maskdit.core import build_denoiser

    denoiser = build_denoiser(ExperimentSpec.model_validate(TINY).model)
    keys = list(denoiser.state_dict())
    compile_model(denoiser)
    blocks = list(denoiser.net.blocks) + list(denoiser.net.decoder_blocks)
    assert blocks and all(block._compiled_call_impl is not None for block in blocks)
    assert list(denoiser.state_dict()) == keys


@pytest.mark.parametrize("bad", ["train.steps=-1", "masking.ratio=2"])
def test_cli_overrides_are_validated_before_training(bad, tmp_path, capsys):
    assert main(["default", "--runs", str(tmp_path), "--set", bad]) == 2
    assert not any(tmp_path.iterdir())
