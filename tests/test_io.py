"""Atomic writes: all or nothing (single files and whole directories), strict JSON."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from fastfair.errors import FastfairError
from fastfair.io import atomic_directory, atomic_write, atomic_write_json, atomic_write_text, dumps_json


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_failed_write_leaves_old_content_and_no_temp_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_json_is_strict_with_nan_as_null_and_numpy_scalars(tmp_path):
    obj = {"a": float("nan"), "b": np.float64(1.5), "c": np.array([1, 2]), "d": [float("inf"), 2]}
    assert json.loads(dumps_json(obj)) == {"a": None, "b": 1.5, "c": [1, 2], "d": [None, 2]}
    atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text())["b"] == 1.5


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ----------------------------------------------------------------------------------------------------------
# atomic_directory: a set of files appears all at once, or not at all
# ----------------------------------------------------------------------------------------------------------
def _tree(path):
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_directory_appears_complete(tmp_path):
    target = tmp_path / "runs" / "a"
    with atomic_directory(target) as tmp:
        atomic_write_text(tmp / "x.txt", "1")
        assert not target.exists()  # nothing visible until the block ends
        atomic_write_text(tmp / "y.txt", "2")
    assert _tree(target) == {"x.txt": "1", "y.txt": "2"}
    assert [p.name for p in target.parent.iterdir()] == ["a"]  # no temporary directory left


def test_atomic_directory_fills_an_existing_empty_directory(tmp_path):
    (tmp_path / "a").mkdir()
    with atomic_directory(tmp_path / "a") as tmp:
        atomic_write_text(tmp / "x.txt", "1")
    assert _tree(tmp_path / "a") == {"x.txt": "1"}


def test_failed_directory_write_leaves_nothing(tmp_path):
    target = tmp_path / "a"
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / "x.txt", "1")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_directory_is_kept_unless_replace(tmp_path):
    target = tmp_path / "a"
    atomic_write_text(target / "old.txt", "old")
    with pytest.raises(FastfairError, match="exists and is not empty"):
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / "new.txt", "new")
    assert _tree(target) == {"old.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_replace_swaps_the_whole_set_without_mixing(tmp_path):
    target = tmp_path / "a"
    atomic_write_text(target / "old.txt", "old")
    atomic_write_text(target / "shared.txt", "old")
    with atomic_directory(target, replace=True) as tmp:
        atomic_write_text(tmp / "shared.txt", "new")
        assert _tree(target) == {"old.txt": "old", "shared.txt": "old"}  # the old set stays until the end
    assert _tree(target) == {"shared.txt": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_failed_replacement_keeps_the_old_set_and_names_the_target(tmp_path):
    target = tmp_path / "a"
    atomic_write_text(target / "old.txt", "old")

    def full_disk(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as exc:
        with atomic_directory(target, replace=True) as tmp:
            atomic_write_text(tmp / "first.txt", "new")
            atomic_write(tmp / "second.txt", full_disk)
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(target)
    assert _tree(target) == {"old.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_failed_final_rename_puts_the_old_set_back(tmp_path, monkeypatch):
    target = tmp_path / "a"
    atomic_write_text(target / "old.txt", "old")
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):  # the new set moving into place
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        with atomic_directory(target, replace=True) as tmp:
            atomic_write_text(tmp / "new.txt", "new")
    assert _tree(target) == {"old.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_atomic_directory_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FastfairError, match="not a directory"):
        with atomic_directory(tmp_path / "f"):
            pass
    assert (tmp_path / "f").read_text() == "x"
