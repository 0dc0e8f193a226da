"""The run lock opens no link, truncates nothing, and uses only a file that holds a lock's record."""

import os

import pytest

from maskdit.io.files import UnsafePathError
from maskdit.io.runlock import RunLock


def test_a_symlinked_lock_is_refused_and_its_target_unchanged(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("export PATH=...\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(target)
    with pytest.raises(UnsafePathError, match=r"\.lock is a symbolic link"):
        RunLock(tmp_path / "run").acquire()
    assert target.read_text() == "export PATH=...\n"
    (tmp_path / "run" / ".lock").unlink()
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "missing")  # a dangling link is not created through
    with pytest.raises(UnsafePathError, match="symbolic link"):
        RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "missing").exists()


def test_a_hard_linked_or_foreign_lock_file_is_refused(tmp_path):
    target = tmp_path / "notes"
    target.write_text("12")
    (tmp_path / "run").mkdir()
    os.link(target, tmp_path / "run" / ".lock")
    with pytest.raises(UnsafePathError, match="2 hard links"):
        RunLock(tmp_path / "run").acquire()
    (tmp_path / "run" / ".lock").unlink()
    (tmp_path / "run" / ".lock").write_text("not a pid\n")
    with pytest.raises(UnsafePathError, match="not a maskdit lock file"):
        RunLock(tmp_path / "run").acquire()
    (tmp_path / "run" / ".lock").write_text("1" * 100)
    with pytest.raises(UnsafePathError, match="not a maskdit lock file"):
        RunLock(tmp_path / "run").acquire()
    assert (tmp_path / "run" / ".lock").read_text() == "1" * 100 and target.read_text() == "12"


def test_a_lock_of_an_earlier_run_is_reused_and_says_who_holds_it(tmp_path):
    (tmp_path / ".lock").write_text("999999\n")  # what an older maskdit left
    with RunLock(tmp_path) as lock:
        assert lock.held and (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    assert (tmp_path / ".lock").read_text().strip() == ""
    with RunLock(tmp_path):  # a released lock file is a lock's record too
        pass
