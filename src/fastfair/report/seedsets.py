"""Comparing solvers on the seeds they share: the frames of the figures and of the key-numbers tables.

A figure draws every solver of one (dataset, model) side by side: the mean over seeds of each solver at each radius
(and the non-robust baseline). When the solvers ran on different seed sets, e.g. ``pgd-paper`` on seed 0 alone and
``trs`` on seeds 0-4, the means are over different seeds, and a curve can look systematically different where the
two solvers train the same model seed by seed. So, per (dataset, model), let S_k be the seeds of solver k (over all
its radii) and C = ∩_k S_k the seeds common to every solver drawn (the baseline included). When the S_k differ and
C is not empty, every solver is summarised on C only, and the legend, the caption and a note of the report say so.
When all S_k are equal, nothing changes: the summary is the full one, row for row. When C is empty there is no
common ground; each solver keeps its own seeds and a note says that the curves are not comparable seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .tables import ordered_solvers, summarize


@dataclass(frozen=True)
class SeedView:
    """The summary one (dataset, model)'s figures and key numbers are drawn from, and on which seeds."""

    dataset: str
    model: str
    #: :func:`~fastfair.report.tables.summarize` of the seeds drawn, rows of this (dataset, model) only.
    summary: pd.DataFrame
    #: The seeds every solver is compared on; None when all solvers ran on the same seeds (nothing restricted)
    #: or when they share none (each keeps its own).
    common: tuple[int, ...] | None
    #: solver -> the seeds it ran on (all radii), solvers in display order.
    per_solver: dict[str, tuple[int, ...]]

    @property
    def mixed(self) -> bool:
        """Whether the solvers ran on different seed sets."""
        return len(set(self.per_solver.values())) > 1

    def legend_suffix(self) -> str:
        """`` (seed 0)`` / `` (seeds 0, 1)`` when the figure is restricted to the common seeds, else empty."""
        return f" ({seeds_text(self.common)})" if self.common is not None else ""

    def caption_note(self) -> str:
        """The sentence a caption (and the report's note) carries about the seeds; empty when nothing differs."""
        if not self.mixed:
            return ""
        ran = "; ".join(f"{solver}: {_seed_list(seeds)}" for solver, seeds in self.per_solver.items())
        if self.common is None:
            return f"The solvers share no seed (seeds per solver: {ran}); each is drawn on its own seeds."
        return f"Compared on the common seeds: {_seed_list(self.common)} (seeds per solver: {ran})."


def _seed_list(seeds: tuple[int, ...]) -> str:
    """``0, 1, 2`` (ranges of three or more consecutive seeds as ``0-4``)."""
    parts: list[str] = []
    run: list[int] = []
    for s in sorted(seeds):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)))
        run = [s]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)))
    return ", ".join(parts)


def seeds_text(seeds: tuple[int, ...]) -> str:
    """``seed 0`` or ``seeds 0, 1`` / ``seeds 0-4``."""
    return f"seed{'s' if len(seeds) != 1 else ''} {_seed_list(seeds)}"


def seed_view(df: pd.DataFrame, summary: pd.DataFrame, dataset: str, model: str) -> SeedView:
    """The :class:`SeedView` of (``dataset``, ``model``) of the normalised store ``df``.

    ``summary`` is :func:`~fastfair.report.tables.summarize` of all of ``df``; its rows are used unchanged when
    every solver ran on the same seeds (or when they share none), so that such a report is exactly as before.
    """
    sel = df[(df["dataset"] == dataset) & (df["model"] == model)]
    seeds = sel.groupby("solver")["seed"].agg(lambda s: tuple(sorted({int(v) for v in s})))
    per_solver = {solver: seeds[solver] for solver in ordered_solvers(seeds.index)}
    rows = summary[(summary["dataset"] == dataset) & (summary["model"] == model)]
    common_set = set.intersection(*(set(s) for s in per_solver.values())) if per_solver else set()
    if len(set(per_solver.values())) <= 1 or not common_set:
        return SeedView(dataset, model, rows, None, per_solver)
    common = tuple(sorted(common_set))
    restricted = summarize(sel[sel["seed"].isin(common)])
    return SeedView(dataset, model, restricted.reset_index(drop=True), common, per_solver)


def seed_views(df: pd.DataFrame, summary: pd.DataFrame) -> dict[tuple[str, str], SeedView]:
    """:func:`seed_view` of every (dataset, model) of ``df``."""
    pairs = df[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None)
    return {(d, m): seed_view(df, summary, d, m) for d, m in sorted(pairs)}


__all__ = ["SeedView", "seed_view", "seed_views", "seeds_text"]
