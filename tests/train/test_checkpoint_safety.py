"""Nothing lost, nothing mixed: checksums, non-finite refusal, fallback to the newest valid
checkpoint, validated state.json, crash leftovers, metrics truncation, a full disk, permissions."""

import errno
import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from maskdit.io.files import file_sha256
from maskdit.io import checkpoint as ckpt
from maskdit.io import jsonl as metrics
from tests.train.test_loop import denoise_loss, trainer


def trained(tmp_path, steps=12):
    t = trainer(tmp_path, denoise_loss(), steps=steps, keep_checkpoints=3)
    t.fit()
    return t, tmp_path / "run" / "checkpoints"


def rewrite_tensors(path, change):
    """Change a checkpoint's tensors and record a matching checksum (a 'validly' written bad file)."""
    flat = load_file(str(path / ckpt.TENSORS))
    change(flat)
    save_file(flat, str(path / ckpt.TENSORS))
    state = json.loads((path / ckpt.STATE).read_text())
    state["checksums"] = {ckpt.TENSORS: file_sha256(path / ckpt.TENSORS)}
    state["checksums"][ckpt.STATE] = ckpt.state_sha256(state)
    (path / ckpt.STATE).write_text(json.dumps(state))


def flip_bit(path, offset_from_end=100):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def test_bit_flip_fails_the_checksum_and_resume_falls_back(tmp_path):
    _, root = trained(tmp_path)
    newest = ckpt.latest_checkpoint(root)
    assert json.loads((newest / ckpt.STATE).read_text())["checksums"][ckpt.TENSORS] == file_sha256(newest / ckpt.TENSORS)
    flip_bit(newest / ckpt.TENSORS)
    with pytest.raises(ckpt.CheckpointError, match=r"step-00000012/tensors.safetensors fails its SHA-256 check"):
        ckpt.load_checkpoint(newest)
    resumed = trainer(tmp_path, denoise_loss(), steps=12, keep_checkpoints=3)
    info = resumed.resume()
    assert info.step == 8 and info.path.name == "step-00000008"
    assert [p.name for p, _ in info.rejected] == ["step-00000012"] and "SHA-256" in info.rejected[0][1]


def test_nan_weights_or_ema_are_never_loaded_and_never_saved(tmp_path):
    t, root = trained(tmp_path)
    newest = ckpt.latest_checkpoint(root)

    def poison(flat):
        key = next(k for k in flat if k.startswith("ema/") and flat[k].is_floating_point() and flat[k].numel())
        flat[key].view(-1)[0] = float("nan")

    rewrite_tensors(newest, poison)
    with pytest.raises(ckpt.CheckpointError, match="non-finite values in ema/"):
        ckpt.load_checkpoint(newest)
    assert trainer(tmp_path, denoise_loss(), steps=12).resume().step == 8
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("inf"))
    with pytest.raises(ckpt.CheckpointError, match="refusing to write checkpoint step 12: non-finite values in model/"):
        t.save()
    assert not list(root.glob(".tmp-*"))


def test_no_valid_checkpoint_is_an_error_naming_each(tmp_path):
    _, root = trained(tmp_path, steps=8)
    for path in ckpt.list_checkpoints(root):
        flip_bit(path / ckpt.TENSORS)
    with pytest.raises(ckpt.CheckpointError, match="no valid checkpoint under .*step-00000008.*step-00000004"):
        trainer(tmp_path, denoise_loss(), steps=8).resume()


@pytest.mark.parametrize("edit,fragment", [
    (lambda s: s.update(step="5"), "step: Input should be a valid integer (got '5')"),
    (lambda s: s.update(step=-1), "step: Input should be greater than or equal to 0"),
    (lambda s: s.update(step=True), "step: Input should be a valid integer (got True)"),
    (lambda s: s.pop("step"), "step: Field required"),
    (lambda s: s.update(param_groups="x"), "param_groups: Input should be a valid list"),
])
def test_hand_edited_state_json_is_one_clear_error(tmp_path, edit, fragment):
    _, root = trained(tmp_path, steps=4)
    path = ckpt.latest_checkpoint(root)
    state = json.loads((path / ckpt.STATE).read_text())
    edit(state)
    (path / ckpt.STATE).write_text(json.dumps(state))
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    assert str(path / ckpt.STATE) in str(caught.value) and fragment in str(caught.value)


def test_deeply_nested_or_duplicate_keyed_state_json_is_refused(tmp_path):
    _, root = trained(tmp_path, steps=4)
    path = ckpt.latest_checkpoint(root)
    (path / ckpt.STATE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ckpt.CheckpointError, match="nested too deeply"):
        ckpt.load_checkpoint(path)
    (path / ckpt.STATE).write_text('{"format": "maskdit-checkpoint-v1", "step": 1, "step": 2}')
    with pytest.raises(ckpt.CheckpointError, match="duplicate key 'step'"):
        ckpt.load_checkpoint(path)


def test_wrong_shaped_optimizer_tensor_is_refused_on_resume(tmp_path):
    _, root = trained(tmp_path, steps=4)
    path = ckpt.latest_checkpoint(root)

    def reshape(flat):
        key = next(k for k in flat if k.startswith("optimizer/") and k.endswith("exp_avg"))
        flat[key] = torch.zeros(3, 3)

    rewrite_tensors(path, reshape)
    with pytest.raises(ckpt.CheckpointError, match=r"optimizer tensor 0.exp_avg has shape \(3, 3\), its parameter"):
        trainer(tmp_path, denoise_loss(), steps=4).resume(path)


def test_crash_leftovers_are_removed_and_metrics_cut_to_the_resumed_step(tmp_path):
    t, root = trained(tmp_path)
    (root / ".tmp-step-00000016-4242").mkdir()
    (root / ".tmp-step-00000016-4242" / ckpt.TENSORS).write_bytes(b"x" * 1000)
    (root / "step-00000016").mkdir()  # the empty folder a kill -9 mid-rename can leave
    metrics_path = tmp_path / "run" / "metrics.jsonl"
    metrics.append_jsonl(metrics_path, {"step": 14, "loss": 1.0})  # written after the last checkpoint
    with open(metrics_path, "a") as handle:
        handle.write('{"step": 16, "lo')  # a line cut by the kill
    ckpt.step_dir(root, 12).rename(tmp_path / "moved")  # so that resume picks step 8
    resumed = trainer(tmp_path, denoise_loss(), steps=12, keep_checkpoints=3)
    assert resumed.resume().step == 8
    resumed.fit()
    assert not (root / ".tmp-step-00000016-4242").exists() and not (root / "step-00000016").exists()
    steps = [r["step"] for r in metrics.read_jsonl(metrics_path)]
    assert steps == [2, 4, 6, 8, 10, 12] and len(metrics_path.read_text().splitlines()) == 6


def test_truncate_keeps_skip_events_of_completed_steps_and_stepless_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for record in ({"step": 2}, {"step": 2, "event": "skipped_nonfinite"}, {"step": 3}, {"name": "x"},
                   {"step": 3, "event": "skipped_nonfinite"}):
        metrics.append_jsonl(path, record)
    assert metrics.truncate_jsonl(path, 3) == 1
    assert metrics.read_jsonl(path) == [{"step": 2}, {"step": 2, "event": "skipped_nonfinite"}, {"step": 3},
                                        {"name": "x"}]


def test_disk_full_in_save_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    t, root = trained(tmp_path, steps=4)
    before = sorted(p.name for p in root.iterdir())
    from safetensors import SafetensorError

    def full_disk(tensors, filename):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 64)
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    t.state.step = 5
    with pytest.raises(ckpt.CheckpointError, match="could not write checkpoint .*step-00000005: .*StorageFull"):
        t.save()
    assert sorted(p.name for p in root.iterdir()) == before


def test_disk_full_in_metrics_keeps_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    metrics.append_jsonl(path, {"step": 1, "loss": 0.5})
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(metrics.os, "write", half_then_full)
    with pytest.raises(metrics.MetricsWriteError, match="could not append to .*metrics.jsonl: No space left"):
        metrics.append_jsonl(path, {"step": 2, "loss": 0.25})
    monkeypatch.setattr(metrics.os, "write", real_write)
    assert path.read_bytes() == before
    metrics.append_jsonl(path, {"step": 3, "loss": 0.125})
    assert [r["step"] for r in metrics.read_jsonl(path)] == [1, 3] and path.read_text().count("\n") == 2


def test_checkpoint_files_share_the_run_files_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        _, root = trained(tmp_path, steps=4)
    finally:
        os.umask(old)
    path = ckpt.latest_checkpoint(root)
    modes = {name: stat.S_IMODE((path / name).stat().st_mode) for name in (ckpt.TENSORS, ckpt.STATE)}
    assert modes == {ckpt.TENSORS: 0o644, ckpt.STATE: 0o644}
    assert stat.S_IMODE((tmp_path / "run" / "metrics.jsonl").stat().st_mode) == 0o644
