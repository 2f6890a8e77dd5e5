"""Access to the bundled data files, verified against the checksums in ``data/provenance.json``.

The files ship gzip-compressed inside the package (``data/<name>.gz``). Before any use, the *decompressed*
bytes are hashed and compared with the sha256 of the original file recorded in ``provenance.json`` (the one
place the checksums live). Set the environment variable ``FASTFAIR_DATA_DIR`` (or this module's ``DATA_DIR``)
to read the ``.gz`` files from another directory, e.g. a test's corrupted copy; the checksums always come from
the package.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import FastfairError

#: Directory of the package's own bundled files (provenance.json always comes from here).
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"
#: Where the ``.gz`` data files are read from, unless ``FASTFAIR_DATA_DIR`` is set.
DATA_DIR: Path = PACKAGE_DATA_DIR
ENV_VAR = "FASTFAIR_DATA_DIR"


def data_dir() -> Path:
    """Directory the bundled ``.gz`` files are read from: ``$FASTFAIR_DATA_DIR`` if set, else ``DATA_DIR``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(DATA_DIR)


@lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    """The parsed ``provenance.json`` of the package (source, licence, sha256 per bundled file)."""
    with open(PACKAGE_DATA_DIR / "provenance.json", encoding="utf-8") as fh:
        return json.load(fh)


def file_record(name: str) -> dict[str, Any]:
    """Provenance record of one bundled original file (e.g. ``"adult.data"``)."""
    files = provenance()["files"]
    if name not in files:
        raise FastfairError(f"no provenance record for bundled file {name!r}")
    return files[name]


def read_bundled(name: str) -> bytes:
    """Decompressed bytes of the bundled original file ``name``, after verifying its sha256.

    Raises :class:`FastfairError` if the compressed file is missing, is not valid gzip, or decompresses to
    bytes whose sha256 differs from the one in ``provenance.json``.
    """
    record = file_record(name)
    path = data_dir() / record["stored_as"]
    try:
        stat = path.stat()
    except OSError:
        raise FastfairError(f"bundled file {record['stored_as']!r} not found in {path.parent}") from None
    return _read_verified(str(path), stat.st_mtime_ns, stat.st_size, record["sha256"])


@lru_cache(maxsize=16)
def _read_verified(path: str, mtime_ns: int, size: int, sha256: str) -> bytes:
    # mtime and size are part of the cache key so that a file replaced on disk is read (and checked) again.
    try:
        with open(path, "rb") as fh:
            raw = gzip.decompress(fh.read())
    except (OSError, EOFError, zlib.error) as exc:
        raise FastfairError(f"cannot read bundled file {path}: {exc}".replace("\n", " ")) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise FastfairError(
            f"checksum mismatch for bundled file {path}: sha256 of its contents is {digest}, "
            f"expected {sha256}"
        )
    return raw
