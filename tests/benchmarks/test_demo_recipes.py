"""benchmarks/demo_recipes/: every recipe is a valid spec and every record was run with its recipe; a
tiny recipe trains, is swept, resumes without redoing anything, and the report gives medians over
seeds (the committed record's as before); bad input exits 2."""

from __future__ import annotations

import json

import pytest

from maskdit.app.experiment_spec import ExperimentSpec, apply_overrides, load_spec_dict, parse_override
from maskdit.core import training_flops
from tests.benchmarks.scripts import BENCHMARKS, TINY_MODEL, golden, load_study

TINY = TINY_MODEL + ["train.phases.0.steps=2", "train.phases.1.steps=1", "train.warmup_steps=0",
                     "eval.num_samples=16", "sampler.steps=2"]
TINY_PATCH = dict(parse_override(item) for item in TINY)  # the same overrides as a JSON patch


@pytest.fixture(scope="module")
def study():
    return load_study("demo_recipes", "recipes", "sweep", "demo_recipes")


@pytest.fixture(scope="module")
def bench(study):
    return study["demo_recipes"]


@pytest.fixture(scope="module")
def recipes(study):
    return study["recipes"]


def run_macs(spec: ExperimentSpec) -> float:
    """Training MACs of a whole run: each phase's steps x batch at its constant mask ratio."""
    total = 0.0
    for phase in spec.train.phases:
        masking = phase.masking or spec.masking
        ratio = 0.0 if masking.name == "none" else masking.ratio
        total += phase.steps * spec.train.batch_size * training_flops(spec.model, mask_ratio=ratio)
    return total


def recipe_spec(recipes, name: str) -> ExperimentSpec:
    data = load_spec_dict(recipes.BASE_PRESET)
    return ExperimentSpec.model_validate(apply_overrides(data, recipes.overrides(recipes.RECIPES[name])))


def test_every_recipe_is_a_valid_spec_that_costs_what_the_base_costs(recipes):
    base = ExperimentSpec.model_validate(load_spec_dict(recipes.BASE_PRESET))
    assert recipes.RECIPES["base"] == {}
    for name in recipes.RECIPES:
        spec = recipe_spec(recipes, name)
        # a recipe may change what a step does, never what the run costs
        if (spec.model, spec.train.batch_size) == (base.model, base.train.batch_size):
            assert [p.steps for p in spec.train.phases] == [p.steps for p in base.train.phases], name
        else:  # another model or batch: its steps are sized to the preset's wall-clock, which FLOPs bound from above
            low = 0.0 if name in recipes.SHORTER else 0.7  # those are sized to make demo's time target instead
            assert low <= run_macs(spec) / run_macs(base) <= 1.0, name
    wsd = recipe_spec(recipes, "wsd")
    assert wsd.train.phases[0].lr_decay.final == 0.25 and wsd.train.phases[1].lr_decay.final == 0.0


def test_the_default_preset_is_the_recipe_d4w96_ln_2600_at_guidance_2(recipes):
    """make demo runs what the study measured: the same model, objective, data and training as the
    recipe (the absent decoder's unused width aside), sampled at guidance 2 instead of 2.5."""
    def trained(spec: ExperimentSpec) -> dict:
        data = spec.model_dump(mode="json")
        del data["name"], data["model"]["decoder_hidden_size"], data["model"]["decoder_num_heads"]
        return data

    default, recipe = ExperimentSpec.model_validate(load_spec_dict("default")), recipe_spec(recipes, "d4w96-ln-2600")
    assert default.model.decoder_depth == recipe.model.decoder_depth == 0
    assert default.sampler.cfg_scale == 2.0 and recipe.sampler.cfg_scale == 2.5
    recipe = recipe.model_copy(update={"sampler": recipe.sampler.model_copy(update={"cfg_scale": 2.0})})
    assert trained(default) == trained(recipe)


def test_every_committed_run_was_run_with_its_recipe_as_it_stands(recipes):
    """A record stores its recipe as --set arguments: the patch, rendered, must still give them."""
    study = json.loads((BENCHMARKS / "demo_recipes" / "demo_recipes.json").read_text())["runs"]
    assert len(study) >= 20
    for name, entry in study.items():
        assert entry["overrides"] == recipes.overrides(recipes.RECIPES[entry["recipe"]]), name


def test_report_reproduces_the_committed_table(bench, capsys):
    assert bench.main(["report"]) == 0
    assert capsys.readouterr().out == golden("demo_recipes")


def test_tiny_recipe_trains_sweeps_resumes_and_reports(bench, recipes, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(recipes.RECIPES, "tiny", {**TINY_PATCH, **recipes.RECIPES["wsd"]})
    out, work = tmp_path / "study.json", tmp_path / "runs"
    args = ["run", "--recipes", "tiny", "--seeds", "0", "1", "--work-dir", str(work), "--cfg", "2",
            "--interval", "none", "0.1,8", "--num-samples", "12", "--threads", "1", "--out", str(out)]
    assert bench.main(args) == 0
    study = json.loads(out.read_text())["runs"]
    assert sorted(study) == ["tiny-s0", "tiny-s1"]
    for name, entry in study.items():
        assert entry["eval"]["step"] == 3 and entry["wall_seconds"] > 0
        assert json.loads((work / name / "spec.json").read_text())["seed"] == entry["seed"]
        assert sorted(tuple(r["interval"] or ()) for r in entry["sweep"]) == [(), (0.1, 8.0)]
    report = capsys.readouterr().out
    assert "| tiny | Euler 2, cfg 2, sigma in [0.1, 8] | 0,1 |" in report
    fids = sorted(r["fid"] for e in study.values() for r in e["sweep"] if r["interval"] is None)
    assert f"{(fids[0] + fids[1]) / 2:.1f} ({fids[0]:.1f}-{fids[1]:.1f})" in report  # median and range

    mtimes = {name: (work / name / "eval.json").stat().st_mtime_ns for name in study}
    assert bench.main(args) == 0  # everything is there: nothing trains or samples again
    assert json.loads(out.read_text())["runs"] == study
    assert {name: (work / name / "eval.json").stat().st_mtime_ns for name in study} == mtimes
    assert "training in" not in capsys.readouterr().out


def test_report_keeps_stochastic_rows_apart(bench):
    row = {"steps": 9, "cfg": 2.5, "interval": [0.1, 8.0], "fid": 20.0, "class_accuracy": 0.99, "recall": 0.4}
    study = {"runs": {"base-s0": {"recipe": "base", "seed": 0, "sweep": [row, {**row, "s_churn": 4.0, "fid": 18.0}]}}}
    report = bench.format_report(study)
    assert "| base | Euler 9, cfg 2.5, sigma in [0.1, 8] | 0 | 20.0 (20.0-20.0) |" in report
    assert "| base | Euler 9, cfg 2.5, sigma in [0.1, 8], S_churn 4 | 0 | 18.0 (18.0-18.0) |" in report


def test_an_entry_run_with_other_overrides_is_not_taken_for_the_recipe(bench, tmp_path, capsys):
    out = tmp_path / "study.json"
    out.write_text(json.dumps({"runs": {"base-s0": {"recipe": "base", "seed": 0, "overrides": ["train.ema.decay=0.5"],
                                                    "eval": {"fid": 1.0}}}}))
    assert bench.main(["run", "--recipes", "base", "--seeds", "0", "--work-dir", str(tmp_path), "--out", str(out)]) == 2
    assert "train.ema.decay=0.5" in capsys.readouterr().err


def test_bad_input(bench, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert bench.main(["report", "--out", str(broken)]) == 2
    assert "broken.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["run", "--recipes", "no-such-recipe"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        bench.main(["run", "--threads", "0"])
