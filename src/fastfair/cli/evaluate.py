r"""``fastfair evaluate``: audit a saved model on a bundled split or a CSV file.

Accuracy, AUC and the five fairness gaps (:func:`fastfair.metrics.classification_summary`, the numbers
``fastfair train`` reports) with bootstrap 95% confidence intervals, the group sizes and per-group table, and
optionally the robustness per group at given radii.

Bootstrap (:func:`bootstrap_intervals`): ``B`` resamples of the rows, each drawn with replacement **within
each group** (the group sizes n_g stay fixed, so every resample holds every group: the gaps compare the same
groups), seeded. A statistic's interval is the percentile interval of its ``B`` resampled values,
[q_{2.5%}, q_{97.5%}], over the resamples where it is defined (a gap is undefined when a rate's conditioning
cell is empty in some group of a resample; the count of defined resamples is reported). The resampled
statistics are computed for all resamples at once from the per-resample confusion cells (one
``np.bincount``) and, for AUC, from the per-resample multiplicities of the score-sorted rows: with ties grouped
into blocks of equal score, AUC = Σ_blocks P_b (N_{<b} + ½ N_b) / (P N), the Mann-Whitney statistic with
mid-ranks, where P_b and N_b are the resampled positives and negatives in block b and N_{<b} the negatives
in lower blocks.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from .. import metrics
from ..datasets.user_csv import encode_groups, read_csv_frame
from ..errors import require
from ..io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, dumps_json
from ..model_file import SavedModel, load_model
from ..robustness import group_robustness, robustness_figure
from ..vocabulary import GAP_KEYS, GAP_RATES, SPLITS
from .common import add_command, check_out_dir, format_table

HELP = "audit a saved model on a bundled split or a CSV: accuracy, AUC, gaps with bootstrap CIs, robustness"
DESCRIPTION = (
    "Evaluate a model file (model.pt of `fastfair train --out`) on a split of the dataset it was trained on "
    "(--dataset NAME --split test, or --data TRAINING.csv --split test) or on all rows of a CSV file (--data "
    "new.csv). Reports accuracy, AUC and the five fairness gaps (max - min over groups) with bootstrap 95% "
    "confidence intervals and the group sizes, the per-group table, and with --radii the robustness per group."
)
EPILOG = (
    "examples:\n"
    "  fastfair evaluate --model runs/loans/model.pt --data examples/loans.csv --split test\n"
    "  fastfair evaluate --model runs/loans/model.pt --data new_loans.csv --radii 0.05 0.1 --json\n"
    "  fastfair evaluate --model runs/adult/model.pt --dataset adult --split test --out runs/adult/audit\n"
    "\n"
    "A split is rebuilt exactly as in training (same seed and options; for a CSV, only from the very file\n"
    "trained on, checked by its sha256), so the point estimates equal those of `fastfair train` on that split\n"
    "(train: all its rows, also when --train-size trained on fewer). On a CSV without --split, every row is\n"
    "evaluated: the target and sensitive columns are the training ones unless --target / --sensitive name\n"
    "others; the groups are the sensitive column's values. Bootstrap: --bootstrap B resamples (default\n"
    "1000) drawn within each group, seeded by --seed; percentile intervals. --out DIR writes evaluation.json,\n"
    "summary.csv, groups.csv, evaluation.png (and robustness.csv, robustness.png with --radii) as one set."
)

#: Resamples of the bootstrap unless --bootstrap says otherwise.
DEFAULT_RESAMPLES = 1000
#: Coverage of the bootstrap intervals.
LEVEL = 0.95
#: Most resampled values (resamples x rows) held in memory at once.
_CHUNK_VALUES = 2_000_000
#: The statistics of the summary, in order.
STATISTICS = ("accuracy", "auc", *GAP_KEYS)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--model", metavar="MODEL", required=True, help="a model file (DIR/model.pt of fastfair train)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME", help="the bundled dataset the model was trained on")
    data.add_argument("--data", metavar="CSV", help="a CSV file: the training file (with --split) or new rows")
    data.add_argument("--split", choices=SPLITS, help="a split of the training data (default with --dataset: test)")
    data.add_argument("--target", metavar="COL", help="label column of --data (default: the training one)")
    data.add_argument("--sensitive", metavar="COL", help="group column of --data (default: the training one)")
    stats = p.add_argument_group("statistics")
    stats.add_argument(
        "--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="B", help="resamples (default: %(default)s)"
    )
    stats.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and robustness (default: 0)")
    stats.add_argument(
        "--radii", type=float, nargs="+", metavar="R", help="also report robustness per group at these L2 radii"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    out.add_argument("--out", metavar="DIR", help="write evaluation.json, summary.csv, groups.csv and figures here")
    out.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out DIR")
    p.set_defaults(run=run)


# ----------------------------------------------------------------------------------------------------------
# The bootstrap
# ----------------------------------------------------------------------------------------------------------
def bootstrap_resamples(codes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, n)`` row indices: each resample draws, for every group, n_g of its rows with replacement.

    Row ``j`` of a resample is drawn from the group of row ``j`` (uniformly among that group's rows), so each
    resample has exactly the group sizes of ``codes``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    by_group = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    start, size = starts[codes], sizes[codes]
    u = rng.random((resamples, len(codes)))
    offset = np.minimum(np.floor(u * size).astype(np.int64), size - 1)
    return by_group[start + offset]


def resampled_statistics(
    y: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, codes: np.ndarray, picks: np.ndarray
) -> dict[str, np.ndarray]:
    """Accuracy, AUC and the five absolute gaps of each resample (rows ``picks``, shape (B, n)), as (B,) arrays.

    Exactly :func:`fastfair.metrics.classification_summary` of each resample (NaN where a statistic is
    undefined), computed for all resamples at once (see the module docstring).
    """
    y, y_pred, codes = (np.asarray(a, dtype=np.int64) for a in (y, y_pred, codes))
    B, n = picks.shape
    k = int(codes.max()) + 1
    flat = np.arange(B)[:, None] * (4 * k) + codes[picks] * 4 + y[picks] * 2 + y_pred[picks]
    cells = np.bincount(flat.ravel(), minlength=B * 4 * k).reshape(B, k, 4).astype(np.float64)
    tn, fp, fn, tp = (cells[..., j] for j in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = {
            "selection_rate": (tp + fp) / (tn + fp + fn + tp),
            "tpr": tp / (tp + fn),
            "fpr": fp / (fp + tn),
            "ppv": tp / (tp + fp),
            "for": fn / (fn + tn),
        }
    out = {"accuracy": (tp + tn).sum(axis=1) / n, "auc": _resampled_auc(y, scores, picks)}
    for key, rate in GAP_RATES.items():
        r = rates[rate]
        gap = r.max(axis=1) - r.min(axis=1)  # NaN as soon as one group's rate is undefined
        out[key] = np.where(np.isnan(r).any(axis=1), np.nan, gap)
    return out


def _resampled_auc(y: np.ndarray, scores: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (mid-ranks for ties) of each resample, from the multiplicities of the sorted rows."""
    B, n = picks.shape
    order = np.argsort(scores, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    sorted_scores, sorted_y = scores[order], y[order].astype(np.float64)
    blocks = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    counts = np.bincount((np.arange(B)[:, None] * n + position[picks]).ravel(), minlength=B * n).reshape(B, n)
    positives = np.add.reduceat(counts * sorted_y, blocks, axis=1)
    negatives = np.add.reduceat(counts * (1.0 - sorted_y), blocks, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def bootstrap_intervals(
    y: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray,
    codes: np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict[str, float | int]]:
    """Percentile bootstrap intervals of :data:`STATISTICS`: ``{stat: {"low", "high", "defined"}}``.

    ``resamples`` resamples within groups (:func:`bootstrap_resamples`) from ``numpy.random.default_rng(seed)``,
    processed in chunks; ``defined`` counts the resamples where the statistic exists (``low`` and ``high`` are
    NaN when none does).
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = max(1, _CHUNK_VALUES // max(n, 1))
    values: dict[str, list[np.ndarray]] = {s: [] for s in STATISTICS}
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        stats = resampled_statistics(y, y_pred, scores, codes, bootstrap_resamples(codes, b, rng))
        for s in STATISTICS:
            values[s].append(stats[s])
        done += b
    tail = (1.0 - level) / 2.0
    out: dict[str, dict[str, float | int]] = {}
    for s in STATISTICS:
        v = np.concatenate(values[s])
        v = v[np.isfinite(v)]
        low, high = np.quantile(v, [tail, 1.0 - tail]) if len(v) else (np.nan, np.nan)
        out[s] = {"low": float(low), "high": float(high), "defined": len(v)}
    return out


# ----------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    require(args.out is not None or not args.force, "--force goes with --out DIR")
    require(
        isinstance(args.bootstrap, int) and 1 <= args.bootstrap <= 100_000,
        f"--bootstrap must be an integer from 1 to 100000, got {args.bootstrap}",
    )
    require(0 <= args.seed < 2**63, f"--seed must be a non-negative integer below 2**63, got {args.seed}")
    radii = _check_radii(args.radii)
    out_dir = check_out_dir(args.out, fresh=True, force=args.force)
    saved = load_model(args.model)
    rows = _rows(saved, args)
    report, tables = evaluate_rows(saved, rows, resamples=args.bootstrap, seed=args.seed, radii=radii)
    report["model"] = str(args.model)
    if out_dir is not None:
        _write(out_dir, report, tables, replace=args.force)
    if args.json:
        print(dumps_json(report))
    else:
        print(render_text(report, tables))
        if out_dir is not None:
            print(f"\nwrote {out_dir}/" + ", ".join(tables["files"]))
    return 0


def _check_radii(radii: list[float] | None) -> list[float]:
    for r in radii or []:
        require(bool(np.isfinite(r)) and r > 0, f"--radii must be positive finite numbers, got {r!r}")
    return list(radii or [])


def _rows(saved: SavedModel, args: argparse.Namespace) -> dict[str, Any]:
    """The rows to evaluate: standardised features, label codes, group codes and names, and where they are from."""
    trained_on = saved.dataset_name
    if args.dataset is not None:
        require(args.data is None, "give either --dataset or --data, not both")
        require(args.target is None and args.sensitive is None, "--target and --sensitive go with --data")
        name = args.dataset.strip().lower()
        require(
            name == trained_on,
            f"the model was trained on {trained_on!r}, not {args.dataset!r}; evaluate it on {trained_on!r} or on a "
            "CSV file with its feature columns (--data)",
        )
        split_name = args.split or "test"
        return _from_split(saved.split(split_name), source=f"{trained_on} {split_name}", name=split_name)
    require(args.data is not None, "give --dataset NAME or --data CSV")
    source = Path(args.data).name
    if args.split is not None:
        require(args.target is None and args.sensitive is None, "--target and --sensitive do not go with --split")
        require(
            trained_on.startswith("csv:"),
            f"the model was trained on {trained_on!r}, not on a CSV file; for its splits use --dataset {trained_on}",
        )
        part = saved.split(args.split, csv=args.data)
        return _from_split(part, source=f"{source} {args.split}", name=args.split)
    frame = read_csv_frame(args.data)
    target = args.target or saved.target_column
    sensitive = args.sensitive or saved.sensitive_column
    for role, col, flag in (("label", target, "--target"), ("group", sensitive, "--sensitive")):
        require(col is not None, f"the model file names no {role} column; give it with {flag}")
        require(
            col in frame.columns,
            f"{role} column {col!r} not found in {source}; name the {role} column with {flag}",
        )
    X = saved.features(frame, source=source)
    y = saved.labels(frame[target], column=target, source=source)
    codes, groups = encode_groups(frame[sensitive], sensitive)
    return {"X": X, "y": y, "s": codes, "groups": list(groups), "source": source, "split": None}


def _from_split(part: Any, *, source: str, name: str) -> dict[str, Any]:
    return {"X": part.X, "y": part.y, "s": part.s, "groups": list(part.group_names), "source": source, "split": name}


def evaluate_rows(
    saved: SavedModel, rows: dict[str, Any], *, resamples: int, seed: int, radii: list[float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation of ``saved`` on ``rows`` (see :func:`_rows`): the JSON report and the tables."""
    X, y, s, groups = rows["X"], rows["y"], rows["s"], rows["groups"]
    logits = saved.decision_function(X)
    scores, y_pred = expit(logits), (logits > 0).astype(np.int64)
    names = np.asarray(groups, dtype=object)[s]
    summary = metrics.classification_summary(y, y_pred, names, scores=scores)
    table = metrics.group_table(y, y_pred, s, scores=scores, group_names=dict(enumerate(groups)))
    present = np.unique(s)
    ci = bootstrap_intervals(y, y_pred, scores, np.searchsorted(present, s), resamples=resamples, seed=seed)
    report: dict[str, Any] = {
        "model": None,
        "trained_on": saved.dataset_name,
        "data": rows["source"],
        "split": rows["split"],
        "rows": len(y),
        "labels": {"negative": saved.label_names[0], "positive": saved.label_names[-1]},
        "summary": summary,
        "ci": ci,
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "level": LEVEL,
            "method": "percentile intervals; rows resampled with replacement within each group",
        },
        "groups": table.reset_index(names="group").to_dict(orient="records"),
    }
    tables: dict[str, Any] = {"summary": _summary_frame(summary, ci), "groups": table, "robustness": None}
    if radii:
        frame = _robustness(saved, X, y, s, groups, radii, seed)
        report["robustness"] = frame.to_dict(orient="records")
        tables["robustness"] = frame
    return report, tables


def _robustness(
    saved: SavedModel, X: np.ndarray, y: np.ndarray, s: np.ndarray, groups: list[str], radii: list[float], seed: int
) -> pd.DataFrame:
    """:func:`fastfair.robustness.group_robustness` of the saved network on its own input (the standardised
    features), per group and radius, plus the pooled row ``all``."""
    names = np.asarray(groups, dtype=object)[s]
    return group_robustness(saved.model, X, y, names, radii, seed=seed)


def _summary_frame(summary: dict[str, float], ci: dict[str, dict[str, float | int]]) -> pd.DataFrame:
    rows = {
        stat: {"value": summary.get(stat, np.nan), "ci_low": ci[stat]["low"], "ci_high": ci[stat]["high"]}
        for stat in STATISTICS
    }
    return pd.DataFrame(rows).T.rename_axis("statistic")


def render_text(report: dict[str, Any], tables: dict[str, Any]) -> str:
    """Readable tables: the summary with its intervals, the per-group table, robustness per group."""
    sizes = ", ".join(f"{g['group']} {g['n']}" for g in report["groups"])
    b = report["bootstrap"]
    lines = [
        f"model trained on {report['trained_on']}, evaluated on {report['data']}: {report['rows']} rows; "
        f"groups (rows): {sizes}; positive class {report['labels']['positive']!r}",
        "",
        f"accuracy, AUC and fairness gaps (max - min over groups), bootstrap {round(100 * b['level'])}% CIs "
        f"({b['resamples']} resamples within groups, seed {b['seed']}):",
        format_table(tables["summary"]),
        "",
        "per-group rates:",
        format_table(tables["groups"]),
    ]
    if tables["robustness"] is not None:
        lines += ["", "robustness per group:", format_table(tables["robustness"].set_index(["radius", "group"]))]
    return "\n".join(lines)


def _write(out_dir: Path, report: dict[str, Any], tables: dict[str, Any], *, replace: bool) -> None:
    files = ["evaluation.json", "summary.csv", "groups.csv", "evaluation.png"]
    if tables["robustness"] is not None:
        files += ["robustness.csv", "robustness.png"]
    tables["files"] = files
    with atomic_directory(out_dir, replace=replace) as tmp:
        atomic_write_text(tmp / "summary.csv", tables["summary"].to_csv())
        atomic_write_text(tmp / "groups.csv", tables["groups"].to_csv())
        atomic_write_bytes(tmp / "evaluation.png", _gap_figure(tables["summary"], report))
        if tables["robustness"] is not None:
            atomic_write_text(tmp / "robustness.csv", tables["robustness"].to_csv(index=False))
            title = f"robustness per group, {report['data']}"
            robustness_figure(tables["robustness"], tmp / "robustness.png", title=title)
        atomic_write_json(tmp / "evaluation.json", report)


def _gap_figure(summary: pd.DataFrame, report: dict[str, Any]) -> bytes:
    """A small figure: each statistic with its bootstrap interval, gaps and accuracy/AUC in two panels."""
    from matplotlib.figure import Figure

    from ..report.figures import png_bytes

    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    panels = fig.subplots(1, 2, width_ratios=[len(GAP_KEYS), 2])
    for ax, keys, title in ((panels[0], GAP_KEYS, "fairness gaps"), (panels[1], ("accuracy", "auc"), "performance")):
        part = summary.loc[list(keys)].astype(float)
        value = part["value"].to_numpy()
        low = np.where(np.isfinite(part["ci_low"]), value - part["ci_low"].to_numpy(), 0.0)
        high = np.where(np.isfinite(part["ci_high"]), part["ci_high"].to_numpy() - value, 0.0)
        x = np.arange(len(keys))
        ax.bar(x, np.nan_to_num(value), color="#4c72b0", alpha=0.8)
        ax.errorbar(x, np.nan_to_num(value), yerr=[np.maximum(low, 0), np.maximum(high, 0)], fmt="none", color="k")
        ax.set_xticks(x, [k.replace("_", "\n") for k in keys], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
    fig.suptitle(f"{report['data']}: {report['rows']} rows, 95% bootstrap CIs", fontsize=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return png_bytes(fig, 110)
