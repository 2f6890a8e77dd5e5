"""Atomic writes: all or nothing, strict JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastfair.io import atomic_write, atomic_write_json, atomic_write_text, dumps_json


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
