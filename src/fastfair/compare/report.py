"""The comparison's report: trade-off figures, dominance tables, the verdict, per-group robustness.

:func:`write_report` reads only the results (the tidy table and the robustness table of the stored cells) and
writes into the comparison's directory::

    report.md                      the document: rules, per dataset the figures, tables and conclusion
    points.csv                     every (method, knob) point: mean and 95% half-width per split
    selected.csv                   per gap, the validation-selected points with their test numbers
    dominance.csv                  per gap, every method's relation to every other
    robustness_selected.csv        per-group robustness of each method's selected model (mean over seeds)
    figures/tradeoff_<dataset>.png      accuracy vs each of the five gaps (test), all methods
    figures/robustness_<dataset>.png    flip rate vs radius per group, each method's selected model
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes, atomic_write_text
from ..report.figures import new_figure, png_bytes
from ..report.labels import METRIC_LABELS
from ..report.tables import markdown_table
from ..vocabulary import GAP_KEYS
from . import analysis
from .methods import METHODS, ROBUST, knob_text
from .scoring import SCORING_RULE

_COLORS = {
    "none": "#000000",
    "robust": "#1f77b4",
    "eg-dp": "#d62728",
    "eg-eo": "#ff7f0e",
    "to-dp": "#9467bd",
    "to-eo": "#8c564b",
    "penalty-dp": "#2ca02c",
    "penalty-eo": "#bcbd22",
    "robust-penalty-dp": "#17becf",
    "robust-penalty-eo": "#e377c2",
}
_MARKERS = {"none": "*", "to-dp": "X", "to-eo": "P"}
DPI = 100


def tradeoff_figure(
    pts: pd.DataFrame, selected: dict[str, pd.DataFrame], dataset: str, majority: float | None = None
) -> object:
    """Accuracy against each gap on the test split: every (method, knob) point with its 95% CIs in both
    directions, each method's points joined in knob order; the points selected on validation filled, the
    others hollow; the validation frontier across methods ringed in black; a dashed grey line at the accuracy of
    always predicting the majority class (``majority``)."""
    test = pts[(pts["split"] == "test") & (pts["dataset"] == dataset)]
    fig = new_figure(15, 9)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.92, wspace=0.25, hspace=0.28)
    axes = [fig.add_subplot(2, 3, i + 1) for i in range(len(GAP_KEYS))]
    handles = {}
    for ax, gap in zip(axes, GAP_KEYS, strict=True):
        sel = selected[gap]
        sel = sel[sel["dataset"] == dataset]
        for name in dict.fromkeys(test["method"]):
            m = test[test["method"] == name].sort_values("knob")
            color = _COLORS.get(name, "#7f7f7f")
            marker = _MARKERS.get(name, "o")
            ax.errorbar(
                m[gap], m["accuracy"], xerr=m[f"{gap}_ci"], yerr=m["accuracy_ci"], color=color, lw=1.0,
                ls="-" if len(m) > 1 else "none", marker=marker, ms=6, mfc="none", capsize=2, alpha=0.8,
            )  # fmt: skip
            chosen = sel[sel["method"] == name]
            h = ax.plot(chosen["gap"], chosen["accuracy"], ls="none", marker=marker, ms=8, color=color)[0]
            front = chosen[chosen["frontier"]]
            ax.plot(front["gap"], front["accuracy"], ls="none", marker="o", ms=13, mfc="none", mec="black", mew=1.2)
            handles.setdefault(name, h)
        if majority is not None:
            ax.axhline(majority, color="#7f7f7f", ls="--", lw=1.0)
        ax.set_xlabel(f"{METRIC_LABELS[gap]} gap (test)")
        ax.set_ylabel("accuracy (test)")
        accuracy = test["accuracy"].to_numpy(dtype=float)
        _limits(ax, test[gap].to_numpy(dtype=float), np.append(accuracy, [] if majority is None else [majority]))
        ax.grid(alpha=0.3)
    ring = axes[0].plot([], [], ls="none", marker="o", ms=13, mfc="none", mec="black", mew=1.2)[0]
    extra, extra_labels = [ring], ["non-dominated on validation (all methods)"]
    if majority is not None:
        extra.append(axes[0].plot([], [], color="#7f7f7f", ls="--", lw=1.0)[0])
        extra_labels.append("always the majority class")
    legend_ax = fig.add_subplot(2, 3, 6)
    legend_ax.axis("off")
    legend_ax.legend(
        [*handles.values(), *extra],
        [analysis.display(n) for n in handles] + extra_labels,
        loc="center",
        fontsize=9,
        frameon=False,
        title="filled: chosen on validation; hollow: other knob values;\nbars: 95% CI (may run off the axes)",
        title_fontsize=8,
    )
    fig.suptitle(f"{dataset}: accuracy vs each fairness gap on the test split, mean ± 95% CI over seeds")
    return fig


def _limits(ax: object, gaps: np.ndarray, accuracy: np.ndarray) -> None:
    """Axes that fit the means (a 2-seed interval can be wider than the whole range): gap from 0, accuracy within
    [0, 1], with a margin."""
    g, a = gaps[np.isfinite(gaps)], accuracy[np.isfinite(accuracy)]
    if len(g):
        ax.set_xlim(-0.01, max(float(g.max()) * 1.15, 0.02))
    if len(a):
        lo, hi = float(a.min()), float(a.max())
        pad = max(0.02, 0.1 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))


def robustness_selected(robust: pd.DataFrame, pts: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per-group robustness of each method's selected model (:func:`analysis.selected_model`), mean over
    seeds: one row per (method, knob, radius, group)."""
    if robust.empty:
        return pd.DataFrame()
    r = robust[robust["dataset"] == dataset].copy()
    r["knob"] = pd.to_numeric(r["knob"], errors="coerce")
    parts = []
    for name in dict.fromkeys(r["method"]):
        knob = analysis.selected_model(pts, dataset, name)
        mine = r[r["method"] == name]
        mine = mine[mine["knob"].isna()] if knob is None else mine[np.isclose(mine["knob"], knob)]
        if mine.empty:
            continue
        agg = (
            mine.groupby(["radius", "group"], sort=True)
            .agg(
                flip_rate=("flip_rate", "mean"),
                robust_accuracy=("robust_accuracy", "mean"),
                n=("n", "first"),
                seeds=("seed", "nunique"),
                how=("how", "first"),
            )
            .reset_index()
        )
        agg.insert(0, "knob", knob)
        agg.insert(0, "method", name)
        parts.append(agg)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def robustness_figure(table: pd.DataFrame, dataset: str) -> object:
    """Flip rate against the radius, one panel per group (and ``all``), one line per method's selected model."""
    groups = list(dict.fromkeys(table["group"].astype(str)))
    fig = new_figure(4.2 * len(groups) + 2.5, 3.8)
    fig.subplots_adjust(left=0.06, right=0.78, bottom=0.15, top=0.85, wspace=0.25)
    axes = [fig.add_subplot(1, len(groups), i + 1) for i in range(len(groups))]
    for ax, group in zip(axes, groups, strict=True):
        g = table[table["group"].astype(str) == group]
        for name in dict.fromkeys(g["method"]):
            m = g[g["method"] == name].sort_values("radius")
            label = _with_knob(name, m["knob"].iloc[0])
            ax.plot(m["radius"], m["flip_rate"], marker=_MARKERS.get(name, "o"), color=_COLORS.get(name), label=label)
        ax.set_title(f"group {group}")
        ax.set_xlabel("radius r")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of test points whose prediction flips")
    h, labels = axes[0].get_legend_handles_labels()
    fig.legend(h, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"{dataset}: per-group robustness of each method's selected model (test split, mean over seeds)")
    return fig


RULES = f"""\
**How to read this report.**

- *Scoring.* Every method is scored by the same rule: the metrics of its {SCORING_RULE}. Fairlearn's
  ExponentiatedGradient and ThresholdOptimizer are randomised classifiers; their `predict` draws new random
  numbers on each call. Our models are deterministic, and for them the rule gives exactly their ordinary
  metrics.
- *Selection on validation.* A method's knob (radius r, constraint bound eps, penalty weight lambda) is never
  chosen on test. On each gap, its curve is the set of knob values that are non-dominated on the **validation**
  split (no other knob value has validation accuracy ≥ and gap ≤). Those points are shown filled, with their
  **test** numbers. Hollow points are the other knob values. A black ring marks the points that are
  non-dominated on validation across all methods.
- *Dominance rule.* Point a covers point b if acc(a) ≥ acc(b) − √(h_acc(a)² + h_acc(b)²) and
  gap(a) ≤ gap(b) + √(h_gap(a)² + h_gap(b)²), where h is the 95% CI half-width over seeds (0 with one seed).
  Curve A ⪰ curve B if every selected point of B is covered by a selected point of A. **A dominates B** if
  A ⪰ B and not B ⪰ A. If both hold they are *indistinguishable*; if neither holds the curves *cross*. Points
  with an undefined gap (NaN, e.g. no predicted positive in a group for PPV) are left out of that gap.
- *Verdict.* On a gap, robust training is *worse* than the standard mitigations if one of them (ExpGrad DP/EO,
  ThresholdOpt DP/EO) dominates it. It is *better* if it dominates all of them, and *mixed* otherwise.
  ThresholdOptimizer is marked **[uses s at prediction]** everywhere: it needs the sensitive attribute to
  predict, which the other methods do not. The verdict is also given against ExponentiatedGradient alone.
- *Selected model* (robustness figure): among a method's knob values whose validation accuracy is within
  {analysis.ACCURACY_BUDGET:g} of the unmitigated model's, the one with the smallest validation independence
  gap. If none qualifies, the most accurate one. The flip rate is exact for the affine model (|f(x)|/‖w‖ ≤ r).
  For other models it comes from an attack, a lower bound. For ExponentiatedGradient it is the mixture's
  expectation over its predictors. ThresholdOptimizer is not attacked: its group thresholds need s.
"""


def write_report(
    results: pd.DataFrame,
    robust: pd.DataFrame,
    out_dir: Path,
    *,
    settings: dict[str, str],
    notes: list[str] | None = None,
    fairlearn_version: str = "",
    seconds: float | None = None,
    majority: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write the report files (see the module docstring) for every dataset of ``results``; return their paths.

    ``settings``: dataset -> the paragraph describing its grids and training settings. ``majority``: dataset ->
    the test accuracy of always predicting the majority class (mean over seeds), drawn as a reference line.
    """
    majority = majority or {}
    out_dir = Path(out_dir)
    pts = analysis.points(results)
    selected = {gap: analysis.select_on_validation(pts, gap) for gap in GAP_KEYS}
    dominance = {gap: analysis.dominance_table(selected[gap]) for gap in GAP_KEYS}
    written: dict[str, Path] = {}
    written["points_csv"] = atomic_write_text(out_dir / "points.csv", pts.to_csv(index=False))
    written["selected_csv"] = atomic_write_text(
        out_dir / "selected.csv",
        pd.concat([s.assign(gap_name=g) for g, s in selected.items()], ignore_index=True).to_csv(index=False),
    )
    written["dominance_csv"] = atomic_write_text(
        out_dir / "dominance.csv",
        pd.concat([d.assign(gap=g) for g, d in dominance.items()], ignore_index=True).to_csv(index=False),
    )
    lines = ["# Robust training vs the fairness toolbox", ""]
    if fairlearn_version:
        lines += [f"Fairlearn {fairlearn_version}, through its public API.", ""]
    if seconds is not None:
        lines += [f"Run time: {seconds:.0f} s.", ""]
    lines += [RULES, ""]
    for note in notes or []:
        lines += [f"> {note}", ""]
    robust_tables = []
    for dataset in dict.fromkeys(results["dataset"]):
        stem = _stem(dataset)
        lines += [f"## {dataset}", "", settings.get(dataset, ""), ""]
        verdicts = [analysis.gap_verdict(dominance[g], dataset, g) for g in GAP_KEYS]
        lines += ["### Conclusion", "", analysis.conclusion(dataset, verdicts, selected, majority.get(dataset)), ""]
        fig = tradeoff_figure(pts, selected, dataset, majority.get(dataset))
        path = f"figures/tradeoff_{stem}.png"
        written[f"fig_tradeoff_{stem}"] = atomic_write_bytes(out_dir / path, png_bytes(fig, DPI))
        lines += [f"![{dataset}: accuracy vs each gap]({path})", ""]
        for gap in GAP_KEYS:
            lines += [f"### {METRIC_LABELS[gap]}", ""]
            lines += [_selected_markdown(selected[gap], dataset), ""]
            summary = analysis.dominance_summary(dominance[gap], dataset)
            if summary.empty:
                lines += ["Dominance on this gap: none to state (fewer than two methods here have points).", ""]
            else:
                lines += ["Dominance on this gap (rule above):", "", markdown_table(summary), ""]
        table = robustness_selected(robust, pts, dataset)
        if not table.empty:
            robust_tables.append(table.assign(dataset=dataset))
            path = f"figures/robustness_{stem}.png"
            written[f"fig_robustness_{stem}"] = atomic_write_bytes(
                out_dir / path, png_bytes(robustness_figure(table, dataset), DPI)
            )
            lines += ["### Per-group robustness of each method's selected model", "", f"![robustness]({path})", ""]
            lines += [_robustness_markdown(table), ""]
    if robust_tables:
        written["robustness_selected_csv"] = atomic_write_text(
            out_dir / "robustness_selected.csv", pd.concat(robust_tables, ignore_index=True).to_csv(index=False)
        )
    lines += [
        "## Files",
        "",
        "`results.csv` (one row per cell × split, with the per-group robustness summary on test rows), "
        "`robustness.csv` (every cell's per-group robustness), `points.csv`, `selected.csv`, `dominance.csv`, "
        "`robustness_selected.csv`, `cells/` (one JSON file per finished cell).",
        "",
    ]
    written["report_md"] = atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return written


def _with_knob(name: str, knob: float | None) -> str:
    """A method's label with its knob, e.g. ``robust training (r=0.1)``."""
    has_knob = knob is not None and np.isfinite(knob)
    return analysis.display(name) + (f" ({knob_text(name, knob)})" if has_knob else "")


def _stem(dataset: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset).strip("-") or "x"


def _pm(mean: float, half: float) -> str:
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.3f} ± {half:.3f}" if half > 0 else f"{mean:.3f}"


def _selected_markdown(sel: pd.DataFrame, dataset: str) -> str:
    d = sel[sel["dataset"] == dataset]
    rows = []
    for r in d.itertuples(index=False):
        rows.append(
            {
                "method": analysis.display(r.method),
                "knob": knob_text(r.method, r.knob) if np.isfinite(r.knob) else "-",
                "val acc": f"{r.val_accuracy:.3f}",
                "val gap": f"{r.val_gap:.3f}" if np.isfinite(r.val_gap) else "-",
                "test accuracy": _pm(r.accuracy, r.accuracy_ci),
                "test gap": _pm(r.gap, r.gap_ci),
                "frontier": "yes" if r.frontier else "",
            }
        )
    if not rows:
        return "(no points)"
    return (
        "Points chosen on validation (non-dominated per method), with their test numbers (mean ± 95% CI):\n\n"
        + markdown_table(pd.DataFrame(rows))
    )


def _robustness_markdown(table: pd.DataFrame) -> str:
    t = table.copy()
    t["method"] = [_with_knob(m, k) for m, k in zip(t["method"], t["knob"], strict=True)]
    wide = t.pivot_table(index=["method", "radius"], columns="group", values="flip_rate", sort=False).reset_index()
    wide.columns = [str(c) if c in ("method", "radius") else f"flip rate {c}" for c in wide.columns]
    return markdown_table(wide)


__all__ = ["METHODS", "ROBUST", "write_report"]
