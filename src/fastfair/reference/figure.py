"""The seed-spread figure: where the single published value lies among many seeds of the same protocol.

One panel per metric (train and test accuracy, then the five gaps on the training split, the split the reference
reports its fairness on): every seed other than 42 as a grey dot (jittered sideways), their mean with its 95%
t interval as a black bar, and the reference's seed 42 -- the paper's single value -- as a red star.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import FastfairError
from ..io import atomic_write_bytes
from ..vocabulary import GAP_KEYS
from .ablation import seed_spread_summary
from .protocol import SEED

#: The panels of the figure, in order.
FIGURE_METRICS: tuple[str, ...] = ("train_accuracy", "test_accuracy", *(f"train_{g}" for g in GAP_KEYS))
#: Sideways jitter of the seed dots (a fixed generator: the same frame always gives the same picture).
JITTER = 0.08


def seed_spread_figure(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] = FIGURE_METRICS,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Draw the spread of :func:`~fastfair.reference.ablation.seed_spread`'s ``frame`` and write it as a PNG
    (atomically); returns its path. FastfairError if a metric column is missing or fewer than two seeds other
    than 42 are present."""
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise FastfairError(f"the seed-spread frame lacks columns {', '.join(missing)}")
    summary = seed_spread_summary(frame, metrics).set_index("metric")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5 * len(metrics) + 1.0, 3.9))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    others = frame[frame["seed"] != SEED]
    at42 = frame[frame["seed"] == SEED]
    jitter = np.random.default_rng(0).uniform(-JITTER, JITTER, len(others))
    for ax, metric in zip(axes, metrics, strict=True):
        ax.scatter(jitter, others[metric], s=14, color="0.55", label="other seeds")
        row = summary.loc[metric]
        if "mean" in row and np.isfinite(row["mean"]):
            ax.errorbar(
                [0.25],
                [row["mean"]],
                yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                fmt="s",
                color="black",
                capsize=4,
                ms=4,
                label="mean, 95% CI",
            )
        if len(at42):
            ax.scatter([0.0], at42[metric], marker="*", s=140, color="tab:red", zorder=3, label="seed 42 (paper)")
        ax.set_xlim(-0.4, 0.5)
        ax.set_xticks([])
        ax.set_title(metric.replace("train_", "train\n").replace("test_", "test\n"), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    n = len(others)
    fig.suptitle(title or f"spread over {n} seeds; the paper's value is seed 42", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    from io import BytesIO

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())
