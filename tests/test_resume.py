"""``build --resume`` that helps: a run folder continues in place with its own spec, a spec that
differs from the run's names the fields, a copied folder is noticed, and the --plugin advice read
from a checkpoint is quoted for the shell."""

import json
import shlex
import shutil

import pytest
import torch

from maskdit.app.commands.build import main
from maskdit.app.commands.sample import main as sample
from maskdit.io import checkpoint as ckpt
from maskdit.io.jsonl import read_jsonl
from tests.test_run_folder import TINY, spec_file


def steps_logged(run):
    return [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


def error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_a_run_folder_resumes_in_place_with_its_own_spec_and_new_sets(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main([spec, "--runs", str(tmp_path), "--set", "train.lr=0.002", "--set", "train.steps=6"]) == 0
    run = tmp_path / "tiny"
    capsys.readouterr()
    assert main([str(run), "--resume", "--set", "train.steps=10"]) == 0
    assert "resuming from step 6" in capsys.readouterr().err
    assert steps_logged(run) == list(range(1, 11))
    saved = json.loads((run / "spec.json").read_text())
    assert saved["train"]["lr"] == 0.002 and saved["train"]["steps"] == 10  # its own lr, the new length


def test_a_run_folder_without_resume_says_how_to_continue_it(tmp_path, capsys):
    runs = tmp_path / "my runs"
    assert main([spec_file(tmp_path), "--runs", str(runs)]) == 0
    capsys.readouterr()
    assert main([str(runs / "tiny")]) == 2
    assert error_lines(capsys) == [f"error: {runs / 'tiny'}: a run folder; continue it with: python -m maskdit.build "
                                   f"{shlex.quote(str(runs / 'tiny'))} --resume"]


def test_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path), "--resume"]) == 2
    assert error_lines(capsys) == [f"error: {tmp_path}: a folder, not a spec file or a run folder "
                                   "(no spec.json or checkpoints/)"]


def test_resuming_without_the_runs_sets_names_each_differing_field_once(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main([spec, "--runs", str(tmp_path), "--set", "train.lr=0.002", "--set", "train.steps=6"]) == 0
    capsys.readouterr()
    assert main([spec, "--runs", str(tmp_path), "--resume"]) == 2
    lines = error_lines(capsys)
    assert lines[1:] == ["error: train.steps: run's 6 vs given 8", "error: train.lr: run's 0.002 vs given 0.001"]
    assert "differs from the one" in lines[0] and "in 2 field(s)" in lines[0]
    assert f"python -m maskdit.build {tmp_path / 'tiny'} --resume" in lines[0]
    assert ckpt.latest_checkpoint(tmp_path / "tiny" / "checkpoints").name == "step-00000006"  # nothing trained
    # asked for on this command line: a change, not a mismatch
    assert main([spec, "--runs", str(tmp_path), "--resume", "--set", "train.lr=0.001", "--set", "train.steps=8"]) == 0
    assert steps_logged(tmp_path / "tiny") == list(range(1, 9))


def test_the_model_of_a_run_cannot_change_on_resume(tmp_path, capsys):
    spec = spec_file(tmp_path)
    assert main([spec, "--runs", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "tiny"), "--resume", "--set", "model.hidden_size=32"]) == 2
    lines = error_lines(capsys)
    assert lines[1:] == ["error: model.hidden_size: run's 16 vs given 32 (a run's model cannot change: "
                         "its weights fix it)"]
    assert not any("written for a different model spec" in line for line in lines)


def test_a_copied_run_folder_is_noticed_and_continues_in_place(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main([spec_file(tmp_path), "--runs", str(runs)]) == 0
    original = runs / "tiny"
    shutil.copytree(original, runs / "copy")
    before = (original / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main([str(runs / "copy" / "spec.json"), "--runs", str(runs), "--resume", "--set", "train.steps=10"]) == 2
    [line] = error_lines(capsys)
    assert "it names the run 'tiny'" in line and "copied or renamed" in line
    command = line.split("in place: ")[1]
    assert command == f"python -m maskdit.build {runs / 'copy'} --resume --set train.steps=10"
    assert (original / "metrics.jsonl").read_text() == before  # the original run was not continued
    assert main(shlex.split(command)[3:]) == 0
    err = capsys.readouterr().err
    assert "continuing it in place, renamed to 'copy'" in err and "resuming from step 8" in err
    assert steps_logged(runs / "copy") == list(range(1, 11))
    assert json.loads((runs / "copy" / "spec.json").read_text())["name"] == "copy"
    assert (original / "metrics.jsonl").read_text() == before
    assert ckpt.latest_checkpoint(original / "checkpoints").name == "step-00000008"


def test_a_copy_whose_name_is_no_run_name_keeps_the_spec_name(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main([spec_file(tmp_path), "--runs", str(runs)]) == 0
    shutil.copytree(runs / "tiny", runs / "tiny copy")
    capsys.readouterr()
    assert main([str(runs / "tiny copy"), "--resume", "--set", "train.steps=9"]) == 0
    assert "continuing it in place under that name" in capsys.readouterr().err
    assert steps_logged(runs / "tiny copy") == list(range(1, 10))
    assert steps_logged(runs / "tiny") == list(range(1, 9))


HOSTILE = ["evil mod; touch pwned", "\x1b[2Jclear"]


def fake_run_with_plugins(folder):
    """A run folder whose checkpoint records plugin module names no one would trust."""
    spec = {**TINY, "masking": {"name": "not-registered-here"}}
    ckpt.save_checkpoint(folder / "checkpoints", 1, {"model": {"w": torch.zeros(1)}},
                         {"step": 1, "spec": spec, "plugins": HOSTILE}, keep=1)
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


@pytest.mark.parametrize("how", ["build", "resume", "sample"])
def test_plugin_names_from_a_run_are_quoted_for_the_shell(tmp_path, capsys, how):
    run = fake_run_with_plugins(tmp_path / "tiny")
    if how == "build":
        assert main([str(run / "spec.json"), "--runs", str(tmp_path)]) == 2
    elif how == "resume":
        assert main([str(run), "--resume"]) == 2
    else:
        assert sample([str(run), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "pass --plugin 'evil mod; touch pwned' --plugin '\\x1b[2Jclear'" in err
    assert "\x1b" not in err  # the escape reaches the terminal as text


def test_differences_are_leaf_paths_with_list_indices():
    from maskdit.app.resume import differences

    was = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": [1]}
    given = {"a": 1.0, "b": {"c": [1, 3], "f": None}, "e": [1, 2]}
    found = [(path, old, new) for path, old, new in differences(was, given)]
    assert [path for path, _, _ in found] == ["a", "b.c.1", "b.d", "b.f", "e"]  # 1 vs 1.0: a type change too
    assert found[1][1:] == (2, 3) and found[4][1:] == ([1], [1, 2])
    assert list(differences(was, json.loads(json.dumps(was)))) == []
