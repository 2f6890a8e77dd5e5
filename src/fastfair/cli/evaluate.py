r"""``fastfair evaluate``: audit a saved model on a bundled split or a CSV file.

Accuracy, AUC and the five fairness gaps (:func:`fastfair.metrics.classification_summary`, the numbers
``fastfair train`` reports) with bootstrap 95% confidence intervals, the group sizes and per-group table, and
optionally the robustness per group at given radii.

A multiclass model (C >= 3 classes) is evaluated on its softmax probabilities and argmax predictions: the AUC is
the macro one-vs-rest AUC, each gap the worst class's one-vs-rest gap (the class is named in ``worst_class``),
the per-class table (:func:`fastfair.metrics.per_class_table`) gives every class's gaps, and a row flips in the
robustness analysis when its predicted class changes.

Bootstrap: :func:`fastfair.metrics.bootstrap_intervals`, ``B`` resamples drawn with replacement within each
group (the group sizes stay fixed), seeded; percentile intervals over the resamples where a statistic is defined.
Fairlearn's names (``demographic_parity_difference``, ``demographic_parity_ratio`` with the four-fifths flag,
``equalized_odds_difference``, ``equalized_odds_ratio``) are reported beside the gaps, with intervals too.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..datasets.user_csv import encode_groups, read_csv_frame
from ..errors import require
from ..io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, dumps_json
from ..model_file import SavedModel, class_probabilities, load_model, predicted_codes
from ..robustness import group_robustness, robustness_figure
from ..vocabulary import GAP_KEYS, SPLITS
from .common import add_command, check_out_dir, class_records, format_table, named_classes

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
    "others; the groups are the sensitive column's values (with several columns, the combinations of their\n"
    "values, named like Female|White). Bootstrap: --bootstrap B resamples (default 1000) drawn within each\n"
    "group, seeded by --seed; percentile intervals. Beside the gaps: Fairlearn's demographic_parity_difference,\n"
    "demographic_parity_ratio (the four-fifths rule: violated below 0.8), equalized_odds_difference and\n"
    "equalized_odds_ratio. --out DIR writes evaluation.json, summary.csv, groups.csv, evaluation.png (and\n"
    "robustness.csv, robustness.png with --radii; classes.csv for a multiclass model) as one set.\n"
    "\n"
    "Multiclass models (3+ classes): AUC is the macro one-vs-rest AUC, each gap the worst class's one-vs-rest\n"
    "gap, the per-class table lists every class's gaps, and robustness counts a row as flipped when its\n"
    "predicted class (the argmax) changes: exact for softmax regression, a lower bound for an MLP."
)

#: Resamples of the bootstrap unless --bootstrap says otherwise.
DEFAULT_RESAMPLES = metrics.BOOTSTRAP_RESAMPLES
#: Coverage of the bootstrap intervals.
LEVEL = metrics.BOOTSTRAP_LEVEL
#: The statistics of the summary, in order.
STATISTICS = metrics.SUMMARY_STATISTICS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--model", metavar="MODEL", required=True, help="a model file (DIR/model.pt of fastfair train)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME", help="the bundled dataset the model was trained on")
    data.add_argument("--data", metavar="CSV", help="a CSV file: the training file (with --split) or new rows")
    data.add_argument("--split", choices=SPLITS, help="a split of the training data (default with --dataset: test)")
    data.add_argument("--target", metavar="COL", help="label column of --data (default: the training one)")
    data.add_argument(
        "--sensitive",
        metavar="COL",
        nargs="+",
        help="group column(s) of --data; several give their combinations as groups (default: the training ones)",
    )
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
    sensitive = list(args.sensitive or saved.sensitive_columns)
    require(target is not None, "the model file names no label column; give it with --target")
    require(len(sensitive) > 0, "the model file names no group column; give it with --sensitive")
    for role, col, flag in (("label", target, "--target"), *(("group", c, "--sensitive") for c in sensitive)):
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
    scores, y_pred = class_probabilities(logits), predicted_codes(logits)
    names = np.asarray(groups, dtype=object)[s]
    present = np.unique(s)
    codes = np.searchsorted(present, s)
    multiclass = saved.multiclass
    if multiclass:
        C = saved.n_classes
        summary = metrics.classification_summary(y, y_pred, names, scores=scores, n_classes=C)
        table = metrics.group_table(y, y_pred, s, scores=scores, group_names=dict(enumerate(groups)), n_classes=C)
        per_class = metrics.per_class_table(y, y_pred, names, C)
        ci = metrics.bootstrap_intervals(y, y_pred, scores, codes, resamples=resamples, seed=seed, n_classes=C)
        labels: dict[str, Any] = {"classes": saved.label_names}
    else:
        summary = metrics.classification_summary(y, y_pred, names, scores=scores)
        table = metrics.group_table(y, y_pred, s, scores=scores, group_names=dict(enumerate(groups)))
        per_class = None
        ci = metrics.bootstrap_intervals(y, y_pred, scores, codes, resamples=resamples, seed=seed)
        labels = {"negative": saved.label_names[0], "positive": saved.label_names[-1]}
    report: dict[str, Any] = {
        "model": None,
        "trained_on": saved.dataset_name,
        "data": rows["source"],
        "split": rows["split"],
        "rows": len(y),
        "labels": labels,
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
    if per_class is not None:
        report["classes"] = class_records(per_class, saved.label_names)
    tables: dict[str, Any] = {
        "summary": _summary_frame(summary, ci),
        "groups": table,
        "classes": per_class,
        "robustness": None,
    }
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
    labels = report["labels"]
    multiclass = "classes" in labels
    classes = (
        f"{len(labels['classes'])} classes {', '.join(repr(c) for c in labels['classes'])}"
        if multiclass
        else f"positive class {labels['positive']!r}"
    )
    what = (
        "accuracy, macro one-vs-rest AUC, the worst class's one-vs-rest fairness gaps (max - min over groups) and "
        "Fairlearn's names (worst class)"
        if multiclass
        else "accuracy, AUC, fairness gaps (max - min over groups) and Fairlearn's names (between groups)"
    )
    lines = [
        f"model trained on {report['trained_on']}, evaluated on {report['data']}: {report['rows']} rows; "
        f"groups (rows): {sizes}; {classes}",
        "",
        f"{what}, bootstrap {round(100 * b['level'])}% CIs ({b['resamples']} resamples within groups, seed "
        f"{b['seed']}):",
        format_table(tables["summary"]),
        four_fifths_line(report["summary"]),
        "",
        "per-group rates:",
        format_table(tables["groups"]),
    ]
    if tables.get("classes") is not None:
        table = named_classes(tables["classes"], labels["classes"])[list(GAP_KEYS)]
        title = "per-class gaps (one-vs-rest, max - min over groups; Fairlearn's values too in --json):"
        lines += ["", title, format_table(table)]
    if tables["robustness"] is not None:
        lines += ["", "robustness per group:", format_table(tables["robustness"].set_index(["radius", "group"]))]
    return "\n".join(lines)


def four_fifths_line(summary: dict[str, Any]) -> str:
    """One line on the four-fifths rule: the demographic parity ratio against 0.8."""
    ratio = summary["demographic_parity_ratio"]
    verdict = "VIOLATED" if summary[metrics.FOUR_FIFTHS_KEY] else "met"
    return (
        f"four-fifths rule {verdict}: demographic_parity_ratio {ratio:.3f} "
        f"({'<' if summary[metrics.FOUR_FIFTHS_KEY] else '>='} {metrics.FOUR_FIFTHS:g}; lowest / highest selection "
        "rate over the groups)"
    )


def _write(out_dir: Path, report: dict[str, Any], tables: dict[str, Any], *, replace: bool) -> None:
    files = ["evaluation.json", "summary.csv", "groups.csv", "evaluation.png"]
    if tables.get("classes") is not None:
        files.append("classes.csv")
    if tables["robustness"] is not None:
        files += ["robustness.csv", "robustness.png"]
    tables["files"] = files
    with atomic_directory(out_dir, replace=replace) as tmp:
        atomic_write_text(tmp / "summary.csv", tables["summary"].to_csv())
        atomic_write_text(tmp / "groups.csv", tables["groups"].to_csv())
        atomic_write_bytes(tmp / "evaluation.png", _gap_figure(tables["summary"], report))
        if tables.get("classes") is not None:
            atomic_write_text(tmp / "classes.csv", tables["classes"].to_csv())
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
