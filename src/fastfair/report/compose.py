"""The report document's content, composed from the computed tables and the drawn figures (no files written).

:func:`compose_document` fills a :class:`~fastfair.report.document.ReportContent`: the title, the notes, the run
configuration, the claims, the timing sections, the key numbers, the figures with their introduction, the
differences from the paper and the list of files. :mod:`fastfair.report.document` renders it as Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..vocabulary import BASELINE, GAP_KEYS
from .claims import RULES
from .defect import DefectSection
from .document import DIFFERENCES_FROM_PAPER, ReportContent, seeds_difference
from .figure_output import DrawnFigures
from .labels import METRIC_LABELS
from .published import PAPER
from .seedsets import seeds_text
from .table_output import ReportTables, timing_sections
from .tables import coinciding_solvers, ordered_solvers, ordered_splits

PAPER_TITLE = "fastfair: reproduction of Fast & Fair (Minch, Vu, Warren, arXiv:2401.02012)"
SWEEP_TITLE = "fastfair: sweep report"
QUICK_NOTE = "Quick mode: few radii, seeds and epochs; the numbers and verdicts are a smoke test, not a reproduction."
#: The radius of the key-numbers tables when it was run: the paper's Unfair2D radius.
HEADLINE_RADIUS = PAPER["unfair2d"]["radius"]


def _pm(mean: float, half: float, pct: bool = False) -> str:
    """``mean ± half`` (3 decimals, or a percentage with 1), ``–`` for an undefined mean."""
    if not np.isfinite(mean):
        return "–"
    k = 100.0 if pct else 1.0
    body = f"{k * mean:.1f}" if pct else f"{mean:.3f}"
    if np.isfinite(half):
        body += f" ± {k * half:.1f}" if pct else f" ± {half:.3f}"
    return body + ("%" if pct else "")


def key_numbers(summary: pd.DataFrame, dataset: str, model: str) -> tuple[float | None, pd.DataFrame]:
    """Accuracy and gaps (mean ± CI half-width) at the headline radius for every solver, train and test.

    The headline radius is the paper's 0.18 when TRS (or else any robust solver) ran at it, otherwise the largest
    robust radius of the run.
    """
    s = summary[(summary["dataset"] == dataset) & (summary["model"] == model)]
    robust = s[s["solver"] != BASELINE]
    radius = None
    if not robust.empty:
        radii = np.sort(robust["radius"].unique())
        hit = radii[np.isclose(radii, HEADLINE_RADIUS, atol=1e-9)]
        radius = float(hit[0]) if len(hit) else float(radii[-1])
    rows = []
    for split in ordered_splits(s["split"]):
        if split == "val":
            continue
        for solver in ordered_solvers(s["solver"]):
            sel = s[(s["solver"] == solver) & (s["split"] == split)]
            if solver != BASELINE:
                sel = sel[np.isclose(sel["radius"], radius, atol=1e-9)]
            if sel.empty:
                continue
            m = sel.set_index("metric")
            row = {"split": split, "solver": solver, "radius": f"{sel['radius'].iloc[0]:g}"}
            row["accuracy"] = _pm(m.at["accuracy", "mean"], m.at["accuracy", "ci_half_width"], pct=True)
            for g in GAP_KEYS:
                row[METRIC_LABELS[g]] = _pm(m.at[g, "mean"], m.at[g, "ci_half_width"])
            rows.append(row)
    return radius, pd.DataFrame(rows)


def timing_notes(tables: ReportTables) -> list[str]:
    """A note per (dataset, model) whose solvers' epoch times are means over different numbers of seeds."""
    notes = []
    for (dataset, model), g in tables.timing_long.groupby(["dataset", "model"]):
        counts = g.groupby("solver")["n_seeds"].max()
        if counts.nunique() > 1:
            per_solver = ", ".join(f"{k}: {int(v)}" for k, v in counts.items())
            notes.append(
                f"{tables.section(dataset, model)}: timing averaged over different numbers of seeds per solver "
                f"({per_solver})."
            )
    return notes


def figures_intro(summary: pd.DataFrame, shown_splits: Sequence[str], *, paper: bool) -> str:
    """The paragraph above the figures: the splits shown, what points and bands are, which curves coincide."""
    splits = " and ".join(shown_splits) or "available"
    plural = "s" if len(shown_splits) != 1 else ""
    paper_split = " (the paper shows train for Unfair2D)" if paper else ""
    text = (
        f"Gap figures show the {splits} split{plural}{paper_split}. "
        "Points are means over seeds; bands are 95% t-intervals (none with a single seed); "
        "the dashed black line and grey band are the non-robust baseline (radius 0) drawn across the radius range."
    )
    for dataset, model, group in coinciding_solvers(summary):
        text += (
            f" On {dataset} ({model}), the curves of {', '.join(group[:-1])} and {group[-1]} coincide "
            "(the same accuracy and gaps at every radius) and are drawn on top of each other."
        )
    return text


def report_files(*, claims: bool, defect: DefectSection | None = None) -> list[tuple[str, str]]:
    """The files section: (relative path, description) of the table files."""
    files = [
        ("summary.csv", "mean, std and 95% CI per dataset x model x solver x radius x split x metric"),
        ("timing.csv", "mean epoch seconds per solver and radius, with ratios"),
        ("timing.md", "the same timing table in Markdown"),
    ]
    if claims:
        files.append(("claims.csv", "the claims table"))
    if defect is not None:
        files.append(("defect.csv", "trs-paper beside trs per dataset, model and radius"))
        if defect.branches is not None:
            files.append(("defect_branches.csv", "the reference TRS's branches measured on the stored models"))
    return files


def compose_document(
    df: pd.DataFrame,
    tables: ReportTables,
    figures: DrawnFigures,
    *,
    notes: Sequence[str],
    paper: bool,
    defect: DefectSection | None = None,
) -> ReportContent:
    """The content of the report of the normalised store ``df`` (``notes`` first, the figures' notes after)."""
    key_tables = {}
    for dataset, model in tables.pairs:
        view = tables.views[(dataset, model)]
        radius, table = key_numbers(view.summary, dataset, model)
        if not table.empty:
            section = tables.section(dataset, model)
            label = f"{section} at r={radius:g}" if radius is not None else section
            if view.common is not None:
                label += f", compared on the common {seeds_text(view.common)}"
            key_tables[label] = table
    differences: list[str] = []
    if paper:
        most_seeds = int(df.groupby(["dataset", "model", "solver", "radius"])["seed"].nunique().max())
        differences = [*DIFFERENCES_FROM_PAPER, seeds_difference(most_seeds)]
    # the rows the figures draw (per dataset and model, on the seeds common to its solvers)
    drawn_summary = pd.concat([v.summary for v in tables.views.values()], ignore_index=True)
    return ReportContent(
        title=PAPER_TITLE if paper else SWEEP_TITLE,
        notes=[*notes, *figures.notes],
        configuration=tables.configuration,
        claims=tables.claims,
        rules=RULES,
        timing=timing_sections(tables),
        timing_notes=timing_notes(tables),
        key_numbers=key_tables,
        figures=figures.entries,
        files=report_files(claims=tables.claims is not None, defect=defect),
        generated=f"{df['cell_id'].nunique()} cells, {len(df)} result rows.",
        differences=differences,
        paper=paper,
        figures_intro=figures_intro(drawn_summary, figures.shown_splits, paper=paper),
        defect=defect,
    )
