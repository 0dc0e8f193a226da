"""The build CLI: dry-run summaries, JSON Schema, overrides, and one clear line per spec problem."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maskdit.app.experiment_spec import preset_names
from maskdit.app.commands.build import main

BAD_SPECS = Path(__file__).parent / "data" / "bad_specs"
EXAMPLES = Path(__file__).parents[1] / "examples"

# file -> fragments the error output must contain (the field path and what was expected)
EXPECTED = {
    "bad_device.json": ["train.device:", "pattern", "'tpu'"],
    "bad_run_name.json": ["name:", "pattern"],
    "channel_mismatch.json": ["data has 1 channel(s) but model.in_channels is 4"],
    "duplicate_loss_term.json": ["losses:", "each loss term may appear once"],
    "heads_not_dividing.json": ["model:", "hidden_size 100 is not divisible by num_heads 6"],
    "invalid_json.json": ["invalid JSON at line 4, column 3", "Expecting ',' delimiter"],
    "masking_without_name.json": ["masking: needs a 'name' field"],
    "negative_lr.json": ["train.lr:", "greater than 0", "-0.1"],
    "no_loss_terms.json": ["losses.terms:", "at least 1 item"],
    "not_an_object.json": ["a spec must be a JSON object, got list"],
    "not_utf8.json": ["not UTF-8 text"],
    "patch_not_dividing.json": ["model:", "input_size 30 is not divisible by patch_size 4"],
    "ratio_leaves_nothing.json": ["masking ratio up to 0.99 leaves no visible token of the model's 16"],
    "ratio_negative.json": ["masking.ratio:", "greater than or equal to 0", "-0.2"],
    "ratio_one.json": ["masking.ratio:", "less than 1", "1.0"],
    "uniform_reversed.json": ["masking.ratio:", "low (0.7) must not exceed high (0.3)"],
    "unknown_masking.json": ["masking:", "unknown name 'checkers'", "'random', 'block', 'grid', 'none'"],
    "unknown_model_field.json": ["model.widht:", "Extra inputs are not permitted"],
    "unknown_preset.json": ["model:", "unknown model preset 'MaskDiT-Q/2'", "MaskDiT-XL/2"],
    "unknown_sampler.json": ["sampler:", "unknown name 'rk45'", "'heun'"],
    "unknown_schedule.json": ["masking.ratio:", "unknown name 'exponential'", "'cosine'"],
    "unknown_top_field.json": ["colour:", "Extra inputs are not permitted"],
    "wrong_type_steps.json": ["train.steps:", "valid integer", "'many'"],
    "zero_steps.json": ["sampler.steps:", "greater than or equal to 1"],
    "guidance_without_classes.json": ["sampler.cfg_scale is 2.0 but the model is unconditional"],
    "sigma_data_mismatch.json": ["the dsm loss uses sigma_data 1.0 but model.process.sigma_data is 0.5"],
}


def test_every_bad_spec_has_an_expectation():
    files = {path.name for path in BAD_SPECS.glob("*.json")}
    assert files == set(EXPECTED) and len(files) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_exits_2_with_one_line_per_problem(name, capsys):
    code = main([str(BAD_SPECS / name), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in err
    for fragment in EXPECTED[name]:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.json"), "--dry-run"]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_unknown_preset_name_lists_presets(capsys):
    assert main(["no-such-preset", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no bundled preset" in err and "default" in err


def test_unreadable_file(tmp_path, capsys):
    assert main([str(tmp_path), "--dry-run"]) == 2  # a directory is not a readable spec file
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("spec", preset_names() + sorted(str(p) for p in EXAMPLES.glob("*.json")))
def test_presets_and_examples_dry_run(spec, capsys):
    assert main([spec, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "masking" in out and "tokens" in out


def test_dry_run_summary_reports_kept_tokens(capsys):
    assert main(["maskdit-demo", "--dry-run", "--set", "masking.ratio=0.75"]) == 0
    out = capsys.readouterr().out
    assert "encoder sees >= 16 of 64 tokens" in out


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("masking.ratio=1.5", "masking.ratio: Input should be less than 1"),
        ("train.steps=lots", "train.steps:"),
        ("train", "must look like section.field=value"),
        ("name.inner=3", "name is not a section"),
        ("train.nonsense=1", "train.nonsense: Extra inputs are not permitted"),
    ],
)
def test_overrides_are_validated(override, fragment, capsys):
    assert main(["maskdit-demo", "--dry-run", "--set", override]) == 2
    assert fragment in capsys.readouterr().err


def test_a_field_of_another_plugin_kind_names_the_kind_it_was_set_on(capsys):
    # the default preset trains without masking: a ratio belongs to another kind of masking
    assert main(["default", "--dry-run", "--set", "masking.ratio=0.5"]) == 2
    err = capsys.readouterr().err
    assert "masking.ratio: Extra inputs are not permitted: the 'none' masking has no field 'ratio'" in err
    assert 'masking={"name": ..., ...}' in err
    assert main(["default", "--dry-run", "--set", 'masking={"name": "random", "ratio": 0.5}']) == 0
    assert main(["default", "--dry-run", "--set", "train.nonsense=1"]) == 2  # train is no plugin: no hint
    assert capsys.readouterr().err.strip().endswith("train.nonsense: Extra inputs are not permitted (got 1)")


def test_schema_is_json(capsys):
    assert main(["--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "ExperimentSpec"
    assert {"model", "masking", "losses", "sampler", "data", "train", "eval"} <= set(schema["properties"])


def test_module_entry_point_runs_without_traceback():
    bad = subprocess.run(
        [sys.executable, "-m", "maskdit.build", str(BAD_SPECS / "ratio_one.json"), "--dry-run"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "masking.ratio" in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "maskdit.build", "default", "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert good.returncode == 0, good.stderr
    assert "encoder sees" in good.stdout
