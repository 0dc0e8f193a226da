"""REPA through the application: both examples train, sample and evaluate end to end; the run's
checkpoints hold the projector beside the network, and sampling, export and resuming handle it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from maskdit.app.commands.build import main as build_main
from maskdit.app.commands.export import main as export_main
from maskdit.app.commands.sample import main as sample_main
from maskdit.app.experiment import Experiment
from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides
from maskdit.app.run_loading import load_run
from maskdit.app.summary import summarize
from maskdit.interop import load_native
from maskdit.io.checkpoint import latest_checkpoint, load_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["train.batch_size=8", "train.warmup_steps=1", "train.checkpoint_every=2", "eval.num_samples=10",
        "eval.batch_size=10", "sampler.steps=2"]


def example(name: str, *overrides: str) -> dict:
    return apply_overrides(json.loads((EXAMPLES / f"{name}.json").read_text()), list(overrides))


@pytest.mark.filterwarnings("ignore::maskdit.eval.stats.FewSamplesWarning")  # 10 samples: a smoke run, not an FID
@pytest.mark.parametrize("name, steps", [("digits-repa", ["train.phases.0.steps=3"]),
                                         ("digits-sprint-repa", ["train.phases.0.steps=2", "train.phases.1.steps=1"])])
def test_each_example_trains_samples_evaluates_and_exports(tmp_path, capsys, name, steps):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(example(name, *steps, *TINY)))
    assert build_main([str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all("repa" in r["parts"] for r in records if r.get("phase") in ("dense", "sparse"))
    assert json.loads((run / "eval.json").read_text())
    tensors = load_checkpoint(latest_checkpoint(run / "checkpoints")).tensors
    assert any(key.startswith("heads.repa.") for key in tensors["model"])  # trained and saved with the model
    denoiser, _ = load_run(run)
    assert not hasattr(denoiser, "heads")  # never part of the sampled model
    assert sample_main([str(run), "--n", "2", "--steps", "2", "--out", str(tmp_path / "g.png"), "--no-progress"]) == 0
    assert export_main([str(run), "--format", "native", "--out", str(tmp_path / "export")]) == 0
    exported = load_native(tmp_path / "export")
    assert not any("heads" in key or "projector" in key for key in exported.state_dict())
    capsys.readouterr()
    # resuming restores the projector too: one more step of the first phase from the checkpoint
    first = int(steps[0].split("=")[1]) + 1
    assert build_main([str(run), "--resume", "--set", f"train.phases.0.steps={first}"]) == 0
    steps_logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged[-1] == first + sum(int(s.split("=")[1]) for s in steps[1:])
    # the checkpoint it resumed from held the projector (loaded strictly), and the new one holds it again
    assert any(k.startswith("heads.repa.") for k in load_checkpoint(latest_checkpoint(run / "checkpoints")).tensors["model"])


def test_the_dry_run_counts_the_projector_and_the_encoder():
    rows = dict(summarize(Experiment(ExperimentSpec.model_validate(example("digits-repa")))))
    assert "after block 2 of 6 (64 of 64 present)" in rows["alignment"]
    assert "per distinct image (cached)" in rows["alignment"] and "neither runs while sampling" in rows["alignment"]
    sprint = dict(summarize(Experiment(ExperimentSpec.model_validate(example("digits-sprint-repa")))))
    assert "(16 of 64 present)" in sprint["alignment"]  # block 1 is in SPRINT's sparse span: the kept tokens


@pytest.mark.parametrize("overrides, message", [
    (["losses.terms.1.depth=7"], r"repa.depth 7 is deeper than model.depth 6"),
    (["losses.terms.1.encoder={\"name\": \"nope\"}"], r"nope"),
])
def test_spec_errors_name_the_fields(overrides, message):
    with pytest.raises(ValidationError, match=message):
        ExperimentSpec.model_validate(example("digits-repa", *overrides))


def latent_repa_spec(folder: Path) -> dict:
    """The ImageNet SiT + REPA example at toy scale: a tiny SiT on 4x8x8 latents of 16 px crops
    (4x4 tokens), aligned to a randomly initialised DINOv2-S read at 28 px (2x2 patch features,
    resized onto the token grid); no evaluation."""
    spec = json.loads((EXAMPLES / "imagenet256-sit-xl2-repa.json").read_text())
    spec["model"] = {"input_size": 8, "in_channels": 4, "num_classes": 2, "patch_size": 2, "depth": 2,
                     "hidden_size": 32, "num_heads": 2, "decoder_depth": 0, "process": spec["model"]["process"]}
    repa = spec["losses"]["terms"][1]
    repa.update(depth=1, projector_dim=16,
                encoder={"name": "dinov2", "size": "small", "image_size": 28, "weights": "random"})
    spec["data"] = {**spec["data"], "path": str(folder), "resolution": 8, "num_classes": 2, "flip": True}
    spec["sampler"] = {**spec["sampler"], "steps": 2}
    spec["train"] = {**spec["train"], "phases": [{"name": "aligned", "steps": 2}], "batch_size": 4, "device": "cpu",
                     "precision": "fp32", "log_every": 1, "checkpoint_every": 2, "sample_every": None}
    spec["eval"] = {**spec["eval"], "num_samples": 0}
    return spec


def test_repa_trains_on_latents_that_keep_their_images(tmp_path, capsys):
    pytest.importorskip("diffusers")
    pytest.importorskip("timm")
    from maskdit.app.commands.latents import main as latents_main
    from tests.datasets.folders import make_image_folder, make_tiny_vae

    vae, images = make_tiny_vae(tmp_path / "vae"), make_image_folder(tmp_path / "images", per_class=4)
    common = ["encode", "--vae", str(vae), "--data", str(images), "--resolution", "16", "--flip"]
    assert latents_main([*common, "--out", str(tmp_path / "kept"), "--keep-images"]) == 0
    assert latents_main([*common, "--out", str(tmp_path / "plain")]) == 0
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(latent_repa_spec(tmp_path / "kept")))
    assert build_main([str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "imagenet256-sit-xl2-repa"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    aligned = [r["parts"]["repa"] for r in records if "parts" in r and "repa" in r["parts"]]
    assert len(aligned) == 2 and all(-1 <= value <= 1 for value in aligned)
    capsys.readouterr()
    # the same spec on a folder without the crops stops before the first step, naming the fix
    spec.write_text(json.dumps({**latent_repa_spec(tmp_path / "plain"), "name": "plain"}))
    assert build_main([str(spec), "--runs", str(tmp_path / "runs")]) != 0
    assert "--keep-images" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "plain" / "checkpoints").exists() or \
        not any((tmp_path / "runs" / "plain" / "checkpoints").iterdir())
