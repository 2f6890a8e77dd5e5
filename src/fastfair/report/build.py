"""``build_report``: every table, figure and document of a results store, written atomically into one folder.

Layout of ``out_dir``::

    report.md, report.html      the report (figures referenced by relative path)
    summary.csv                 mean / std / 95% CI per dataset x model x solver x radius x split x metric
    timing.csv, timing.md       the paper's Table 1 (mean epoch seconds, pgd-paper/trs and pgd/trs ratios)
    claims.csv                  the claims table
    defect.csv                  trs-paper beside trs (when both ran): per dataset, model and radius
    defect_branches.csv         the reference TRS's branches measured on the stored models (when measured)
    figures/gaps_<dataset>_<split>.png, figures/accuracy_<dataset>.png, figures/unfair2d_boundaries.png

(``<dataset>`` becomes ``<dataset>-<model>`` when a dataset ran with more than one model.)

The report is a pure view of its inputs: the results table and, for the decision-boundary figure, the models the
sweep stored (:func:`fastfair.experiments.report_inputs.unfair2d_boundaries`). It trains nothing. Building it is
three steps: the tables (:mod:`.table_output`), the figures (:mod:`.figure_output`) and the document
(:mod:`.compose`, rendered by :mod:`.document`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..io import atomic_write_text
from .compose import QUICK_NOTE, compose_document
from .defect import defect_section
from .document import render_html, render_markdown
from .figure_output import draw_figures
from .figures import DEFAULT_DPI
from .table_output import compute_tables, write_tables
from .tables import inconsistent_settings, normalise

if TYPE_CHECKING:
    from ..experiments.report_inputs import BoundaryInputs

#: Splits drawn in the gap figures: train (the paper's choice for Unfair2D) and test (held out).
GAP_SPLITS: tuple[str, ...] = ("train", "test")
QUICK_DPI = 80


def build_report(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    quick: bool = False,
    notes: Sequence[str] = (),
    gap_splits: Sequence[str] | None = None,
    boundaries: BoundaryInputs | str | None = None,
    dpi: int | None = None,
    paper: bool = True,
    defect: pd.DataFrame | str | None = None,
    timing: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write the report of ``results`` (the tidy store, one row per cell x split) into ``out_dir``.

    ``quick`` lowers the figure resolution, draws the gap figures of the training split only and marks the report
    as a quick run. ``notes`` are shown at the top. ``gap_splits`` picks the splits of the gap figures (default:
    train and test; train only when ``quick``); those present in the results are drawn. ``boundaries`` are the
    stored Unfair2D models of the decision-boundary figure
    (:func:`fastfair.experiments.report_inputs.unfair2d_boundaries`); a string instead says why there are none,
    and the figure is skipped with that note (also when ``boundaries`` is None). ``defect`` are the reference TRS's
    branches measured on the stored models (:func:`fastfair.experiments.report_inputs.defect_measurements`), or
    why there are none; the section "The reference TRS's defect, measured" is there whenever trs and trs-paper ran
    on the same cells. ``paper=False`` makes it the
    report of any sweep: no claims table (and no claims.csv), no decision-boundary figure, a neutral title.
    ``timing``: the results of dedicated timing runs (one model at a time, :func:`~fastfair.experiments.
    paper_protocol.timing_cells`); the timing section (Table 1) and the timing claims are then drawn from them,
    not from ``results`` (a packed sweep's cells carry amortised times).
    Returns ``{name: path}`` of every file written.
    """
    df = normalise(results)
    out_dir = Path(out_dir)
    all_notes = [str(n) for n in notes]
    if quick:
        all_notes.append(QUICK_NOTE)
    all_notes += inconsistent_settings(df)
    tables = compute_tables(df, paper=paper, timing=None if timing is None else normalise(timing))
    written = write_tables(tables, out_dir)
    figures = draw_figures(
        tables,
        out_dir,
        gap_splits=gap_splits if gap_splits is not None else ("train",) if quick else GAP_SPLITS,
        dpi=dpi or (QUICK_DPI if quick else DEFAULT_DPI),
        boundaries=boundaries,
        paper=paper,
    )
    written.update(figures.written)
    section = defect_section(df, defect)
    if section is not None:
        written["defect_csv"] = atomic_write_text(out_dir / "defect.csv", section.outcome.to_csv(index=False))
        if section.branches is not None:
            branches = section.branches.to_csv(index=False)
            written["defect_branches_csv"] = atomic_write_text(out_dir / "defect_branches.csv", branches)
    content = compose_document(df, tables, figures, notes=all_notes, paper=paper, defect=section)
    written["report_md"] = atomic_write_text(out_dir / "report.md", render_markdown(content))
    written["report_html"] = atomic_write_text(out_dir / "report.html", render_html(content))
    return written
