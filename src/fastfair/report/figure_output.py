"""The report's figures, drawn from the summary table and the stored boundary models, and written as PNG files.

Per (dataset, model): the five gaps and accuracy vs radius on each requested split, and accuracy vs radius on train
and test. In the paper's reproduction, also the Unfair2D decision boundaries of the stored non-robust and TRS
models (:mod:`fastfair.report.boundaries`), or a note saying why they are not drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from ..io import atomic_write_bytes
from . import boundaries as _boundaries
from .document import FigureEntry
from .figures import accuracy_figure, gap_figure, png_bytes
from .table_output import ReportTables
from .tables import ordered_splits

if TYPE_CHECKING:
    from ..experiments.report_inputs import BoundaryInputs


@dataclass
class DrawnFigures:
    """The figures written, in report order, with the notes drawing them left (e.g. a figure skipped)."""

    entries: list[FigureEntry] = field(default_factory=list)
    written: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shown_splits: list[str] = field(default_factory=list)  #: the splits of the gap figures, in order

    def save(self, out_dir: Path, dpi: int, key: str, fig: Figure, relpath: str, caption: str, section: str) -> None:
        self.written[key] = atomic_write_bytes(out_dir / relpath, png_bytes(fig, dpi))
        self.entries.append(FigureEntry(key, relpath, caption, section))


def draw_figures(
    tables: ReportTables,
    out_dir: Path,
    *,
    gap_splits: Sequence[str],
    dpi: int,
    boundaries: BoundaryInputs | str | None,
    paper: bool,
) -> DrawnFigures:
    """Draw and write every figure of the report into ``out_dir/figures``.

    ``gap_splits`` are the splits of the gap figures (those present are drawn; the first present split when none
    is). ``boundaries`` (only used when ``paper``): the stored decision-boundary models, or why there are none, or
    None when none were given.
    """
    drawn = DrawnFigures()
    for dataset, model in tables.pairs:
        stem, section = tables.stem(dataset, model), tables.section(dataset, model)
        view = tables.views[(dataset, model)]
        summary, suffix = view.summary, view.legend_suffix()
        seeds_note = f" {view.caption_note()}" if view.mixed else ""
        if view.mixed:
            drawn.notes.append(
                f"{section}: the solvers ran on different seeds. {view.caption_note()} "
                "The figures and the key numbers are drawn so; summary.csv keeps every seed of each solver."
            )
        present = set(summary.loc[summary["dataset"] == dataset, "split"])
        splits = [sp for sp in gap_splits if sp in present] or ordered_splits(present)[:1]
        drawn.shown_splits += [sp for sp in splits if sp not in drawn.shown_splits]
        for split in splits:
            drawn.save(
                out_dir,
                dpi,
                f"fig_gaps_{stem}_{split}",
                gap_figure(summary, dataset, model, split, legend_suffix=suffix),
                f"figures/gaps_{stem}_{split}.png",
                f"{section}: the five fairness gaps and accuracy vs radius on the {split} split, "
                f"mean ± 95% CI over seeds; dashed black: non-robust baseline.{seeds_note}",
                section,
            )
        drawn.save(
            out_dir,
            dpi,
            f"fig_accuracy_{stem}",
            accuracy_figure(summary, dataset, model, legend_suffix=suffix),
            f"figures/accuracy_{stem}.png",
            f"{section}: accuracy vs radius (train and test), mean ± 95% CI over seeds.{seeds_note}",
            section,
        )
    if paper:
        _draw_boundaries(drawn, tables, out_dir, dpi, boundaries)
    return drawn


def _draw_boundaries(
    drawn: DrawnFigures, tables: ReportTables, out_dir: Path, dpi: int, boundaries: BoundaryInputs | str | None
) -> None:
    """The decision-boundary figure, or the note saying why it is skipped."""
    if boundaries is None:
        if _boundaries.DATASET in tables.models_per_dataset:
            drawn.notes.append(_boundaries.skipped_note("no stored models were given to the report"))
        else:
            drawn.notes.append(_boundaries.skipped_note(f"{_boundaries.DATASET} is not in these results"))
    elif isinstance(boundaries, str):
        drawn.notes.append(_boundaries.skipped_note(boundaries))
    else:
        fig, caption = _boundaries.unfair2d_boundary_figure(boundaries)
        relpath = f"figures/{_boundaries.DATASET}_boundaries.png"
        drawn.save(out_dir, dpi, "fig_unfair2d_boundaries", fig, relpath, caption, _boundaries.SECTION)
