"""From the reference protocol to ours, one difference at a time; and the spread of a row over seeds.

Ablation (:func:`ablation_runs`, :func:`ablation_table`). For every seed, the reference cell
(:class:`~fastfair.reference.protocol.ReferenceCell` with every switch at ``"reference"``) is run, and then the
same cell with exactly one switch set to ``"ours"`` (:data:`ABLATIONS`):

* Unfair2D: ``draw`` (fastfair's numpy generator instead of the reference's torch draw, same sizes),
  ``splits`` (400 training / 100 validation points of the same 500 instead of 200 / 300), ``init`` (fastfair's
  ``nn.Linear`` initialisation, bound 1/√d, instead of bound 1);
* Adult: ``records`` (every record, rows with ``?`` dropped), ``label`` (y = 1 for ``>50K``), ``splits`` (a
  seeded stratified split standardised on its training rows), ``init``;
* both, robust cells: ``solver`` -- the reference's TRS ``trs-paper`` replaced by fastfair's exact ``trs``, or
  the reference's batch-shared PGD ``pgd-paper`` by its per-sample variant.

The change of a metric caused by a switch is the paired difference d_k = m(switched, seed k) - m(reference,
seed k). The seed moves the initial weights and the batch order (and the draw, for Unfair2D), so d_k is
random; the table gives its mean d̄ over K seeds with the 95% Student-t interval d̄ ± t_{0.975, K-1}·s_d/√K and
the two-sided paired t-test p-value for "no change". When every d_k is equal (s_d = 0) the t statistic is
undefined: the interval is the point d̄, and the p-value is 1 if d̄ = 0, else the two-sided sign test's
min(1, 2·2⁻ᴷ) (all K changes share one sign), so that a few identical changes are not called certain.

A table tests many claims at once (every switch × metric), so it also gives Holm's step-down adjustment over its
m rows (:func:`holm`): with the p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted p₍ᵢ₎ is
max_{j ≤ i} min(1, (m - j + 1)·p₍ⱼ₎); a change is significant at level α for the whole family when its adjusted
p-value is ≤ α (family-wise error rate ≤ α under any dependence).

Seed spread (:func:`seed_spread`, :func:`seed_spread_summary`): the reference cell over many seeds, and where
the single published value (the reference's seed, 42) lies in that distribution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import require
from ..vocabulary import GAP_KEYS
from .protocol import SEED, ReferenceCell, run_reference_cell

#: The switches of the ablation, per dataset (see the module docs). ``solver`` applies to robust cells only.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "unfair2d": ("draw", "splits", "init", "solver"),
    "adult": ("records", "label", "splits", "init", "solver"),
}
#: What replaces each reference solver under the ``solver`` switch.
OUR_SOLVER = {"trs-paper": "trs", "pgd-paper": "pgd-paper-per-sample"}
#: Metrics the tables report by default: accuracy on train and test, and the gaps on train (the split the
#: reference reports its fairness on) and on test.
DEFAULT_METRICS: tuple[str, ...] = (
    "train_accuracy",
    "test_accuracy",
    *(f"train_{g}" for g in GAP_KEYS),
    *(f"test_{g}" for g in GAP_KEYS),
)
#: Confidence level of every interval.
CONFIDENCE = 0.95


def switched(cell: ReferenceCell, switch: str) -> ReferenceCell:
    """``cell`` with one difference set to ours (module docs)."""
    require(switch in ABLATIONS[cell.dataset], f"no switch {switch!r} for {cell.dataset}")
    if switch == "solver":
        require(
            cell.solver in OUR_SOLVER, f"the solver switch needs solver trs-paper or pgd-paper, not {cell.solver!r}"
        )
        return replace(cell, solver=OUR_SOLVER[cell.solver])
    return replace(cell, **{switch: "ours"})


def ablation_runs(
    dataset: str,
    solver: str = "none",
    radius: float = 0.0,
    *,
    epochs: int | None = None,
    seeds: Iterable[int] = range(5),
    switches: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (seed, switch): the reference cell (``switch == "reference"``) and each switched cell.

    ``switches`` default to every switch of the dataset that applies (``solver`` only for a robust cell).
    Columns: ``switch``, the cell's fields (:meth:`ReferenceCell.describe`), the metrics of
    :func:`~fastfair.reference.protocol.run_reference_cell` and its timing.
    """
    base = ReferenceCell(dataset=dataset, solver=solver, radius=radius)
    if epochs is not None:
        base = replace(base, epochs=epochs)
    base.validate()
    if switches is None:
        switches = [s for s in ABLATIONS[dataset] if s != "solver" or solver in OUR_SOLVER]
    cells = []
    seeds = [int(s) for s in seeds]
    require(len(seeds) > 0, "give at least one seed")
    for seed in seeds:
        cell = replace(base, seed=seed)
        cells.append(("reference", cell))
        cells.extend((name, switched(cell, name)) for name in switches)
    rows = []
    for name, cell in progress_items(cells, progress, f"ablation {dataset}"):
        rows.append({"switch": name, **run_reference_cell(cell)})
    return pd.DataFrame(rows)


def ablation_table(runs: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """The change each switch makes, paired by seed (module docs): one row per (switch, metric).

    Columns: ``switch``, ``metric``, ``seeds`` (K), ``reference`` and ``switched`` (means over the seeds),
    ``change`` (d̄), ``ci_low``, ``ci_high`` (95% t interval of d̄), ``p_value``, ``p_holm`` (Holm over the
    table's rows), and ``change_at_42`` (the change
    at the reference's seed; only when seed 42 was run). Needs at least two seeds
    for an interval (FastfairError otherwise). Metrics that are NaN for a seed (an undefined gap) drop that
    seed's pair for that metric.
    """
    require(not runs.empty, "no runs to summarise")
    ref = runs[runs["switch"] == "reference"].set_index("seed")
    require(len(ref) >= 2, "an interval over seeds needs at least two seeds")
    out = []
    for name in [s for s in runs["switch"].unique() if s != "reference"]:
        sw = runs[runs["switch"] == name].set_index("seed")
        common = ref.index.intersection(sw.index)
        for metric in metrics:
            a, b = ref.loc[common, metric].to_numpy(float), sw.loc[common, metric].to_numpy(float)
            ok = np.isfinite(a) & np.isfinite(b)
            row = {"switch": name, "metric": metric, **_paired(a[ok], b[ok])}
            if SEED in common:
                row["change_at_42"] = float(sw.loc[SEED, metric] - ref.loc[SEED, metric])
            out.append(row)
    table = pd.DataFrame(out)
    if "p_value" in table:
        table["p_holm"] = holm(table["p_value"].to_numpy(float))
    return table


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (module docs), in the input order; NaN entries stay NaN and do not
    count in m."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def seed_spread(
    dataset: str = "unfair2d",
    solver: str = "trs-paper",
    radius: float = 0.18,
    *,
    seeds: Iterable[int] = range(20),
    epochs: int | None = None,
    include_reference_seed: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """The reference cell over ``seeds`` (and the reference's seed 42 unless excluded): one row per seed with
    its metrics; ``reference_seed`` marks seed 42."""
    seeds = [int(s) for s in seeds]
    if include_reference_seed and SEED not in seeds:
        seeds.append(SEED)
    require(len(seeds) > 0, "give at least one seed")
    base = ReferenceCell(dataset=dataset, solver=solver, radius=radius)
    if epochs is not None:
        base = replace(base, epochs=epochs)
    base.validate()
    rows = [run_reference_cell(replace(base, seed=s)) for s in progress_items(seeds, progress, f"seeds {dataset}")]
    frame = pd.DataFrame(rows)
    frame["reference_seed"] = frame["seed"] == SEED
    return frame


def seed_spread_summary(frame: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """Per metric, over the seeds other than 42: ``seeds``, ``mean``, ``sd``, ``min``, ``max``, the 95% t interval
    of the mean (``ci_low``, ``ci_high``), and for seed 42 its ``value_at_42`` and ``share_below`` (the share
    of the other seeds with a smaller value; ties count half). Needs two or more other seeds."""
    others = frame[frame["seed"] != SEED]
    require(len(others) >= 2, "a spread needs at least two seeds besides 42")
    at42 = frame[frame["seed"] == SEED]
    rows = []
    for metric in metrics:
        v = others[metric].to_numpy(float)
        v = v[np.isfinite(v)]
        row: dict[str, Any] = {"metric": metric, "seeds": len(v)}
        if len(v):
            mean, sd = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
            half = _t_half_width(sd, len(v))
            row.update(
                mean=mean, sd=sd, min=float(v.min()), max=float(v.max()), ci_low=mean - half, ci_high=mean + half
            )
        if len(at42) and len(v):
            x = float(at42[metric].iloc[0])
            row["value_at_42"] = x
            row["share_below"] = float((np.sum(v < x) + 0.5 * np.sum(v == x)) / len(v))
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    d = b - a
    k = len(d)
    if k == 0:
        return {"seeds": 0}
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if k > 1 else 0.0
    half = _t_half_width(sd, k)
    if sd > 0:
        p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(k)), k - 1))
    else:
        p = 1.0 if mean == 0 else min(1.0, 2.0 * 0.5**k)
    return {
        "seeds": k,
        "reference": float(a.mean()),
        "switched": float(b.mean()),
        "change": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "p_value": p,
    }


def _t_half_width(sd: float, k: int) -> float:
    """Half width of the two-sided t interval of a mean of k values with sample sd (0 when sd = 0 or k < 2)."""
    if k < 2 or sd == 0:
        return 0.0
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, k - 1) * sd / math.sqrt(k))


def progress_items(items: Sequence[Any], show: bool, desc: str) -> Iterable[Any]:
    """``items``, behind a progress bar (tqdm, on stderr) when ``show``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
