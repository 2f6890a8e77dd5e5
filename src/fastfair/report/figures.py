"""Figures for the report, drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas).

No pyplot and no global state: each function returns a :class:`~matplotlib.figure.Figure`, and
:func:`png_bytes` renders one to PNG bytes for an atomic write.

Gap and accuracy figures take the summary table of :func:`fastfair.report.tables.summarize`: the mean over seeds
is drawn with markers, the 95% t-interval as a band when a point has at least two seeds (with one seed, points
only). The non-robust baseline (solver ``none``, radius 0) is a horizontal black line across the radius range,
with its band.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..vocabulary import BASELINE, GAP_KEYS
from .labels import METRIC_LABELS
from .tables import ordered_solvers

#: Line widths decrease and dash patterns differ so that coinciding curves stay visible (for the affine model
#: TRS and a converged PGD find the same perturbation, hence the same curve).
SOLVER_STYLE = {
    "trs": {
        "color": "#1f77b4",
        "marker": "o",
        "label": "TRS",
        "lw": 3.2,
        "ls": "-",
        "ms": 7.5,
        "alpha": 0.75,
    },
    "trs-paper": {
        "color": "#9467bd",
        "marker": "P",
        "label": "TRS (reference code)",
        "lw": 1.8,
        "ls": (0, (4, 2)),
        "ms": 5.5,
    },
    "pgd-paper": {
        "color": "#d62728",
        "marker": "s",
        "label": "PGD (paper config)",
        "lw": 2.0,
        "ls": "--",
        "ms": 5.0,
    },
    "pgd": {"color": "#ff7f0e", "marker": "^", "label": "PGD (tuned)", "lw": 1.3, "ls": ":", "ms": 4.0},
    "random": {"color": "#2ca02c", "marker": "D", "label": "random", "lw": 1.3, "ls": "-.", "ms": 3.5},
}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DEFAULT_DPI = 110


def _style(solver: str, index: int) -> dict:
    style = {"lw": 1.3, "ls": "-", "ms": 4.0, "alpha": 1.0}
    if solver in SOLVER_STYLE:
        return {**style, **SOLVER_STYLE[solver]}
    return {**style, "color": _EXTRA_COLORS[index % len(_EXTRA_COLORS)], "marker": "v", "label": solver}


def new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas. Margins are set by hand: a layout engine doubles the render time."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = DEFAULT_DPI) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _metric_panel(
    ax, summary: pd.DataFrame, metric: str, split: str, scale: float = 1.0, legend_suffix: str = ""
) -> list:
    """Draw one metric vs radius on ``ax``: a line per robust solver, and the baseline. Returns handles.

    ``legend_suffix`` is appended to every legend label (e.g. `` (seed 0)`` when drawn on common seeds only).
    """
    s = summary[(summary["metric"] == metric) & (summary["split"] == split)]
    handles = []
    robust = s[s["solver"] != BASELINE]
    radii = np.sort(robust["radius"].unique()) if not robust.empty else np.array([0.0])
    lo, hi = float(radii.min()), float(radii.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.01
    xspan = (lo - pad, hi + pad)
    base = s[s["solver"] == BASELINE]
    if not base.empty:
        b = base.iloc[0]
        label = "non-robust" + legend_suffix
        handles.append(ax.axhline(scale * b["mean"], color="black", lw=1.3, ls="--", label=label))
        if np.isfinite(b["ci_half_width"]):
            ax.axhspan(scale * b["ci_low"], scale * b["ci_high"], color="black", alpha=0.08, lw=0)
    for i, solver in enumerate(ordered_solvers(robust["solver"])):
        g = robust[robust["solver"] == solver].sort_values("radius")
        st = _style(solver, i)
        (line,) = ax.plot(
            g["radius"],
            scale * g["mean"],
            marker=st["marker"],
            ms=st["ms"],
            lw=st["lw"],
            ls=st["ls"],
            alpha=st["alpha"],
            color=st["color"],
            label=st["label"] + legend_suffix,
        )
        handles.append(line)
        ok = g["ci_half_width"].notna().to_numpy()
        if ok.sum() >= 1:
            ax.fill_between(
                g["radius"][ok],
                scale * g["ci_low"][ok],
                scale * g["ci_high"][ok],
                color=st["color"],
                alpha=0.15,
                lw=0,
            )
    ax.set_xlim(*xspan)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))  # fewer tick labels: text layout dominates the render time
    ax.set_xlabel("radius r")
    ax.grid(True, alpha=0.3)
    return handles


def _n_seeds_text(summary: pd.DataFrame) -> str:
    n = summary["n_seeds"]
    if n.empty:
        return ""
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


def gap_figure(
    summary: pd.DataFrame,
    dataset: str,
    model: str,
    split: str,
    *,
    title: str | None = None,
    legend_suffix: str = "",
) -> Figure:
    """The five gaps (and accuracy) vs radius on one split: a 2 x 3 grid.

    ``legend_suffix`` is appended to every legend label, e.g. `` (seed 0)`` when ``summary`` holds the seeds common
    to the solvers only (:mod:`fastfair.report.seedsets`).
    """
    s = summary[(summary["dataset"] == dataset) & (summary["model"] == model)]
    fig = new_figure(11.5, 6.6)
    axes = fig.subplots(2, 3).ravel()
    handles: list = []
    for ax, metric in zip(axes, [*GAP_KEYS, "accuracy"], strict=True):
        h = _metric_panel(ax, s, metric, split, legend_suffix=legend_suffix)
        ax.set_title(METRIC_LABELS[metric] + (" (higher is better)" if metric == "accuracy" else " gap"), fontsize=10)
        if len(h) > len(handles):
            handles = h
    fig.subplots_adjust(left=0.06, right=0.99, top=0.91, bottom=0.15, wspace=0.22, hspace=0.42)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    nseed = _n_seeds_text(s[s["split"] == split])
    fig.suptitle(
        title or f"{dataset} ({model}): fairness gaps vs radius, {split} split, mean ± 95% CI ({nseed})",
        fontsize=11,
    )
    return fig


def accuracy_figure(
    summary: pd.DataFrame,
    dataset: str,
    model: str,
    splits: Sequence[str] = ("train", "test"),
    *,
    legend_suffix: str = "",
) -> Figure:
    """Accuracy (%) vs radius, one panel per split (``legend_suffix`` as in :func:`gap_figure`)."""
    s = summary[(summary["dataset"] == dataset) & (summary["model"] == model)]
    splits = [sp for sp in splits if sp in set(s["split"])] or sorted(set(s["split"]))
    fig = new_figure(4.6 * len(splits) + 0.4, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True))
    handles: list = []
    for ax, split in zip(axes, splits, strict=True):
        h = _metric_panel(ax, s, "accuracy", split, scale=100.0, legend_suffix=legend_suffix)
        ax.set_title(f"{split} split", fontsize=10)
        if len(h) > len(handles):
            handles = h
    axes[0].set_ylabel("accuracy (%)")
    fig.subplots_adjust(left=0.08, right=0.99, top=0.85, bottom=0.22, wspace=0.08)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=9, frameon=False)
    fig.suptitle(f"{dataset} ({model}): accuracy vs radius, mean ± 95% CI ({_n_seeds_text(s)})", fontsize=11)
    return fig


def boundary_figure(
    X: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    boundaries: Sequence[tuple[str, object]],
    *,
    group_names: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """Training points (colour = class, marker = group) with each model's decision boundary f(x) = 0.

    ``boundaries`` is a sequence of ``(label, decision_function)``; each function maps an (m, 2) array to logits.
    """
    X, y, s = np.asarray(X, dtype=float), np.asarray(y).astype(int), np.asarray(s)
    fig = new_figure(6.4, 5.6)
    ax = fig.subplots()
    groups = sorted(set(s.tolist()))
    names = list(group_names) if group_names is not None and len(group_names) == len(groups) else groups
    markers = ("o", "^", "s", "D", "v", "P")
    class_colors = {0: "#d62728", 1: "#1f77b4"}
    for gi, g in enumerate(groups):
        for cls in (0, 1):
            m = (s == g) & (y == cls)
            if m.any():
                ax.scatter(
                    X[m, 0],
                    X[m, 1],
                    s=16,
                    marker=markers[gi % len(markers)],
                    facecolors="none",
                    edgecolors=class_colors[cls],
                    linewidths=0.9,
                    label=f"group {names[gi]}, y={cls}",
                )
    pad = 0.05 * (X.max(axis=0) - X.min(axis=0))
    x0 = np.linspace(X[:, 0].min() - pad[0], X[:, 0].max() + pad[0], 300)
    x1 = np.linspace(X[:, 1].min() - pad[1], X[:, 1].max() + pad[1], 300)
    g0, g1 = np.meshgrid(x0, x1)
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    styles = (("black", "-"), ("#9467bd", "--"), ("#8c564b", ":"), ("#2ca02c", "-."))
    for i, (label, fn) in enumerate(boundaries):
        z = np.asarray(fn(grid), dtype=float).reshape(g0.shape)
        color, ls = styles[i % len(styles)]
        if np.nanmin(z) < 0 < np.nanmax(z):
            ax.contour(g0, g1, z, levels=[0.0], colors=[color], linestyles=[ls], linewidths=2)
        ax.plot([], [], color=color, ls=ls, lw=2, label=label)  # legend entry (also when no boundary in view)
    ax.set_xlim(x0[0], x0[-1])
    ax.set_ylim(x1[0], x1[-1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.93, bottom=0.1)
    return fig
