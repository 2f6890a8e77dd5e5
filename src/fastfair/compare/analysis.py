r"""The trade-off analysis: points with confidence intervals, selection on validation, dominance, the verdict.

Pure functions, DataFrame in, DataFrame (or text) out.

Points
    A *point* is one method at one knob value on one dataset: the mean over seeds of its accuracy and gaps, on
    each split, with the 95% Student-t half-width (:func:`fastfair.report.mean_ci`; NaN with one seed, and then
    treated as 0 below).

Selection on validation
    A method's curve on gap G is the set of its knob values that are *non-dominated on the validation split*:
    no other knob value of the same method has a validation accuracy ≥ and a validation gap ≤, one of them
    strictly. Those knob values are then reported with their **test** numbers. The test split never enters the
    choice, so no test number can change which points are shown (tested). A method without a knob is one point.
    The points non-dominated across *all* methods, on validation, are marked in the figures as the frontier.

Dominance (per gap G, on the test values of the selected points)
    Point a *covers* point b if a's accuracy is not lower and a's gap is not higher, up to the noise:

    .. math::

        \mathrm{acc}_a \ge \mathrm{acc}_b - \sqrt{h_{\mathrm{acc},a}^2 + h_{\mathrm{acc},b}^2}
        \quad\text{and}\quad
        G_a \le G_b + \sqrt{h_{G,a}^2 + h_{G,b}^2},

    with :math:`h` the 95% CI half-widths over seeds (0 with one seed). Curve A is *at least as good as* curve B
    (A ⪰ B) if every point of B is covered by some point of A. **A dominates B** if A ⪰ B and not B ⪰ A: A
    matches B everywhere within the noise and B fails to match A somewhere beyond it. Both ⪰: *indistinguishable*;
    neither: the curves *cross* (a trade-off, no winner). Points whose gap is undefined (NaN: e.g. no predicted
    positive in a group, for PPV) are left out of that gap's curves; a curve with no point left is not compared.

Verdict (per dataset)
    On gap G, robust training is *better* than the standard mitigations if it dominates every one of them,
    *worse* if at least one of them dominates it, and *mixed* otherwise. The conclusion counts the gaps of each
    kind, once against all of Fairlearn's mitigations and once against those that do not use the sensitive
    attribute at prediction time (ExponentiatedGradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..report import t_half_width
from ..report.labels import METRIC_LABELS
from ..vocabulary import GAP_KEYS
from .methods import METHODS, ROBUST, UNMITIGATED, knob_text

#: The metrics of a point.
POINT_METRICS = ("accuracy", *GAP_KEYS)
#: A point within this much of the majority-class accuracy is called trivial in the conclusion.
TRIVIAL_MARGIN = 0.005
#: Accuracy the selected model of a method may give up against the unmitigated model, on validation.
ACCURACY_BUDGET = 0.02


def points(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, knob, split): ``n_seeds`` and, per metric M, ``M`` (the mean over seeds of
    its finite values) and ``M_ci`` (the 95% Student-t half-width, :func:`fastfair.report.t_half_width`; 0 with
    fewer than two finite values)."""
    df = results.copy()
    df["knob"] = pd.to_numeric(df["knob"], errors="coerce")
    keys = ["dataset", "method", "knob", "split"]
    grouped = df.groupby(keys, sort=False, dropna=False)
    out = grouped["seed"].nunique().rename("n_seeds").reset_index()
    for metric in POINT_METRICS:
        agg = grouped[metric].agg(["count", "mean", "std"]).reset_index(drop=True)
        half = t_half_width(agg["std"].to_numpy(), agg["count"].to_numpy())
        out[metric] = agg["mean"].to_numpy()
        out[f"{metric}_ci"] = np.where(np.isfinite(half), half, 0.0)
    out["uses_sensitive_at_prediction"] = out["method"].map(
        lambda m: METHODS[m].uses_sensitive_at_prediction if m in METHODS else False
    )
    return out


def non_dominated(accuracy: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats: none with accuracy ≥ and gap ≤, one of them strictly. Points
    with a NaN coordinate are never non-dominated (and dominate nothing)."""
    acc = np.asarray(accuracy, dtype=float)
    g = np.asarray(gap, dtype=float)
    ok = np.isfinite(acc) & np.isfinite(g)
    out = ok.copy()
    for i in np.flatnonzero(ok):
        better = ok & (acc >= acc[i]) & (g <= g[i]) & ((acc > acc[i]) | (g < g[i]))
        out[i] = not better.any()
    return out


def select_on_validation(pts: pd.DataFrame, gap: str) -> pd.DataFrame:
    """For each (dataset, method): the knob values non-dominated on the validation split in (accuracy, ``gap``),
    with their **test** numbers. Columns: dataset, method, knob, ``val_accuracy``, ``val_gap``, the test
    ``accuracy``/``accuracy_ci``/``gap``/``gap_ci``, ``n_seeds``, ``frontier`` (non-dominated on validation across
    all methods of the dataset) and ``uses_sensitive_at_prediction``."""
    val = pts[pts["split"] == "val"]
    test = {
        (r["dataset"], r["method"], _knob_key(r["knob"])): r for _, r in pts[pts["split"] == "test"].iterrows()
    }
    rows = []
    for dataset, dval in val.groupby("dataset", sort=False):
        dval = dval.assign(on_frontier=non_dominated(dval["accuracy"].to_numpy(), dval[gap].to_numpy()))
        for method_name, mval in dval.groupby("method", sort=False):
            keep = non_dominated(mval["accuracy"].to_numpy(), mval[gap].to_numpy())
            for _, row in mval[keep].iterrows():
                t = test.get((dataset, method_name, _knob_key(row["knob"])))
                if t is None:
                    continue
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method_name,
                        "knob": row["knob"],
                        "val_accuracy": row["accuracy"],
                        "val_gap": row[gap],
                        "accuracy": t["accuracy"],
                        "accuracy_ci": t["accuracy_ci"],
                        "gap": t[gap],
                        "gap_ci": t[f"{gap}_ci"],
                        "n_seeds": int(t["n_seeds"]),
                        "frontier": bool(row["on_frontier"]),
                        "uses_sensitive_at_prediction": bool(row["uses_sensitive_at_prediction"]),
                    }
                )
    columns = [
        "dataset", "method", "knob", "val_accuracy", "val_gap", "accuracy", "accuracy_ci", "gap", "gap_ci",
        "n_seeds", "frontier", "uses_sensitive_at_prediction",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _knob_key(knob: float) -> float | None:
    """A knob value as a dictionary key: None for a method without a knob (NaN is not equal to itself)."""
    return None if not np.isfinite(knob) else round(float(knob), 12)


def covers(a: pd.Series | dict, b: pd.Series | dict) -> bool:
    """Whether point ``a`` covers point ``b`` (accuracy not lower, gap not higher, up to the combined 95% CI
    half-widths; see the module docstring). Each point has ``accuracy``, ``accuracy_ci``, ``gap``, ``gap_ci``."""
    m_acc = math.hypot(_ci(a["accuracy_ci"]), _ci(b["accuracy_ci"]))
    m_gap = math.hypot(_ci(a["gap_ci"]), _ci(b["gap_ci"]))
    return bool(a["accuracy"] >= b["accuracy"] - m_acc and a["gap"] <= b["gap"] + m_gap)


def _ci(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


def at_least_as_good(curve_a: pd.DataFrame, curve_b: pd.DataFrame) -> bool:
    """A ⪰ B: every point of curve B is covered by some point of curve A (finite points only)."""
    a = [r for _, r in curve_a.iterrows() if np.isfinite(r["gap"]) and np.isfinite(r["accuracy"])]
    b = [r for _, r in curve_b.iterrows() if np.isfinite(r["gap"]) and np.isfinite(r["accuracy"])]
    return bool(a) and bool(b) and all(any(covers(pa, pb) for pa in a) for pb in b)


def relation(curve_a: pd.DataFrame, curve_b: pd.DataFrame) -> str:
    """``"dominates"``, ``"dominated"``, ``"indistinguishable"``, ``"cross"`` (A's relation to B), or ``"n/a"``
    when either curve has no point with a defined gap."""
    finite = [c[np.isfinite(c["gap"]) & np.isfinite(c["accuracy"])] for c in (curve_a, curve_b)]
    if any(c.empty for c in finite):
        return "n/a"
    ab, ba = at_least_as_good(curve_a, curve_b), at_least_as_good(curve_b, curve_a)
    if ab and ba:
        return "indistinguishable"
    if ab:
        return "dominates"
    if ba:
        return "dominated"
    return "cross"


def dominance_table(selected: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method A, method B), A's :func:`relation` to B on the selected points of one gap."""
    rows = []
    for dataset, d in selected.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(d["method"]))
        for a in methods:
            for b in methods:
                if a != b:
                    rel = relation(d[d["method"] == a], d[d["method"] == b])
                    rows.append({"dataset": dataset, "method": a, "versus": b, "relation": rel})
    return pd.DataFrame(rows, columns=["dataset", "method", "versus", "relation"])


def dominance_summary(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per method of ``dataset``: the methods it dominates, is dominated by, is indistinguishable
    from, and crosses (display labels)."""
    t = table[table["dataset"] == dataset]
    rows = []
    for method_name in dict.fromkeys(t["method"]):
        mine = t[t["method"] == method_name]

        def names(rel: str, mine: pd.DataFrame = mine) -> str:
            return ", ".join(display(v) for v in mine.loc[mine["relation"] == rel, "versus"]) or "-"

        rows.append(
            {
                "method": display(method_name),
                "dominates": names("dominates"),
                "dominated by": names("dominated"),
                "indistinguishable from": names("indistinguishable"),
                "crosses": names("cross"),
            }
        )
    return pd.DataFrame(rows)


def display(name: str) -> str:
    """A method's label in tables and figures (marked when it uses the sensitive attribute at prediction)."""
    return METHODS[name].display() if name in METHODS else name


@dataclass(frozen=True)
class GapVerdict:
    """Robust training against the standard mitigations on one gap of one dataset."""

    gap: str
    against_all: str  #: better / worse / mixed / n/a, against every standard mitigation present
    against_eg: str  #: the same against those that do not use s at prediction time
    dominated_by: tuple[str, ...]
    dominates: tuple[str, ...]


def _verdict(rels: dict[str, str]) -> str:
    if not rels or all(r == "n/a" for r in rels.values()):
        return "n/a"
    if any(r == "dominated" for r in rels.values()):
        return "worse"
    if all(r == "dominates" for r in rels.values()):
        return "better"
    return "mixed"


def gap_verdict(table: pd.DataFrame, dataset: str, gap: str) -> GapVerdict:
    """The verdict on ``gap`` (see the module docstring) from its :func:`dominance_table`."""
    t = table[(table["dataset"] == dataset) & (table["method"] == ROBUST)]
    standard = [m for m in t["versus"] if m in METHODS and METHODS[m].standard]
    rels = {m: t.loc[t["versus"] == m, "relation"].iloc[0] for m in standard}
    eg = {m: r for m, r in rels.items() if not METHODS[m].uses_sensitive_at_prediction}
    return GapVerdict(
        gap=gap,
        against_all=_verdict(rels),
        against_eg=_verdict(eg),
        dominated_by=tuple(m for m, r in rels.items() if r == "dominated"),
        dominates=tuple(m for m, r in rels.items() if r == "dominates"),
    )


def conclusion(
    dataset: str, verdicts: list[GapVerdict], selected: dict[str, pd.DataFrame], majority: float | None = None
) -> str:
    """The plain-words answer for ``dataset``: does robust training reach fairness levels at less accuracy cost
    than the standard mitigations, here? With each gap's verdict and the numbers behind it. ``majority``: the
    test accuracy of always predicting the majority class; a fairest point no more accurate than that is called
    what it is, the fairness of selecting (almost) nobody or everybody."""
    judged = [v for v in verdicts if v.against_all != "n/a"]
    if not judged:
        return f"On {dataset} there is nothing to conclude: robust training or the mitigations are missing."
    worse = [v for v in judged if v.against_all == "worse"]
    better = [v for v in judged if v.against_all == "better"]
    worse_eg = [v for v in judged if v.against_eg == "worse"]
    n, rest = len(judged), len(judged) - len(worse) - len(better)
    counts = (
        f"a standard mitigation dominates robust training on {len(worse)} of {n} gaps, robust training dominates "
        f"all of them on {len(better)}, and on {rest} the curves cross or cannot be told apart within the 95% CIs"
    )
    if len(worse) > n / 2:
        lead = f"**No.** On {dataset}, the standard mitigations reach the same fairness at less accuracy cost"
    elif len(better) > n / 2:
        lead = f"**Yes.** On {dataset}, robust training reaches the same fairness at less accuracy cost"
    else:
        lead = f"**Not clearly.** On {dataset}, neither robust training nor the standard mitigations win on most gaps"
    lines = [
        f"{lead}: {counts}. Against ExponentiatedGradient alone (which, unlike ThresholdOptimizer, needs no "
        f"sensitive attribute at prediction time) robust training is dominated on {len(worse_eg)} of {n} gaps."
    ]
    for v in verdicts:
        detail = _gap_numbers(selected.get(v.gap), dataset, v.gap, majority)
        if v.against_all == "worse":
            what = f"dominated by {', '.join(display(m) for m in v.dominated_by)}"
        elif v.against_all == "better":
            what = "dominates every standard mitigation"
        elif v.against_all == "mixed":
            what = "no dominance either way against at least one mitigation"
        else:
            what = "not comparable (undefined gap)"
        lines.append(f"- {METRIC_LABELS.get(v.gap, v.gap)}: {what}.{detail}")
    return "\n".join(lines)


def _gap_numbers(sel: pd.DataFrame | None, dataset: str, gap: str, majority: float | None = None) -> str:
    """' Fairest robust point: gap g at accuracy a (unmitigated: ...); best mitigation at a gap <= g: ...'."""
    if sel is None or sel.empty:
        return ""
    d = sel[(sel["dataset"] == dataset) & np.isfinite(sel["gap"])]
    robust = d[d["method"] == ROBUST]
    base = d[d["method"] == UNMITIGATED]
    if robust.empty:
        return ""
    fair = robust.loc[robust["gap"].idxmin()]
    text = (
        f" Fairest robust point ({knob_text(ROBUST, fair['knob'])}): gap {fair['gap']:.3f} at accuracy "
        f"{fair['accuracy']:.3f}"
    )
    if not base.empty:
        b = base.iloc[0]
        text += f" (unmitigated: gap {b['gap']:.3f}, accuracy {b['accuracy']:.3f})"
    if majority is not None and fair["accuracy"] <= majority + TRIVIAL_MARGIN:
        text += (
            f", no better than always predicting the majority class ({majority:.3f}): a gap closed by selecting "
            "(almost) nobody or everybody"
        )
    standard = d[d["method"].map(lambda m: m in METHODS and METHODS[m].standard)]
    reach = standard[standard["gap"] <= fair["gap"]]
    if not reach.empty:
        best = reach.loc[reach["accuracy"].idxmax()]
        knob = knob_text(best["method"], best["knob"]) if np.isfinite(best["knob"]) else ""
        text += (
            f"; the most accurate mitigation at a gap no larger: {display(best['method'])}"
            f"{' ' + knob if knob else ''}, gap {best['gap']:.3f} at accuracy {best['accuracy']:.3f}."
        )
    else:
        text += "; no standard mitigation reaches a gap that small."
    return text


def selected_model(pts: pd.DataFrame, dataset: str, method_name: str, gap: str = "independence") -> float | None:
    """The knob of a method's single selected model (for the robustness figure), chosen on validation only:
    among its knob values whose mean validation accuracy is at most :data:`ACCURACY_BUDGET` below the
    unmitigated model's, the one with the smallest validation ``gap``; if none qualifies, the one with the
    highest validation accuracy. NaN (returned as None) for a method without a knob."""
    val = pts[(pts["split"] == "val") & (pts["dataset"] == dataset)]
    mine = val[val["method"] == method_name]
    if mine.empty:
        return None
    base = val[val["method"] == UNMITIGATED]
    floor = float(base["accuracy"].iloc[0]) - ACCURACY_BUDGET if not base.empty else -np.inf
    ok = mine[(mine["accuracy"] >= floor) & np.isfinite(mine[gap])]
    row = ok.loc[ok[gap].idxmin()] if not ok.empty else mine.loc[mine["accuracy"].idxmax()]
    knob = row["knob"]
    return None if not np.isfinite(knob) else float(knob)
