"""Atomic file output: a result is either fully written or not there at all.

Every file fastfair writes (metrics, models, results tables, reports) goes through these helpers: the content is
written to a temporary file in the same directory, flushed and fsync'ed, then moved into place with
:func:`os.replace`, which is atomic on POSIX and Windows. An interrupted run therefore never leaves a half-written
file behind. A set of files that belong together (one training run's metrics, history and model) is written
the same way one level up, with :func:`atomic_directory`: into a temporary directory beside the target, which is
renamed into place once every file is complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import FastfairError


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then atomically rename it to ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Write a directory of files all at once: ``with atomic_directory(out) as tmp:`` write into ``tmp``.

    ``tmp`` is a fresh directory beside ``path`` (same file system, so renames are atomic). When the block
    ends normally, ``tmp`` becomes ``path`` by :func:`os.rename`:

    * ``path`` absent or an empty directory: it is simply replaced;
    * ``path`` a non-empty directory: with ``replace=True`` the old directory is first renamed aside, the new
      one renamed in, and only then the old one deleted (if the second rename fails the old one is put back);
      with ``replace=False`` a :class:`FastfairError` is raised and ``path`` is left alone.

    When the block raises, or the final renames fail, ``tmp`` is deleted and ``path`` is untouched: nobody ever
    sees a partial set, and an earlier directory is never lost on an error. An ``OSError`` is re-raised with
    ``path`` (not the temporary name) as its file name. Between the two renames of a replacement ``path`` is
    briefly absent; POSIX offers no portable atomic exchange of two directories.
    """
    target = Path(os.path.abspath(path))  # "." and "a/.." become names that can be renamed
    if target.exists() and not target.is_dir():
        raise FastfairError(f"{str(path)!r} exists and is not a directory")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give it the mode mkdir would
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        yield tmp
        _move_into_place(tmp, target, replace)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _naming(exc, path) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    """Rename the finished directory ``tmp`` to ``target`` (see :func:`atomic_directory`)."""
    for entry in tmp.iterdir():  # every file's content on disk (writers that did not fsync included) ...
        if entry.is_file():
            _fsync_path(entry)
    _fsync_path(tmp)  # ... and the directory's entries, before the rename makes them visible
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(tmp, target)
    elif not replace:
        raise FastfairError(f"{str(target)!r} exists and is not empty; it was left as it is")
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=tmp.parent))
        os.rename(target, old / "run")
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old / "run", target)
            old.rmdir()
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_path(target.absolute().parent)


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by path (best effort: some file systems refuse it on directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(exc: OSError, target: str | os.PathLike[str]) -> OSError:
    """The same error (``OSError`` picks the subclass from the errno), naming ``target`` instead of whichever
    temporary file it happened on."""
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(target))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as ``null``)."""
    return atomic_write_text(path, dumps_json(obj, indent=2) + "\n")


def _jsonable(obj: Any) -> Any:
    """Replace non-finite floats by None and numpy scalars by Python numbers, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes NaN/inf as ``null`` (strict JSON) and accepts numpy scalars."""
    return json.dumps(_jsonable(obj), allow_nan=False, **kwargs)
