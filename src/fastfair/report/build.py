"""``build_report``: every table, figure and document of a results store, written atomically into one folder.

Layout of ``out_dir``::

    report.md, report.html      the report (figures referenced by relative path)
    summary.csv                 mean / std / 95% CI per dataset x model x solver x radius x split x metric
    timing.csv, timing.md       the paper's Table 1 (mean epoch seconds, pgd-paper/trs and pgd/trs ratios)
    claims.csv                  the claims table
    figures/gaps_<dataset>_<split>.png, figures/accuracy_<dataset>.png, figures/unfair2d_boundaries.png

(``<dataset>`` becomes ``<dataset>-<model>`` when a dataset ran with more than one model.)
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..vocabulary import BASELINE
from ..vocabulary import GAP_KEYS as GAPS
from . import boundaries as _boundaries
from .claims import RULES, evaluate_claims
from .document import (
    DIFFERENCES_FROM_PAPER,
    TIMING_FORMATS,
    FigureEntry,
    ReportContent,
    formatted,
    render_html,
    render_markdown,
    seeds_difference,
)
from .figures import DEFAULT_DPI, accuracy_figure, gap_figure, png_bytes
from .labels import METRIC_LABELS as GAP_LABELS
from .published import PAPER
from .tables import (
    coinciding_solvers,
    inconsistent_settings,
    markdown_table,
    normalise,
    ordered_solvers,
    ordered_splits,
    run_configuration,
    summarize,
    timing_long,
    timing_table,
)

#: Splits drawn in the gap figures: train (the paper's choice for Unfair2D) and test (held out).
GAP_SPLITS: tuple[str, ...] = ("train", "test")
QUICK_DPI = 80
HEADLINE_RADIUS = PAPER["unfair2d"]["radius"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _pm(mean: float, half: float, pct: bool = False) -> str:
    if not np.isfinite(mean):
        return "–"
    k = 100.0 if pct else 1.0
    body = f"{k * mean:.1f}" if pct else f"{mean:.3f}"
    if np.isfinite(half):
        body += f" ± {k * half:.1f}" if pct else f" ± {half:.3f}"
    return body + ("%" if pct else "")


def key_numbers(summary: pd.DataFrame, dataset: str, model: str) -> tuple[float | None, pd.DataFrame]:
    """Accuracy and gaps (mean ± CI half-width) at the headline radius for every solver, train and test.

    The headline radius is the paper's 0.18 when TRS (or else any robust solver) ran at it, otherwise the
    largest
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
            for g in GAPS:
                row[GAP_LABELS[g]] = _pm(m.at[g, "mean"], m.at[g, "ci_half_width"])
            rows.append(row)
    return radius, pd.DataFrame(rows)


def build_report(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    quick: bool = False,
    notes: Sequence[str] = (),
    gap_splits: Sequence[str] | None = None,
    boundaries: bool = True,
    dpi: int | None = None,
    paper: bool = True,
) -> dict[str, Path]:
    """Write the report of ``results`` (the tidy store, one row per cell x split) into ``out_dir``.

    ``quick`` lowers the figure resolution, draws the gap figures of the training split only and marks the
    report
    as a quick run. ``notes`` are shown at the top. ``gap_splits`` picks the splits of the gap figures
    (default:
    train and test; train only when ``quick``); those present in the results are drawn. ``boundaries``
    trains the two Unfair2D models for the decision-boundary figure (skipped, with a note, when Unfair2D is
    not
    in the results or training fails). ``paper=False`` makes it the report of any sweep: no claims table
    (and no claims.csv), no decision-boundary figure, a neutral title. Returns ``{name: path}`` of every file
    written.
    """
    df = normalise(results)
    out_dir = Path(out_dir)
    dpi = dpi or (QUICK_DPI if quick else DEFAULT_DPI)
    if gap_splits is None:
        gap_splits = ("train",) if quick else GAP_SPLITS
    written: dict[str, Path] = {}
    notes = [str(n) for n in notes]
    if quick:
        notes.append(
            "Quick mode: few radii, seeds and epochs; the numbers and verdicts are a smoke test, not a "
            "reproduction."
        )
    notes += inconsistent_settings(df)

    summary = summarize(df)
    timing = timing_table(df)
    claims = evaluate_claims(df) if paper else None
    configuration = run_configuration(df)
    written["summary_csv"] = atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
    written["timing_csv"] = atomic_write_text(out_dir / "timing.csv", timing.to_csv(index=False))
    if claims is not None:
        written["claims_csv"] = atomic_write_text(out_dir / "claims.csv", claims.to_csv(index=False))

    pairs = list(df[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    pairs.sort()
    models_per_dataset = df.groupby("dataset")["model"].nunique()

    def name(dataset: str, model: str) -> str:
        return dataset if models_per_dataset[dataset] == 1 else f"{dataset}-{model}"

    def label(dataset: str, model: str) -> str:
        return f"{dataset} ({model})"

    timing_sections: dict[str, pd.DataFrame] = {}
    timing_md = []
    for dataset, model in pairs:
        t = timing[(timing["dataset"] == dataset) & (timing["model"] == model)]
        if t.empty:
            continue
        t = t.drop(columns=["dataset", "model"]).dropna(axis=1, how="all")
        timing_sections[label(dataset, model)] = t
        timing_md += [
            f"## {label(dataset, model)}",
            "",
            markdown_table(formatted(t, formats=TIMING_FORMATS)),
            "",
        ]
    written["timing_md"] = atomic_write_text(
        out_dir / "timing.md", "# Mean epoch seconds\n\n" + "\n".join(timing_md)
    )
    timing_notes = []
    tl = timing_long(df)
    for (dataset, model), g in tl.groupby(["dataset", "model"]):
        counts = g.groupby("solver")["n_seeds"].max()
        if counts.nunique() > 1:
            timing_notes.append(
                f"{label(dataset, model)}: timing averaged over different numbers of seeds per solver ("
                + ", ".join(f"{k}: {int(v)}" for k, v in counts.items())
                + ")."
            )

    figures: list[FigureEntry] = []

    def save(key: str, fig, relpath: str, caption: str, section: str) -> None:
        written[key] = atomic_write_bytes(out_dir / relpath, png_bytes(fig, dpi))
        figures.append(FigureEntry(key, relpath, caption, section))

    key_tables: dict[str, pd.DataFrame] = {}
    shown_splits: list[str] = []
    for dataset, model in pairs:
        stem = _slug(name(dataset, model))
        section = label(dataset, model)
        splits_here = set(summary.loc[summary["dataset"] == dataset, "split"])
        splits = [sp for sp in gap_splits if sp in splits_here] or ordered_splits(splits_here)[:1]
        shown_splits += [sp for sp in splits if sp not in shown_splits]
        for split in splits:
            fig = gap_figure(summary, dataset, model, split)
            save(
                f"fig_gaps_{stem}_{split}",
                fig,
                f"figures/gaps_{stem}_{split}.png",
                f"{section}: the five fairness gaps and accuracy vs radius on the {split} split, mean ± 95% "
                "CI over "
                "seeds; dashed black: non-robust baseline.",
                section,
            )
        fig = accuracy_figure(summary, dataset, model)
        save(
            f"fig_accuracy_{stem}",
            fig,
            f"figures/accuracy_{stem}.png",
            f"{section}: accuracy vs radius (train and test), mean ± 95% CI over seeds.",
            section,
        )
        radius, table = key_numbers(summary, dataset, model)
        if not table.empty:
            key_tables[f"{section} at r={radius:g}" if radius is not None else section] = table

    if boundaries and paper:
        settings = _boundaries.boundary_settings(df)
        if settings is None:
            notes.append("Unfair2D decision-boundary figure skipped: unfair2d is not in these results.")
        else:
            try:
                fig, caption = _boundaries.unfair2d_boundary_figure(settings)
            except Exception as exc:  # a report must still come out of a finished sweep
                msg = f"Unfair2D decision-boundary figure skipped: {type(exc).__name__}: {exc}"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                notes.append(msg)
            else:
                save(
                    "fig_unfair2d_boundaries",
                    fig,
                    "figures/unfair2d_boundaries.png",
                    caption,
                    "Unfair2D decision boundaries",
                )

    files = [
        ("summary.csv", "mean, std and 95% CI per dataset x model x solver x radius x split x metric"),
        ("timing.csv", "mean epoch seconds per solver and radius, with ratios"),
        ("timing.md", "the same timing table in Markdown"),
    ]
    if claims is not None:
        files.append(("claims.csv", "the claims table"))
    content = ReportContent(
        title=(
            "fastfair: reproduction of Fast & Fair (Minch, Vu, Warren, arXiv:2401.02012)"
            if paper
            else "fastfair: sweep report"
        ),
        notes=notes,
        configuration=configuration,
        claims=claims,
        rules=RULES,
        timing=timing_sections,
        timing_notes=timing_notes,
        key_numbers=key_tables,
        figures=figures,
        files=files,
        generated=f"{df['cell_id'].nunique()} cells, {len(df)} result rows.",
        differences=[
            *DIFFERENCES_FROM_PAPER,
            seeds_difference(
                int(df.groupby(["dataset", "model", "solver", "radius"])["seed"].nunique().max())
            ),
        ]
        if paper
        else [],
        paper=paper,
        figures_intro=(
            f"Gap figures show the {' and '.join(shown_splits) or 'available'} split"
            f"{'s' if len(shown_splits) != 1 else ''}{' (the paper shows train for Unfair2D)' if paper else ''}. "
            "Points are "
            "means over "
            "seeds; bands are 95% t-intervals (none with a single seed); the dashed black line and grey "
            "band are "
            "the non-robust baseline (radius 0) drawn across the radius range."
            + "".join(
                f" On {d} ({m}), the curves of {', '.join(group[:-1])} and {group[-1]} coincide (the same "
                "accuracy and gaps at every radius) and are drawn on top of each other."
                for d, m, group in coinciding_solvers(summary)
            )
        ),
    )
    written["report_md"] = atomic_write_text(out_dir / "report.md", render_markdown(content))
    written["report_html"] = atomic_write_text(out_dir / "report.html", render_html(content))
    return written


#: Where :func:`build_report_cached` keeps the fingerprint of the last report it built.
REPORT_STATE = ".report-state.json"


def renderer_digest() -> str:
    """sha256 of the source of :mod:`fastfair.report`: a report made by other report code is not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_report_cached(
    results: pd.DataFrame, out_dir: Path, *, quick: bool = False, notes: Sequence[str] = (), paper: bool = True
) -> dict[str, Path]:
    """:func:`build_report`, unless ``out_dir`` already holds a complete report built from the very same inputs.

    A report is a pure function of the results table (rows in any order), ``quick``, ``notes``, ``paper``, the
    fastfair version and the report code itself (:func:`renderer_digest`); their sha256 is kept in
    ``out_dir/.report-state.json`` with the list of files written. So re-running a finished sweep costs no
    figure drawing or model training, while any new cell, other option, changed report code or missing file
    rebuilds the report.
    """
    out_dir = Path(out_dir)
    header, *rows = results.to_csv(index=False).splitlines()
    inputs = {"columns": header, "rows": sorted(rows), "quick": quick, "notes": list(notes), "paper": paper}
    code = {"version": __version__, "renderer": renderer_digest()}
    fingerprint = hashlib.sha256(json.dumps({**inputs, **code}).encode()).hexdigest()
    try:
        state = json.loads((out_dir / REPORT_STATE).read_text())
        files = {k: Path(v) for k, v in state["files"].items()}
        if state["fingerprint"] == fingerprint and all(p.is_file() for p in files.values()):
            return files
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    files = build_report(results, out_dir, quick=quick, notes=notes, paper=paper)
    state = {"fingerprint": fingerprint, "files": {k: str(v) for k, v in files.items()}}
    atomic_write_json(out_dir / REPORT_STATE, state)
    return files
