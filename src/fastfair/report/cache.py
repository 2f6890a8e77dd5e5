"""``build_report_cached``: rebuild a report only when something it is drawn from has changed.

A report is a pure function of its inputs (the results table, rows in any order; ``quick``, ``notes``, ``paper``;
the stored decision-boundary models, by their fingerprint; the measured branches of the reference TRS) and of the
code that draws it (the fastfair version and the source of :mod:`fastfair.report`). The sha256 of all of them is
kept in ``out_dir/.report-state.json`` with the list of files written; the next call with the same fingerprint,
while every file is still there, returns that list and draws nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .. import __version__
from ..io import atomic_write_json
from .build import build_report

if TYPE_CHECKING:
    from ..experiments.report_inputs import BoundaryInputs

#: Where :func:`build_report_cached` keeps the fingerprint of the last report it built.
REPORT_STATE = ".report-state.json"


def renderer_digest() -> str:
    """sha256 of the source of :mod:`fastfair.report`: a report drawn by other report code is not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def report_fingerprint(
    results: pd.DataFrame,
    *,
    quick: bool,
    notes: Sequence[str],
    paper: bool,
    boundaries: BoundaryInputs | str | None,
    defect: pd.DataFrame | str | None = None,
    timing: pd.DataFrame | None = None,
) -> str:
    """sha256 of everything :func:`build_report` draws the report from, and of the code that draws it.

    The boundary models count by :meth:`~fastfair.experiments.report_inputs.BoundaryInputs.fingerprint` (their
    weights, settings and training points), and only in the paper's report, the one that draws them.
    """
    header, *rows = results.to_csv(index=False).splitlines()
    drawn_from = boundaries if isinstance(boundaries, str) or boundaries is None else boundaries.fingerprint()
    inputs = {
        "columns": header,
        "rows": sorted(rows),
        "quick": quick,
        "notes": list(notes),
        "paper": paper,
        "boundaries": drawn_from if paper else None,
        "defect": defect if isinstance(defect, str) or defect is None else defect.to_csv(index=False),
        "timing": None if timing is None else sorted(timing.to_csv(index=False).splitlines()),
    }
    code = {"version": __version__, "renderer": renderer_digest()}
    return hashlib.sha256(json.dumps({**inputs, **code}).encode()).hexdigest()


def build_report_cached(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    quick: bool = False,
    notes: Sequence[str] = (),
    paper: bool = True,
    boundaries: BoundaryInputs | str | None = None,
    defect: pd.DataFrame | str | None = None,
    timing: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """:func:`build_report`, unless ``out_dir`` already holds a complete report built from the very same inputs.

    Same inputs (:func:`report_fingerprint`) and every file of the last report present: its files are returned
    and nothing is drawn. Any new cell, other option, other stored model, changed report code or missing file
    rebuilds the report.
    """
    out_dir = Path(out_dir)
    fingerprint = report_fingerprint(
        results, quick=quick, notes=notes, paper=paper, boundaries=boundaries, defect=defect, timing=timing
    )
    try:
        state = json.loads((out_dir / REPORT_STATE).read_text())
        files = {k: Path(v) for k, v in state["files"].items()}
        if state["fingerprint"] == fingerprint and all(p.is_file() for p in files.values()):
            return files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    files = build_report(
        results, out_dir, quick=quick, notes=notes, paper=paper, boundaries=boundaries, defect=defect, timing=timing
    )
    state = {"fingerprint": fingerprint, "files": {k: str(v) for k, v in files.items()}}
    atomic_write_json(out_dir / REPORT_STATE, state)
    return files
