"""check_inside / open_inside / atomic_write(root=) / clean_temp_files: nothing written through a link."""

import os

import pytest

from maskdit.io.files import (
    UnsafePathError,
    atomic_write,
    check_inside,
    clean_temp_files,
    make_folder,
    open_inside,
)


@pytest.fixture
def outside(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("precious")
    return target


def test_check_inside_accepts_new_and_own_paths(tmp_path):
    root = tmp_path / "run"
    (root / "samples").mkdir(parents=True)
    (root / "spec.json").write_text("{}")
    assert check_inside(root, root / "spec.json") == root / "spec.json"
    assert check_inside(root, root / "samples" / "new" / "grid.png") == root / "samples" / "new" / "grid.png"
    assert check_inside(root, root / "samples", folder=True) == root / "samples"


@pytest.mark.parametrize("where,fragment", [
    ("file", "is a symbolic link"), ("parent", "is a symbolic link"), ("hard", "has 2 hard links"),
    ("folder-for-file", "should be a regular file"), ("file-for-folder", "should be a folder"),
])
def test_check_inside_refuses_links_and_wrong_kinds(tmp_path, outside, where, fragment):
    root = tmp_path / "run"
    root.mkdir()
    if where == "file":
        (root / "metrics.jsonl").symlink_to(outside)
        path = root / "metrics.jsonl"
    elif where == "parent":
        (root / "samples").symlink_to(tmp_path, target_is_directory=True)
        path = root / "samples" / "grid.png"
    elif where == "hard":
        os.link(outside, root / "loss.png")
        path = root / "loss.png"
    elif where == "folder-for-file":
        (root / "eval.json").mkdir()
        path = root / "eval.json"
    else:
        (root / "samples").write_text("x")
        path = root / "samples" / "grid.png"
    with pytest.raises(UnsafePathError, match=fragment):
        check_inside(root, path)
    assert outside.read_text() == "precious"


def test_check_inside_refuses_paths_that_leave_the_root(tmp_path):
    with pytest.raises(UnsafePathError, match="not inside"):
        check_inside(tmp_path / "run", tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError, match="through '..'"):
        check_inside(tmp_path / "run", tmp_path / "run" / ".." / "x")


def test_open_inside_never_follows_a_link(tmp_path, outside):
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_inside(tmp_path / "link", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.link(outside, tmp_path / "hard")
    with pytest.raises(UnsafePathError, match="hard links"):
        open_inside(tmp_path / "hard", os.O_WRONLY | os.O_APPEND)
    assert outside.read_text() == "precious"


def test_atomic_write_with_a_root_refuses_a_linked_target_or_folder(tmp_path, outside):
    root = tmp_path / "run"
    root.mkdir()
    (root / "loss.png").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="loss.png is a symbolic link"):
        atomic_write(root / "loss.png", lambda tmp: tmp.write_text("png"), root=root)
    (root / "samples").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="samples is a symbolic link"):
        atomic_write(root / "samples" / "grid.png", lambda tmp: tmp.write_text("png"), root=root)
    with pytest.raises(UnsafePathError, match="samples is a symbolic link"):
        make_folder(root, root / "samples" / "more")
    assert outside.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt", "run"]
    assert atomic_write(root / "new" / "spec.json", lambda tmp: tmp.write_text("{}"), root=root).read_text() == "{}"


def test_atomic_write_temp_files_have_the_names_clean_up_recognises(tmp_path):
    seen = []
    atomic_write(tmp_path / "eval.json", lambda tmp: seen.append(tmp.name) or tmp.write_text("{}"))
    (tmp_path / seen[0]).write_text("left by a kill")
    assert clean_temp_files(tmp_path) == [tmp_path / seen[0]] and (tmp_path / "eval.json").exists()


def test_clean_temp_files_removes_only_maskdits_regular_temp_files(tmp_path, outside):
    ours = [".metrics.jsonl.4242.tmp", ".spec.json.k2j3h4g5.tmp", ".write-test-123", ".write-test-ab_c9xyz"]
    theirs = ["notes.tmp", ".hidden.tmp", ".x.toolongrandom!.tmp", "spec.json"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    (tmp_path / ".loss.png.abcdefgh.tmp").symlink_to(outside)  # a link with our name: not ours
    (tmp_path / ".eval.json.abcdefgh.tmp").mkdir()  # a folder with our name: not ours
    removed = clean_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*theirs, ".loss.png.abcdefgh.tmp", ".eval.json.abcdefgh.tmp", "outside.txt"])
    assert outside.read_text() == "precious" and clean_temp_files(tmp_path / "missing") == []
