"""The report section "The reference TRS's defect, measured": ``trs-paper`` beside ``trs``.

``trs-paper`` (:mod:`fastfair.inner.trs_paper`) is the reference code's TRS step: it takes the interior Newton step
-H⁻¹g whenever it fits in the ball, whatever the sign of the Hessian, and so can *lower* the loss it should raise;
``trs`` is the exact maximiser of the same quadratic model. The section puts the two side by side, from two
sources:

* the results table (pure): for every (dataset, model, radius) where both ran, the seeds on which they trained the
  same model (accuracy and all five gaps equal within :data:`IDENTICAL_ATOL` on every split), the test accuracy and
  gaps of each, and their mean epoch times (:func:`outcome_table`);
* the branches measured on the stored models (:func:`fastfair.experiments.report_inputs.defect_measurements`): the
  share of training rows on which the reference step is the interior Newton step, goes to the boundary, is
  degenerate, or finds no bracket (where the reference code raises), and the share whose loss it lowers, on the
  trs-paper model and on the non-robust model of the same seed (:func:`branch_table`).

:func:`defect_section` turns both into tables and plain-words conclusions; the document renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..vocabulary import GAP_KEYS
from .labels import METRIC_LABELS

PAPER_TRS = "trs-paper"
EXACT_TRS = "trs"
#: Two runs "trained the same model" when their accuracy and every gap agree within this, on every split.
IDENTICAL_ATOL = 1e-9
#: Columns a trs run and a trs-paper run are paired on (the same cell but for the solver).
PAIR_KEYS: tuple[str, ...] = ("dataset", "model", "radius", "seed", "epochs", "batch_size", "lr", "train_size")
COMPARED: tuple[str, ...] = ("accuracy", *GAP_KEYS)

INTRO = (
    "`trs-paper` reproduces the reference code's TRS step: a per-sample eigendecomposition, then the interior "
    "Newton step -H⁻¹g whenever it fits in the ball, *whatever the sign of H*, else bisection on the multiplier. "
    "Where the loss curves upwards, that step is a stationary point that lowers the loss instead of raising it. "
    "`trs` is the exact maximiser of the same quadratic model. Both ran on the same cells (same data, seeds, "
    "initialisation and batches), so any difference below is the defect's doing."
)
BRANCH_NOTE = (
    "Branches are measured once on the stored models (no training), on the first training rows, at the cell's "
    "radius and with its batch size: `interior` = the interior Newton step, `boundary` = bisection to the "
    "sphere, `degenerate` = every eigenvalue below the reference's 1e-8 (the reference code crashes; we take the "
    "exact step), `no bracket` = the reference's bisection bracket has no sign change (the reference code raises; "
    "we take the exact step); `lowered` = rows whose loss the reference step lowers. Losses are means over those "
    "rows: clean, after the reference step, after the exact step."
)
TIMING_NOTE = (
    "trs-paper's epoch time is that of our batched implementation of the reference algorithm (one "
    "eigendecomposition per row, up to 100 bisection steps), not of the reference code, which loops over samples "
    "in Python."
)


@dataclass(frozen=True)
class DefectSection:
    """The section's tables and conclusions; ``note`` says why the branch table is missing (or None)."""

    outcome: pd.DataFrame
    branches: pd.DataFrame | None
    conclusions: tuple[str, ...]
    note: str | None
    intro: str = INTRO
    branch_note: str = BRANCH_NOTE
    timing_note: str = TIMING_NOTE


def paired_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (trs, trs-paper) pair of runs and split: the compared metrics of both and the epoch times.

    ``df`` is the normalised store. Columns: :data:`PAIR_KEYS`, ``split``, ``<metric>_trs``,
    ``<metric>_paper`` for accuracy and the gaps, ``epoch_seconds_trs``, ``epoch_seconds_paper``.
    """
    keep = [*PAIR_KEYS, "split", *COMPARED, "epoch_seconds"]
    a = df[df["solver"] == EXACT_TRS][keep]
    b = df[df["solver"] == PAPER_TRS][keep]
    if a.empty or b.empty:
        return pd.DataFrame(columns=[*PAIR_KEYS, "split"])
    on = [*PAIR_KEYS, "split"]
    a, b = a.fillna({"train_size": -1}), b.fillna({"train_size": -1})
    return a.merge(b, on=on, suffixes=("_trs", "_paper"))


def _identical(pairs: pd.DataFrame) -> pd.Series:
    """Per seed pair (all its splits): accuracy and every gap equal within :data:`IDENTICAL_ATOL` (NaN = NaN)."""
    same = np.ones(len(pairs), dtype=bool)
    for m in COMPARED:
        x, y = pairs[f"{m}_trs"].to_numpy(float), pairs[f"{m}_paper"].to_numpy(float)
        same &= np.isclose(x, y, rtol=0, atol=IDENTICAL_ATOL, equal_nan=True)
    keys = [k for k in PAIR_KEYS if k != "split"]
    return pd.Series(same, index=pairs.index).groupby([pairs[k] for k in keys]).all()


def outcome_table(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per (dataset, model, radius): how many seeds trained the same model, the ``split`` accuracy and gaps of both
    solvers (means over the paired seeds), the largest gap difference, and the mean epoch times and their ratio."""
    pairs = paired_runs(df)
    if pairs.empty:
        return pd.DataFrame()
    same = _identical(pairs).reset_index(name="same")
    rows = []
    for (dataset, model, radius), g in pairs[pairs["split"] == split].groupby(["dataset", "model", "radius"]):
        s = same[(same["dataset"] == dataset) & (same["model"] == model) & (same["radius"] == radius)]
        gap_diff = {k: (g[f"{k}_paper"] - g[f"{k}_trs"]).mean() for k in GAP_KEYS}
        worst = max(GAP_KEYS, key=lambda k: abs(gap_diff[k]) if np.isfinite(gap_diff[k]) else -1.0)
        t_trs, t_paper = g["epoch_seconds_trs"].mean(), g["epoch_seconds_paper"].mean()
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "radius": radius,
                "same model": f"{int(s['same'].sum())}/{len(s)}",
                f"{split} accuracy trs": g["accuracy_trs"].mean(),
                f"{split} accuracy trs-paper": g["accuracy_paper"].mean(),
                "Δ accuracy (pp)": 100 * (g["accuracy_paper"] - g["accuracy_trs"]).mean(),
                f"{split} {METRIC_LABELS['independence']} trs": g["independence_trs"].mean(),
                f"{split} {METRIC_LABELS['independence']} trs-paper": g["independence_paper"].mean(),
                "largest Δ gap": gap_diff[worst],
                "in gap": METRIC_LABELS[worst] if abs(gap_diff[worst]) > IDENTICAL_ATOL else "–",
                "epoch s trs": t_trs,
                "epoch s trs-paper": t_paper,
                "trs-paper/trs": t_paper / t_trs if t_trs > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def branch_table(measurements: pd.DataFrame) -> pd.DataFrame:
    """The measured branch shares and losses, as the report shows them (shares in %)."""
    m = measurements.copy()
    out = pd.DataFrame(
        {
            "dataset": m["dataset"],
            "model": m["model"],
            "radius": m["radius"],
            "seed": m["seed"],
            "weights of": m["weights"].map({PAPER_TRS: "trs-paper model", "none": "non-robust model"}),
            "rows": m["rows"],
            "interior %": 100 * m["interior_newton"],
            "boundary %": 100 * m["boundary"],
            "degenerate %": 100 * m["degenerate"],
            "no bracket %": 100 * m["no_bracket"],
            "lowered %": 100 * m["lowered"],
            "loss clean": m["clean_loss"],
            "loss trs-paper": m["paper_loss"],
            "loss trs": m["trs_loss"],
        }
    )
    return out.sort_values(["dataset", "model", "weights of", "radius"], kind="stable").reset_index(drop=True)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if np.isfinite(x) else "–"


def conclusions(df: pd.DataFrame, measurements: pd.DataFrame | None) -> list[str]:
    """Plain-words conclusions, one per (dataset, model), then one on where the defect would bite."""
    pairs = paired_runs(df)
    if pairs.empty:
        return []
    same = _identical(pairs).reset_index(name="same")
    out = []
    for (dataset, model), s in same.groupby(["dataset", "model"], sort=True):
        g = pairs[(pairs["dataset"] == dataset) & (pairs["model"] == model) & (pairs["split"] == "test")]
        radii = ", ".join(f"{r:g}" for r in sorted(s["radius"].unique()))
        t_trs, t_paper = g["epoch_seconds_trs"].mean(), g["epoch_seconds_paper"].mean()
        timing = f" Its epochs took {t_paper / t_trs:.1f}x those of trs." if t_trs > 0 else ""
        if bool(s["same"].all()):
            runs = "its only run" if len(s) == 1 else f"all {len(s)} runs"
            text = (
                f"{dataset} ({model}): trs-paper trained the same model as trs in {runs} (r = {radii}): "
                "accuracy and all five gaps are equal on every split, so the defect did not change a single "
                "result here."
            )
        else:
            d_acc = 100 * (g["accuracy_paper"] - g["accuracy_trs"])
            worst_gap = max(
                ((g[f"{k}_paper"] - g[f"{k}_trs"]).abs().max(), k) for k in GAP_KEYS if g[f"{k}_trs"].notna().any()
            )
            text = (
                f"{dataset} ({model}): trs-paper trained a different model from trs in {int((~s['same']).sum())} of "
                f"{len(s)} runs (r = {radii}): test accuracy {d_acc.mean():+.1f} pp on average "
                f"(from {d_acc.min():+.1f} to {d_acc.max():+.1f} pp), largest change of a test gap "
                f"{worst_gap[0]:.3f} ({METRIC_LABELS[worst_gap[1]]})."
            )
        if measurements is not None:
            mine = measurements[(measurements["dataset"] == dataset) & (measurements["model"] == model)]
            trained = mine[mine["weights"] == PAPER_TRS]
            if not trained.empty:
                text += (
                    f" On its trained models the reference step was the interior Newton step on "
                    f"{_pct(trained['interior_newton'].mean())} of the measured rows and lowered the loss on "
                    f"{_pct(trained['lowered'].mean())}."
                )
        out.append(text + timing)
    if measurements is not None:
        out.extend(_where_it_bites(measurements))
    return out


def _where_it_bites(measurements: pd.DataFrame) -> list[str]:
    """The conclusion on the non-robust models: where the defect would bite, and where the reference code fails."""
    base = measurements[measurements["weights"] == "none"]
    if base.empty:
        return []
    worst = base.loc[base["lowered"].idxmax()]
    fails = base[(base["no_bracket"] + base["degenerate"]) > 0]
    text = (
        "The interior Newton step fits in the ball only where the model is steep compared with 1/r (for the "
        "affine model, on confidently classified points once ‖w‖ ≳ 1/r), so it is the non-robust models, "
        "not the robust ones, that show where the defect bites: "
    )
    if float(worst["lowered"]) > 0:
        text += (
            f"on the non-robust {worst['dataset']} ({worst['model']}) model at r = {worst['radius']:g} the reference "
            f"step lowers the loss of {_pct(float(worst['lowered']))} of the rows (mean loss "
            f"{worst['paper_loss']:.3f} against {worst['trs_loss']:.3f} for the exact step)."
        )
    else:
        text += "on the non-robust models measured here the reference step lowered no row's loss either."
    if not fails.empty:
        top = fails.loc[(fails["no_bracket"] + fails["degenerate"]).idxmax()]
        text += (
            f" On the non-robust {top['dataset']} ({top['model']}) model at r = {top['radius']:g} the reference code "
            f"would stop training with an error on {_pct(float(top['no_bracket'] + top['degenerate']))} of the rows "
            "(no bisection bracket, or every eigenvalue dropped)."
        )
    return [text]


def defect_section(df: pd.DataFrame, measurements: pd.DataFrame | str | None) -> DefectSection | None:
    """The section of the normalised store ``df``; None when trs and trs-paper never ran on the same cells.

    ``measurements``: :func:`fastfair.experiments.report_inputs.defect_measurements`, a reason why there are
    none, or None (not measured).
    """
    outcome = outcome_table(df)
    if outcome.empty:
        return None
    measured = measurements if isinstance(measurements, pd.DataFrame) and not measurements.empty else None
    if measured is not None:
        note = None
    elif isinstance(measurements, str):
        note = f"Branches not measured: {measurements}."
    else:
        note = "Branches not measured: no stored models were given to the report."
    return DefectSection(
        outcome=outcome,
        branches=branch_table(measured) if measured is not None else None,
        conclusions=tuple(conclusions(df, measured)),
        note=note,
    )


__all__: Sequence[str] = ("DefectSection", "branch_table", "conclusions", "defect_section", "outcome_table")
