"""Pure table functions over the tidy results store: summaries with confidence intervals, the timing table.

Everything here is DataFrame in, DataFrame (or str) out: no files, no figures.

Confidence intervals are two-sided Student-t intervals over seeds: for ``n`` finite values with sample standard
deviation ``s`` (ddof = 1), the half-width is ``t_{0.975, n-1} · s / sqrt(n)``. With a single seed there is no
interval (half-width NaN). NaN values (an undefined gap, e.g. a group with no positive prediction) are left out
of the mean and of ``n``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import FastfairError
from ..experiments import cell
from ..vocabulary import BASELINE, GAP_KEYS, RADIUS_DECIMALS, SOLVERS, SPLITS

#: Metrics summarised per (dataset, model, solver, radius, split): the store's metrics and timings.
METRICS: tuple[str, ...] = (*cell.METRICS, *cell.TIMING)
#: Columns the results store must have (a subset of :data:`fastfair.experiments.cell.COLUMNS`).
REQUIRED_COLUMNS: tuple[str, ...] = (*cell.KEYS, *METRICS, "epochs", "batch_size", "lr", "train_size", "n")
GROUP_KEYS: tuple[str, ...] = ("dataset", "model", "solver", "radius", "split")
CONFIDENCE = 0.95


def ordered_solvers(solvers: Iterable[str]) -> list[str]:
    """The distinct solvers in display order (known ones first, the rest sorted)."""
    present = set(solvers)
    return [s for s in SOLVERS if s in present] + sorted(present - set(SOLVERS))


def ordered_splits(splits: Iterable[str]) -> list[str]:
    """The distinct splits in their natural order (train, val, test; any other name follows, sorted)."""
    present = set(splits)
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def normalise(results: pd.DataFrame) -> pd.DataFrame:
    """Check the store's columns and return a copy with clean types and radii rounded to ``RADIUS_DECIMALS``."""
    if not isinstance(results, pd.DataFrame):
        raise FastfairError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise FastfairError(f"results table lacks column(s): {', '.join(missing)}")
    if results.empty:
        raise FastfairError("results table is empty: nothing to report")
    df = results.copy()
    for col in ("dataset", "model", "solver", "split", "cell_id"):
        df[col] = df[col].astype(str)
    for col in ("radius", *METRICS, "lr", "train_size", "n", "epochs", "batch_size"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["radius"] = df["radius"].round(RADIUS_DECIMALS)
    df["seed"] = pd.to_numeric(df["seed"], errors="raise").astype(np.int64)
    return df.reset_index(drop=True)


def t_half_width(std: np.ndarray | float, n: np.ndarray | float, confidence: float = CONFIDENCE) -> np.ndarray:
    """Half-width of the two-sided t confidence interval of a mean; NaN where n < 2."""
    std = np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(n >= 2, n - 1, np.nan)
        q = stats.t.ppf(0.5 + confidence / 2, df)
        return np.where(n >= 2, q * std / np.sqrt(n), np.nan)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[int, float, float]:
    """(n, mean, half-width) of the finite entries of ``values``; half-width NaN with fewer than 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0, float("nan"), float("nan")
    std = float(np.std(v, ddof=1)) if len(v) >= 2 else float("nan")
    return len(v), float(np.mean(v)), float(t_half_width(std, len(v), confidence))


def summarize(results: pd.DataFrame, metrics: Sequence[str] = METRICS, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean and t-interval over seeds, one row per (dataset, model, solver, radius, split, metric).

    Columns: the group keys, ``metric``, ``n_seeds`` (finite values), ``mean``, ``std``, ``ci_half_width``,
    ``ci_low``, ``ci_high``.
    """
    df = normalise(results)
    long = df.melt(id_vars=list(GROUP_KEYS), value_vars=list(metrics), var_name="metric", value_name="value")
    keys = [*GROUP_KEYS, "metric"]
    agg = (
        long.groupby(keys, sort=False, dropna=False)["value"].agg(n_seeds="count", mean="mean", std="std").reset_index()
    )
    agg["n_seeds"] = agg["n_seeds"].astype(np.int64)
    agg.loc[agg["n_seeds"] < 2, "std"] = np.nan
    agg["ci_half_width"] = t_half_width(agg["std"].to_numpy(), agg["n_seeds"].to_numpy(), confidence)
    agg["ci_low"] = agg["mean"] - agg["ci_half_width"]
    agg["ci_high"] = agg["mean"] + agg["ci_half_width"]
    return _sort(agg, extra=["metric"])


def _sort(df: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Sort by dataset, model, solver (display order), radius, split (display order) and ``extra``."""
    out = df.copy()
    sort_cols = []
    for col in ("dataset", "model", "solver", "radius", "split", *extra):
        if col not in out.columns:
            continue
        if col == "solver":
            order = ordered_solvers(out[col])
            out["_solver"] = out[col].map({s: i for i, s in enumerate(order)})
            sort_cols.append("_solver")
        elif col == "split":
            order = ordered_splits(out[col])
            out["_split"] = out[col].map({s: i for i, s in enumerate(order)})
            sort_cols.append("_split")
        elif col == "metric":
            order = list(METRICS) + sorted(set(out[col]) - set(METRICS))
            out["_metric"] = out[col].map({s: i for i, s in enumerate(order)})
            sort_cols.append("_metric")
        else:
            sort_cols.append(col)
    out = out.sort_values(sort_cols, kind="stable").drop(columns=[c for c in out.columns if c.startswith("_")])
    return out.reset_index(drop=True)


def cells(results: pd.DataFrame) -> pd.DataFrame:
    """One row per training cell (the first of its split rows): timing and configuration columns."""
    df = normalise(results)
    return df.drop_duplicates("cell_id", keep="first").reset_index(drop=True)


def timing_long(results: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean epoch and inner seconds per (dataset, model, solver, radius), over seeds (one value per cell)."""
    c = cells(results)
    rows = []
    for key, g in c.groupby(["dataset", "model", "solver", "radius"], sort=False):
        n, mean, half = mean_ci(g["epoch_seconds"], confidence)
        _, inner, _ = mean_ci(g["inner_seconds"], confidence)
        rows.append(dict(zip(("dataset", "model", "solver", "radius"), key, strict=True)))
        rows[-1].update(n_seeds=n, epoch_seconds=mean, epoch_ci_half_width=half, inner_seconds=inner)
    return _sort(pd.DataFrame(rows))


def timing_table(results: pd.DataFrame, pgd_reference: str = "pgd-paper") -> pd.DataFrame:
    """The paper's Table 1: mean epoch seconds per robust solver (columns) per radius (rows), per dataset.

    One row per (dataset, model, radius) with a robust solver; a column per solver present (``none`` is the
    non-robust epoch time, repeated on every row of its dataset for comparison), and the ratios of means
    ``pgd-paper/trs``, ``pgd/trs`` and ``trs-paper/trs`` where those solvers ran. ``seeds`` gives the number of
    cells averaged per solver when they differ.
    """
    long = timing_long(results)
    solvers = ordered_solvers(long["solver"])
    robust = long[long["solver"] != BASELINE]
    if robust.empty:
        return pd.DataFrame(columns=["dataset", "model", "radius", *solvers])
    wide = robust.pivot_table(
        index=["dataset", "model", "radius"], columns="solver", values="epoch_seconds", aggfunc="first"
    )
    counts = robust.pivot_table(
        index=["dataset", "model", "radius"], columns="solver", values="n_seeds", aggfunc="first"
    )
    wide = wide.reindex(columns=[s for s in solvers if s != BASELINE]).reset_index()
    wide.columns.name = None
    if BASELINE in solvers:
        base = long[long["solver"] == BASELINE].groupby(["dataset", "model"])["epoch_seconds"].mean()
        pairs = zip(wide["dataset"], wide["model"], strict=True)
        wide.insert(3, BASELINE, [base.get((d, m), np.nan) for d, m in pairs])
    for num in (pgd_reference, "pgd", "trs-paper"):
        if num in wide.columns and "trs" in wide.columns:
            wide[f"{num}/trs"] = wide[num] / wide["trs"]
    seeds = []
    for _, row in counts.reset_index().iterrows():
        per = {s: int(row[s]) for s in solvers if s in counts.columns and pd.notna(row.get(s))}
        seeds.append(str(next(iter(per.values()))) if len(set(per.values())) == 1 else _fmt_counts(per))
    wide["seeds"] = seeds
    return _sort(wide)


def _fmt_counts(per: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in per.items())


def format_value(value: object, digits: int = 3) -> str:
    """Human formatting for tables: floats to ``digits`` significant decimals, NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def markdown_table(df: pd.DataFrame, digits: int = 3, formats: dict[str, str] | None = None) -> str:
    """Render a DataFrame as a GitHub-flavoured Markdown table (no extra dependency).

    ``formats`` maps a column to a format spec (``".4f"``) overriding ``digits`` for it. Pipes in cells are escaped.
    """
    formats = formats or {}

    def cell(col: str, v: object) -> str:
        if col in formats and isinstance(v, (float, int, np.floating, np.integer)) and np.isfinite(v):
            text = format(v, formats[col])
        else:
            text = format_value(v, digits)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(df.columns, row, strict=True)) + " |"
        for row in df.itertuples(index=False, name=None)
    ]
    return "\n".join([header, rule, *body])


def run_configuration(results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: solvers, radii, seeds, epochs, batch size, lr, train size, split sizes."""
    df = normalise(results)
    rows = []
    for (dataset, model), g in df.groupby(["dataset", "model"], sort=True):
        robust = g[g["solver"] != BASELINE]
        radii = sorted(robust["radius"].unique())
        sizes = g.drop_duplicates("split").set_index("split")["n"]
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "solvers": ", ".join(ordered_solvers(g["solver"])),
                "radii": _fmt_radii(radii),
                "seeds": ", ".join(str(s) for s in sorted(g["seed"].unique())),
                "cells": int(g["cell_id"].nunique()),
                "epochs": _fmt_unique(g["epochs"]),
                "batch_size": _fmt_unique(g["batch_size"]),
                "lr": _fmt_unique(g["lr"]),
                "train_size": _fmt_unique(g["train_size"]),
                "split sizes": ", ".join(
                    f"{s}={int(sizes[s])}" for s in ordered_splits(sizes.index) if np.isfinite(sizes[s])
                ),
            }
        )
    return pd.DataFrame(rows)


def _fmt_radii(radii: Sequence[float]) -> str:
    if not radii:
        return "–"
    r = np.asarray(radii, dtype=float)
    if len(r) >= 3:
        steps = np.diff(r)
        if np.allclose(steps, steps[0], atol=1e-9):
            return f"{r[0]:g}–{r[-1]:g} step {steps[0]:.4g} ({len(r)})"
    return ", ".join(f"{x:g}" for x in r)


def _fmt_unique(col: pd.Series) -> str:
    vals = sorted({v for v in col if pd.notna(v)})
    if not vals:
        return "–"
    return ", ".join(f"{v:g}" for v in vals)


def inconsistent_settings(results: pd.DataFrame) -> list[str]:
    """Warnings for groups of cells that mix training settings (epochs, batch size, lr, train size)."""
    df = cells(results)
    out = []
    for key, g in df.groupby(["dataset", "model", "solver", "radius"], sort=True):
        for col in ("epochs", "batch_size", "lr", "train_size"):
            vals = {v for v in g[col] if pd.notna(v)}
            if len(vals) > 1:
                out.append(
                    f"{key[0]}/{key[1]}/{key[2]} r={key[3]:g} mixes {col} values "
                    f"({', '.join(f'{v:g}' for v in sorted(vals))}); they are averaged together."
                )
    return out


def coinciding_solvers(summary: pd.DataFrame, atol: float = 1e-9) -> list[tuple[str, str, tuple[str, ...]]]:
    """Groups of robust solvers whose mean accuracy and gaps agree at every radius and split, within ``atol``.

    Returns ``(dataset, model, solvers)`` tuples, one per group of two or more. Such curves lie on top of each
    other in the figures (e.g. for the affine model TRS and a converged PGD find the same perturbation).
    """
    s = summary[(summary["solver"] != BASELINE) & summary["metric"].isin(["accuracy", *GAP_KEYS])]
    out = []
    for (dataset, model), g in s.groupby(["dataset", "model"], sort=True):
        curves = {
            solver: c.set_index(["radius", "split", "metric"])["mean"].sort_index()
            for solver, c in g.groupby("solver", sort=False)
        }
        left = ordered_solvers(curves)
        while left:
            first, rest = left[0], left[1:]
            same = [
                b
                for b in rest
                if curves[first].index.equals(curves[b].index)
                and np.allclose(curves[first], curves[b], atol=atol, rtol=0, equal_nan=True)
            ]
            if same:
                out.append((dataset, model, (first, *same)))
            left = [b for b in rest if b not in same]
    return out
