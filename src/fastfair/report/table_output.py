"""The report's tables, computed once from the normalised store and written as CSV files and ``timing.md``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import atomic_write_text
from .claims import evaluate_claims
from .document import TIMING_FORMATS, formatted
from .seedsets import SeedView, seed_views
from .tables import markdown_table, run_configuration, summarize, timing_long, timing_table


@dataclass(frozen=True)
class ReportTables:
    """Every table of one report, and the (dataset, model) pairs it has a section for."""

    summary: pd.DataFrame  #: :func:`~fastfair.report.tables.summarize`
    timing: pd.DataFrame  #: :func:`~fastfair.report.tables.timing_table`
    timing_long: pd.DataFrame  #: :func:`~fastfair.report.tables.timing_long`
    claims: pd.DataFrame | None  #: :func:`~fastfair.report.claims.evaluate_claims`; None: not the paper's run
    configuration: pd.DataFrame  #: :func:`~fastfair.report.tables.run_configuration`
    pairs: tuple[tuple[str, str], ...]  #: (dataset, model), sorted
    models_per_dataset: Mapping[str, int]
    #: (dataset, model) -> the summary its figures and key numbers draw, on the seeds common to its solvers
    views: Mapping[tuple[str, str], SeedView]

    def section(self, dataset: str, model: str) -> str:
        """Heading of a (dataset, model) section, e.g. ``adult (affine)``."""
        return f"{dataset} ({model})"

    def stem(self, dataset: str, model: str) -> str:
        """File-name stem of a (dataset, model): the dataset, with the model when the dataset ran with several."""
        name = dataset if self.models_per_dataset[dataset] == 1 else f"{dataset}-{model}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x"


def compute_tables(df: pd.DataFrame, *, paper: bool, timing: pd.DataFrame | None = None) -> ReportTables:
    """The tables of the normalised store ``df``; the claims only when ``paper`` (the paper's reproduction).

    ``timing``: the normalised store of dedicated timing runs (one model at a time); the timing tables and the
    timing claims then come from it instead of ``df`` (whose packed cells carry amortised times)."""
    pairs = sorted(df[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    summary = summarize(df)
    times = df if timing is None else timing
    return ReportTables(
        summary=summary,
        timing=timing_table(times),
        timing_long=timing_long(times),
        claims=evaluate_claims(df, timing=timing) if paper else None,
        configuration=run_configuration(df),
        pairs=tuple(pairs),
        models_per_dataset=df.groupby("dataset")["model"].nunique().to_dict(),
        views=seed_views(df, summary),
    )


def timing_sections(tables: ReportTables) -> dict[str, pd.DataFrame]:
    """Section heading -> that (dataset, model)'s timing table, without its key columns and empty columns."""
    timing = tables.timing
    sections = {}
    for dataset, model in tables.pairs:
        t = timing[(timing["dataset"] == dataset) & (timing["model"] == model)]
        if not t.empty:
            sections[tables.section(dataset, model)] = t.drop(columns=["dataset", "model"]).dropna(axis=1, how="all")
    return sections


def timing_markdown(sections: Mapping[str, pd.DataFrame]) -> str:
    """``timing.md``: one Markdown table of mean epoch seconds per section."""
    parts = []
    for label, table in sections.items():
        parts += [f"## {label}", "", markdown_table(formatted(table, formats=TIMING_FORMATS)), ""]
    return "# Mean epoch seconds\n\n" + "\n".join(parts)


def write_tables(tables: ReportTables, out_dir: Path) -> dict[str, Path]:
    """Write ``summary.csv``, ``timing.csv``, ``claims.csv`` (if any) and ``timing.md``; return ``{key: path}``."""
    written = {
        "summary_csv": atomic_write_text(out_dir / "summary.csv", tables.summary.to_csv(index=False)),
        "timing_csv": atomic_write_text(out_dir / "timing.csv", tables.timing.to_csv(index=False)),
    }
    if tables.claims is not None:
        written["claims_csv"] = atomic_write_text(out_dir / "claims.csv", tables.claims.to_csv(index=False))
    written["timing_md"] = atomic_write_text(out_dir / "timing.md", timing_markdown(timing_sections(tables)))
    return written
