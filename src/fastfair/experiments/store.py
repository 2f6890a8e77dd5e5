"""The results store of a sweep: one JSON file per finished cell, and a consolidated ``results.csv``.

Layout of a sweep directory ``DIR``::

    DIR/cells/<cell_id>.json   one finished cell: its spec, one row per split, per-epoch history, where it ran
    DIR/results.csv            the tidy table: one row per cell x split of the current grid, in grid order
    DIR/grid.json              the resolved grid of the last sweep (provenance)

Every file is written atomically (temporary file + rename, :mod:`fastfair.io`), so an interrupted sweep, even
one killed with SIGKILL, leaves each cell either complete or absent, never half-written. The cell files are
the source of truth: ``results.csv`` is rebuilt from them, sorted by grid position (not completion order), so
the same grid always gives the same file. A cell file is reused only if its stored spec equals the cell's
spec. Cell files of other grids in the same directory are kept but left out of ``results.csv``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import FastfairError, require
from ..io import atomic_write_json, atomic_write_text, dumps_json
from .cell import COLUMNS, METRICS, TIMING
from .grid import Cell


class ResultsStore:
    """Read and write the cell files and the results table of one sweep directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.results_path = self.root / "results.csv"
        self.grid_path = self.root / "grid.json"
        self.failures_path = self.root / "failures.json"

    def check_layout(self) -> None:
        """Refuse a directory whose layout a sweep cannot write (before anything is written): the root or
        ``cells`` that is not a directory, a file name of the store (``results.csv``, ...) that is one."""
        if self.root.exists():
            require(self.root.is_dir(), f"--out {str(self.root)!r} exists and is not a directory")
        if self.cells_dir.exists():
            require(self.cells_dir.is_dir(), f"{str(self.cells_dir)!r} exists and is not a directory")
        for path in (self.results_path, self.grid_path, self.failures_path, self.root / ".lock"):
            require(
                not path.is_dir(),
                f"{str(path)!r} is a directory; the sweep writes a file there (move it, or use another --out)",
            )

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored record of ``cell``, or None if absent, unreadable or for a different spec."""
        path = self.cell_path(cell.cell_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("spec") != json.loads(dumps_json(cell.spec())):
            return None
        rows = record.get("rows")
        if not isinstance(rows, list) or not rows or any(r.get("cell_id") != cell.cell_id for r in rows):
            return None
        return record

    def finished(self, cells: Sequence[Cell]) -> dict[str, dict[str, Any]]:
        """Stored records of those ``cells`` that are finished, keyed by cell id."""
        out = {}
        for cell in cells:
            record = self.load(cell)
            if record is not None:
                out[cell.cell_id] = record
        return out

    def save(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write one finished cell atomically; return the record as stored (JSON round trip, NaN as null)."""
        stored = json.loads(dumps_json(record))
        path = self.cell_path(record["cell_id"])
        with _naming(path):
            atomic_write_json(path, stored)
        return stored

    def write_results(
        self,
        cells: Sequence[Cell],
        records: dict[str, dict[str, Any]],
        table: Callable[[Sequence[Any], dict[str, dict[str, Any]]], pd.DataFrame] | None = None,
    ) -> Path:
        """Rewrite ``results.csv`` atomically from the finished ``records``, in the order of ``cells``
        (``table(cells, records)`` builds the table; :func:`results_frame` by default)."""
        frame = (table or results_frame)(cells, records)
        with _naming(self.results_path):
            atomic_write_text(self.results_path, frame.to_csv(index=False))
        return self.results_path

    def write_grid(self, grid_dict: dict[str, Any]) -> Path:
        with _naming(self.grid_path):
            return atomic_write_json(self.grid_path, grid_dict)

    def write_failures(self, failed: Sequence[dict[str, Any]]) -> None:
        """Write ``failures.json`` (the failed cells of this run), or remove it when nothing failed."""
        with _naming(self.failures_path):
            if failed:
                atomic_write_json(self.failures_path, list(failed))
            else:
                self.failures_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the directory, so that two sweeps never write into it at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking
            yield
            return
        with open(self.root / ".lock", "a") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FastfairError(
                    f"another sweep is writing to {str(self.root)!r}; wait for it or use another --out"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` while writing ``path`` into a one-line :class:`FastfairError` that names
    ``path`` (not the temporary file beside it that the atomic write was using)."""
    try:
        yield
    except OSError as exc:
        raise FastfairError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def finished_rows(cells: Sequence[Any], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The result rows of the cells that have a record, in the order of ``cells`` (any cell type with a
    ``cell_id``), each record's rows in their stored (split) order."""
    rows: list[dict[str, Any]] = []
    for cell in cells:
        record = records.get(cell.cell_id)
        if record is not None:
            rows.extend(record["rows"])
    return rows


def results_frame(cells: Sequence[Cell], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The tidy table of the finished ``records``: rows in the order of ``cells``, then split order."""
    frame = pd.DataFrame(finished_rows(cells, records), columns=list(COLUMNS))
    for col in ("n", "seed", "epochs", "batch_size"):
        frame[col] = frame[col].astype("int64")
    frame["train_size"] = frame["train_size"].astype("Int64")
    frame["hidden"] = hidden_column(frame["hidden"])
    for col in ("radius", "lr", "clean_weight", *METRICS, *TIMING):
        frame[col] = frame[col].astype("float64")
    return frame


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``results.csv`` written by a sweep (or the ``results.csv`` inside a sweep directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.csv"
    if not p.is_file():
        raise FastfairError(f"no results table at {str(p)!r}")
    frame = pd.read_csv(p, dtype={"train_size": "Int64", "hidden": "string"})
    frame["hidden"] = hidden_column(frame["hidden"])
    return frame


def hidden_column(values: pd.Series) -> pd.Series:
    """The ``hidden`` column of a results table, from cell rows (an int, a list of widths, or None) or from the
    text of a ``results.csv``.

    The MLP's widths in one column: when no cell has more than one hidden layer (every table of one-hidden-layer
    and affine cells), a nullable ``Int64`` column of the width (missing for affine cells); otherwise an
    ``object`` column holding the width as an ``int`` for a one-hidden-layer cell and the widths as the text
    ``"[64, 32]"`` (JSON, first layer first) for a deeper one, missing for affine cells. Writing the table and
    reading it back (:func:`read_results`) gives the same column.
    """

    def one(value: Any) -> Any:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return None
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, (list, tuple)):
            return int(value[0]) if len(value) == 1 else json.dumps([int(w) for w in value])
        return int(value)

    parsed = [one(v) for v in values]
    if all(not isinstance(v, str) for v in parsed):
        return pd.Series(parsed, index=values.index, name=values.name, dtype="Int64")
    return pd.Series([pd.NA if v is None else v for v in parsed], index=values.index, name=values.name, dtype=object)
