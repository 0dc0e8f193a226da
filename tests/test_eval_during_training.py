"""eval.every: the held-out loss of the EMA model, a grid and (when asked) the metrics, every N steps."""

import json
import shutil

import pytest

from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec
from maskdit.app.training_run import train_run
from maskdit.config.errors import InputError
from maskdit.eval.heldout import HeldOutLoss
from maskdit.io import checkpoint as ckpt

TINY = {
    "name": "tiny", "seed": 0,
    "model": {"input_size": 32, "in_channels": 1, "patch_size": 8, "depth": 1, "hidden_size": 16, "num_heads": 1,
              "decoder_depth": 0, "num_classes": 10},
    "masking": {"name": "random", "ratio": 0.5}, "sampler": {"name": "euler", "steps": 2},
    "losses": {"terms": [{"name": "dsm"}]},
    "train": {"steps": 6, "batch_size": 8, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 10,
              "ema": {"decay": 0.5}},
    "eval": {"num_samples": 0, "every": 2, "batch_size": 20, "grid_per_class": 1},
}


def spec_with(**sections) -> ExperimentSpec:
    return ExperimentSpec.model_validate({**TINY, **{k: {**TINY[k], **v} for k, v in sections.items()}})


def lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def heldout_of_checkpoint(spec: ExperimentSpec, run_dir, step: int) -> tuple[float, list[float]]:
    """HeldOutLoss of the EMA weights the checkpoint of ``step`` holds, computed afresh."""
    denoiser = Experiment(spec).denoiser()
    state = denoiser.state_dict()
    for name, value in ckpt.load_checkpoint(ckpt.step_dir(run_dir / "checkpoints", step)).tensors["ema"].items():
        state[name].copy_(value.to(state[name].dtype))
    return HeldOutLoss(spec, batch_size=spec.eval.batch_size)(denoiser)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("every")
    spec = spec_with()
    train_run(Experiment(spec), root / "tiny")
    return spec, root / "tiny"


def test_heldout_lines_at_every_nth_step_equal_the_heldout_loss_of_that_steps_ema(evaluated):
    spec, run_dir = evaluated
    heldout = [r for r in lines(run_dir) if r.get("kind") == "heldout"]
    assert [r["step"] for r in heldout] == [2, 4, 6]
    for record in heldout:
        loss, per_sigma = heldout_of_checkpoint(spec, run_dir, record["step"])
        assert record["heldout_loss"] == pytest.approx(loss, rel=1e-6)
        assert record["per_sigma"] == pytest.approx(per_sigma, rel=1e-6) and len(per_sigma) == 8
    assert heldout[0]["heldout_loss"] != heldout[-1]["heldout_loss"]  # the EMA moved: not one model scored thrice
    for step in (2, 4, 6):
        assert (run_dir / "samples" / f"eval-{step:08d}.png").is_file()
    assert not [r for r in lines(run_dir) if r.get("kind") == "eval"]  # metrics only when asked
    assert (run_dir / "eval_metrics.png").is_file()  # the held-out curve


def test_evaluating_leaves_training_untouched(evaluated, tmp_path):
    _, run_dir = evaluated
    plain = spec_with(eval={"every": None})
    train_run(Experiment(plain), tmp_path / "tiny")
    trained = [r for r in lines(run_dir) if "loss" in r]
    for record in trained:
        record.pop("img_per_s")
    reference = [r for r in lines(tmp_path / "tiny") if "loss" in r]
    for record in reference:
        record.pop("img_per_s")
    assert trained == reference and len(trained) == 6
    assert not (tmp_path / "tiny" / "samples").exists()


def test_metrics_during_training_only_when_asked(tmp_path):
    spec = spec_with(eval={"num_samples": 20, "metrics_during_training": True})
    result = train_run(Experiment(spec), tmp_path / "tiny")
    evaluations = [r for r in lines(tmp_path / "tiny") if r.get("kind") == "eval"]
    assert [r["step"] for r in evaluations] == [2, 4, 6]  # 2 and 4 during training; 6 the final evaluation's
    assert all(0.0 <= r["class_accuracy"] <= 1.0 and r["fid"] > 0 for r in evaluations)
    assert result.eval["step"] == 6
    with pytest.raises(ValueError, match="metrics_during_training needs"):
        spec_with(eval={"every": None, "metrics_during_training": True})


@pytest.mark.parametrize("lost_line", [False, True], ids=["killed-after-evaluating", "killed-before-evaluating"])
def test_a_resumed_run_logs_each_heldout_step_once(evaluated, tmp_path, lost_line):
    """The run stopped after step 4 (its checkpoint written; its held-out line written or not), the
    checkpoint of step 6 lost: resuming gives one line per step, with the uninterrupted values."""
    spec, full = evaluated
    run_dir = tmp_path / "tiny"
    shutil.copytree(full, run_dir)
    shutil.rmtree(ckpt.step_dir(run_dir / "checkpoints", 6))
    kept = [r for r in lines(full) if r["step"] <= 4 and not (lost_line and r.get("kind") == "heldout" and r["step"] == 4)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    train_run(Experiment(spec), run_dir, resume=True)
    heldout = [r for r in lines(run_dir) if r.get("kind") == "heldout"]
    assert [r["step"] for r in heldout] == [2, 4, 6]
    want = {r["step"]: r["heldout_loss"] for r in lines(full) if r.get("kind") == "heldout"}
    assert {r["step"]: r["heldout_loss"] for r in heldout} == pytest.approx(want, rel=1e-6)


def test_eval_every_on_data_without_a_heldout_split_is_a_spec_error(tmp_path):
    spec = ExperimentSpec.model_validate({**TINY, "model": {**TINY["model"], "in_channels": 3},
                                          "data": {"name": "imagefolder", "path": str(tmp_path / "none"),
                                                   "num_classes": 10, "resolution": 32}})
    with pytest.raises(InputError, match=r"eval\.every: the held-out loss needs a dataset with a held-out split"):
        train_run(Experiment(spec), tmp_path / "run")
    assert not (tmp_path / "run").exists()
