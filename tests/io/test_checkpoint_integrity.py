"""The checksum covers the whole checkpoint; clean-up and pruning delete only what maskdit wrote."""

import json

import pytest
import torch

from maskdit.io import checkpoint as ckpt
from maskdit.io.files import UnsafePathError

TENSORS = {"model": {"w": torch.ones(2, 2)}, "rng": {"generator": torch.zeros(4, dtype=torch.uint8)}}
GROUPS = [{"params": [0], "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
           "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None}]


def saved(root, step=4, **state):
    return ckpt.save_checkpoint(root, step, TENSORS, {"step": step, "param_groups": GROUPS, **state}, keep=5)


def edit_state(path, change):
    state = json.loads((path / ckpt.STATE).read_text())
    change(state)
    (path / ckpt.STATE).write_text(json.dumps(state))


def test_the_state_digest_matches_and_survives_reformatting(tmp_path):
    path = saved(tmp_path / "checkpoints")
    state = json.loads((path / ckpt.STATE).read_text())
    assert set(state["checksums"]) == {ckpt.TENSORS, ckpt.STATE}
    (path / ckpt.STATE).write_text(json.dumps(state, indent=7, sort_keys=True))  # the same values
    assert ckpt.load_checkpoint(path).step == 4


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s["param_groups"][0].update(maximize=True), "state.json fails its SHA-256 check"),
    (lambda s: s["param_groups"][0].update(lr=1.0), "state.json fails its SHA-256 check"),
    (lambda s: s.update(ema_updates=2), "state.json fails its SHA-256 check"),
    (lambda s: s["checksums"].update({ckpt.TENSORS: "0" * 64}), "state.json fails its SHA-256 check"),
    (lambda s: s.pop("checksums"), "no SHA-256 recorded for tensors.safetensors and state.json"),
    (lambda s: s["checksums"].pop(ckpt.STATE), "no SHA-256 recorded for state.json"),
    (lambda s: s["param_groups"][0].update(betas=["0.9", "0.999"]),
     "param_groups.0.betas.0: Input should be a valid number"),
    (lambda s: s["param_groups"][0].update(lr="fast"), "param_groups.0.lr: Input should be a valid number"),
    (lambda s: s["param_groups"][0].update(maximize="yes"), "param_groups.0.maximize: Input should be a valid boolean"),
    (lambda s: s["param_groups"][0].pop("eps"), "param_groups.0.eps: Field required"),
])
def test_every_edit_of_state_json_is_one_clear_error(tmp_path, change, fragment):
    path = saved(tmp_path / "checkpoints")
    edit_state(path, change)
    with pytest.raises(ckpt.CheckpointError, match=fragment.replace(".", r"\.")) as caught:
        ckpt.load_checkpoint(path)
    assert str(path / ckpt.STATE) in str(caught.value)


def test_a_step_that_disagrees_with_its_folder_is_refused(tmp_path):
    path = saved(tmp_path / "checkpoints")
    moved = path.rename(ckpt.step_dir(tmp_path / "checkpoints", 9))
    with pytest.raises(ckpt.CheckpointError, match="step 4 does not match its folder step-00000009"):
        ckpt.load_checkpoint(moved)


def test_nan_in_state_is_refused_not_a_traceback(tmp_path):
    path = saved(tmp_path / "checkpoints")
    text = (path / ckpt.STATE).read_text().replace('"step": 4', '"step": 4, "extra": NaN')
    (path / ckpt.STATE).write_text(text)
    with pytest.raises(ckpt.CheckpointError, match="holds NaN or Infinity"):
        ckpt.read_state(path)


def test_linked_checkpoint_files_are_not_read(tmp_path):
    path = saved(tmp_path / "checkpoints")
    other = saved(tmp_path / "elsewhere")
    (path / ckpt.TENSORS).unlink()
    (path / ckpt.TENSORS).symlink_to(other / ckpt.TENSORS)
    with pytest.raises(UnsafePathError, match="tensors.safetensors is a symbolic link"):
        ckpt.load_checkpoint(path)


def test_clean_up_and_pruning_delete_only_what_maskdit_wrote(tmp_path):
    root = tmp_path / "checkpoints"
    saved(root, 4)
    ours = [root / ".tmp-step-00000008-4242", root / "step-00000008"]
    ours[0].mkdir()
    (ours[0] / ckpt.TENSORS).write_bytes(b"half")
    ours[1].mkdir()  # a kill between mkdir and rename
    theirs = [root / "step-00000012", root / ".tmp-step-00000016-1", root / ".tmp-x"]
    theirs[0].mkdir()
    (theirs[0] / "photo.jpg").write_bytes(b"jpeg")
    theirs[1].mkdir()
    (theirs[1] / "notes.txt").write_text("mine")
    theirs[2].write_text("mine")
    assert sorted(ckpt.clean_leftovers(root)) == sorted(ours)
    assert all(p.exists() for p in theirs) and (theirs[0] / "photo.jpg").read_bytes() == b"jpeg"
    (ckpt.step_dir(root, 4) / "photo.jpg").write_bytes(b"jpeg")  # a user's file inside an old checkpoint
    for step in (20, 24):
        ckpt.save_checkpoint(root, step, TENSORS, {"step": step, "param_groups": GROUPS}, keep=1)
    assert (ckpt.step_dir(root, 4) / "photo.jpg").exists() and not ckpt.step_dir(root, 20).exists()


def test_a_linked_checkpoints_folder_or_checkpoint_is_never_written_or_deleted(tmp_path):
    outside = tmp_path / "outside"
    (outside / "step-00000001").mkdir(parents=True)
    (outside / ".tmp-step-00000002-1").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="checkpoints is a symbolic link"):
        ckpt.clean_leftovers(run / "checkpoints")
    with pytest.raises(UnsafePathError, match="checkpoints is a symbolic link"):
        saved(run / "checkpoints", 4)
    assert sorted(p.name for p in outside.iterdir()) == [".tmp-step-00000002-1", "step-00000001"]
    (run / "checkpoints").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-00000004").symlink_to(outside / "step-00000001", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="not a checkpoint maskdit wrote"):
        saved(run / "checkpoints", 4)
    assert ckpt.list_checkpoints(run / "checkpoints") == [] and (outside / "step-00000001").is_dir()
