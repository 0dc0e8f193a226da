"""``python -m maskdit.evaluate`` on a tiny (untrained) checkpoint, and the sampling it relies on."""

import json
import warnings

import pytest
import torch

from maskdit.app.evaluation import evaluate_denoiser
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict
from maskdit.core import build_denoiser
from maskdit.eval.generation import balanced_labels, generate_batches, image_seed
from maskdit.io.jsonl import read_metrics
from maskdit.app.commands.evaluate import main
from maskdit.io.checkpoint import save_checkpoint
from maskdit.samplers import build_sampler

TINY = [
    "model.depth=1", "model.hidden_size=32", "model.num_heads=1", "model.patch_size=8", "model.decoder_depth=1",
    "model.decoder_hidden_size=32", "model.decoder_num_heads=1", "sampler.steps=2",
    "eval.num_samples=30", "eval.batch_size=16", 'eval.metrics=["fid","class_accuracy","precision_recall"]',
    "eval.grid_per_class=2",
]


def tiny_spec(*extra):
    return ExperimentSpec.model_validate(apply_overrides(load_spec_dict("default"), [*TINY, *extra]))


@pytest.fixture()
def run_dir(tmp_path):
    spec = tiny_spec()
    state = build_denoiser(spec.model).state_dict()
    ema = {name: value.clone() * 0.5 for name, value in state.items()}
    save_checkpoint(tmp_path / "checkpoints", 10, {"model": state, "ema": ema},
                    {"step": 10, "spec": spec.model_dump(mode="json")}, keep=2)
    return tmp_path


def test_cli_writes_metrics_grid_and_plot(run_dir, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 30 samples of 128-d features: the few-samples warning is expected
        assert main([str(run_dir), "--no-progress"]) == 0
        assert main([str(run_dir / "checkpoints" / "step-00000010"), "--no-progress", "--weights", "model",
                     "--set", "eval.num_samples=20"]) == 0
    out = capsys.readouterr().out
    assert "fid:" in out and "class_accuracy:" in out and "samples: 20" in out
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["num_samples"] for r in records] == [30, 20] and all(r["step"] == 10 for r in records)
    assert {"fid", "precision", "recall", "class_accuracy", "clipped_fraction"} <= set(records[0])
    assert json.loads((run_dir / "eval.json").read_text())["num_samples"] == 20
    assert (run_dir / "samples.png").stat().st_size > 0 and (run_dir / "eval_metrics.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["{run}/nowhere"], "nowhere: no such file or folder"),
    (["{run}/checkpoints/step-00000010/state.json"], "a file; give a run or checkpoint folder"),
    (["{run}", "--set", "eval.num_samples=0"], "nothing to evaluate"),
    (["{run}", "--set", "eval.metrics=[\"inception_score\"]"], "eval.metrics"),
    (["{run}", "--set", "eval.features=\"inception\"", "--set", "eval.inception_weights=\"{run}/none.pth\""],
     "FID Inception weights not found"),
])
def test_cli_bad_input_exits_2_with_one_clear_line(run_dir, capsys, argv, message):
    assert main([arg.format(run=run_dir) for arg in argv] + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_samples_do_not_depend_on_the_batch_size():
    spec = tiny_spec()
    denoiser = build_denoiser(spec.model).eval()
    sampler = build_sampler(spec.sampler, null_label=spec.model.num_classes)
    common = dict(num_samples=6, shape=(1, 32, 32), num_classes=10, seed=3)
    one = torch.cat([x for x, _ in generate_batches(denoiser, sampler, batch_size=6, **common)])
    two = torch.cat([x for x, _ in generate_batches(denoiser, sampler, batch_size=4, **common)])
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)
    assert balanced_labels(12, 10).tolist() == [*range(10), 0, 1] and balanced_labels(3, 0) is None
    assert len({image_seed(s, i) for s in range(3) for i in range(1000)}) == 3000


def test_unconditional_model_skips_class_accuracy(tmp_path):
    spec = tiny_spec("model.num_classes=0", "sampler.cfg_scale=1", "eval.num_samples=8", 'eval.metrics=["fid","class_accuracy"]')
    denoiser = build_denoiser(spec.model).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = evaluate_denoiser(denoiser, Experiment(spec), step=5, out_dir=tmp_path)
    assert denoiser.training  # sampled in eval mode, handed back as it came
    assert "class_accuracy" not in record and record["fid"] > 0 and record["num_samples"] == 8
    assert (tmp_path / "samples.png").is_file()


def test_cli_evaluates_a_native_export_with_a_spec_for_the_rest(tmp_path, capsys):
    from maskdit.interop import save_native

    spec = tiny_spec()
    path = save_native(build_denoiser(spec.model), tmp_path / "model")
    argv = [str(path), "--no-progress", "--set", "eval.num_samples=12", "--set", "sampler.steps=2",
            "--set", 'eval.metrics=["class_accuracy"]', "--set", "eval.grid_per_class=1"]
    assert main(argv) == 0
    assert (tmp_path / "samples.png").is_file() and read_metrics(tmp_path / "metrics.jsonl")[0]["step"] is None
    assert main(argv + ["--set", "model.depth=2"]) == 2
    assert "cannot change the model" in capsys.readouterr().err
