"""``fastfair train``: one (robust) training run with accuracy and fairness gaps per split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import require
from ..io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, dumps_json
from ..metrics import FAIRLEARN_KEYS, FOUR_FIFTHS_KEY
from ..model_file import model_file_bytes, predicted_codes, probability_frame
from ..training import evaluate, inner_diagnostics, train
from ..vocabulary import BASELINE, GAP_KEYS
from .common import (
    add_command,
    add_data_arguments,
    add_training_arguments,
    check_out_dir,
    class_records,
    config_from_args,
    format_table,
    load_data_from_args,
    named_classes,
)

HELP = "train one classifier (robust or not) and report accuracy and fairness gaps"
DESCRIPTION = (
    "Train a classifier, optionally against the worst L2 perturbation of radius --radius found by the inner "
    "solver, and report accuracy and group-fairness gaps on train / validation / test."
)
EPILOG = (
    "examples:\n"
    "  fastfair train --dataset unfair2d --solver trs --radius 0.18 --batch-size 5\n"
    "  fastfair train --dataset adult --solver trs --radius 0.1 --batch-size 100 --train-size 10000 --json\n"
    "  fastfair train --data my.csv --target income --sensitive sex --out runs/mine\n"
    "  fastfair train --dataset colored_digits --epochs 5 --out runs/digits   (multiclass: 3+ classes)\n"
    "\n"
    "--out DIR gets metrics.json (this run's JSON, with the per-epoch history), history.csv, groups.csv,\n"
    "predictions.csv (split, row, probability, prediction for every row evaluated; multiclass: one column\n"
    "probability[<class>] per class), classes.csv (multiclass: the per-class gaps) and model.pt (the model\n"
    "file: network, feature encoding, standardisation, labels; read by `fastfair predict` and `fastfair\n"
    "evaluate`), all at once: they are written into a temporary directory beside DIR that is renamed to DIR\n"
    "when complete, so DIR never holds a partial or mixed set. An existing non-empty DIR is refused unless\n"
    "--force is given; its old contents are then replaced only after the new set is complete."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    add_data_arguments(p)
    add_training_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--out", metavar="DIR", help="write metrics.json, history.csv, groups.csv, predictions.csv and model.pt here"
    )
    out.add_argument(
        "--force",
        action="store_true",
        help="replace the contents of a non-empty --out DIR (once the new run is completely written)",
    )
    out.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def add_class_tables(result: Any, data: Any, evaluation: dict[str, Any]) -> None:
    """For a multiclass run (C >= 3), give each split of ``evaluation`` its per-class table (``"classes"``:
    :func:`fastfair.metrics.per_class_table`, the one-vs-rest gaps of each class between the groups), computed on
    the rows the split was evaluated on; a binary run is left as it is."""
    n_classes = len(data.label_names)
    if n_classes <= 2:
        return
    for split, ev in evaluation.items():
        if "classes" in ev:
            continue
        part = data.split(split)
        if split == "train" and result.config.train_size is not None:
            part = part.head(result.config.train_size)
        y_pred = predicted_codes(result.decision_function(part.X))
        names = np.asarray(part.group_names, dtype=object)[part.s]
        ev["classes"] = metrics.per_class_table(part.y, y_pred, names, n_classes)


def summarize_run(data: Any, result: Any, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a run (pinned keys: dataset, n_train, train/test metrics, timing). For a robust run it
    holds the inner solver's diagnostics on the rows trained on, with their warnings (``inner.warnings``). A
    multiclass run (C >= 3) has ``labels.classes`` (the C label names in code order), ``n_classes`` and, per
    split, ``classes``: the per-class table (:func:`add_class_tables`)."""
    trained_on = data.train.head(result.config.train_size) if result.config.train_size else data.train
    names = list(data.label_names)
    multiclass = len(names) > 2
    report: dict[str, Any] = {
        "dataset": data.name,
        "n_train": len(trained_on),
        "n_features": data.n_features,
        "groups": list(data.group_names),
        "labels": {"classes": names} if multiclass else {"negative": names[0], "positive": names[1]},
    }
    if multiclass:
        report["n_classes"] = len(names)
    report["config"] = result.config.to_dict()
    for split, ev in evaluation.items():
        report[split] = dict(ev["summary"])
        report[split]["groups"] = ev["groups"].reset_index(names="group").to_dict(orient="records")
        if multiclass and "classes" in ev:
            report[split]["classes"] = class_records(ev["classes"], names)
    report["timing"] = {"epoch_seconds": result.epoch_seconds, "inner_seconds": result.inner_seconds}
    if result.config.solver != BASELINE:
        report["inner"] = inner_diagnostics(result, trained_on.X, trained_on.y)
    report["history"] = result.history
    return report


def render_text(report: dict[str, Any], evaluation: dict[str, Any]) -> str:
    """Readable tables: accuracy and gaps per split, per-group rates per split, timing."""
    names = {"train": "train", "val": "validation", "test": "test"}
    rows = {names[s]: {k: report[s].get(k) for k in ("accuracy", "auc", *GAP_KEYS)} for s in evaluation}
    cfg = report["config"]
    model = cfg["model"]
    if model == "mlp":
        widths = cfg["hidden"] if isinstance(cfg["hidden"], list | tuple) else [cfg["hidden"]]
        model += f" (hidden {', '.join(str(h) for h in widths)}, {cfg['activation']})"
    labels = report["labels"]
    classes = (
        f"{len(labels['classes'])} classes {', '.join(repr(c) for c in labels['classes'])}"
        if "classes" in labels
        else f"positive class {labels['positive']!r}"
    )
    lines = [
        f"dataset {report['dataset']}: {report['n_train']} training rows, {report['n_features']} features, "
        f"groups {', '.join(report['groups'])}, {classes}",
        f"model {model}, solver {cfg['solver']}"
        + (f" (radius {cfg['radius']:g})" if cfg["solver"] != BASELINE else "")
        + f", {cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']:g}, seed {cfg['seed']}",
    ]
    if report.get("inner", {}).get("choice"):
        lines.append(f"inner solver {cfg['solver']} -> {report['inner']['choice']}: {report['inner']['reason']}")
    worst = " of the worst class (one-vs-rest)" if "classes" in labels else ""
    lines += [
        "",
        f"accuracy and fairness gaps{worst} (absolute, max - min over groups):",
        format_table(pd.DataFrame(rows).T),
        "",
        "the same by Fairlearn's names (between groups; four-fifths rule: demographic_parity_ratio >= 0.8):",
        fairlearn_table({names[s]: report[s] for s in evaluation}),
    ]
    for split, ev in evaluation.items():
        lines += ["", f"per-group rates, {names[split]}:", format_table(ev["groups"])]
    for split, ev in evaluation.items():
        if "classes" in ev:
            table = named_classes(ev["classes"], labels["classes"])[list(GAP_KEYS)]
            lines += ["", f"per-class gaps (one-vs-rest, max - min over groups), {names[split]}:", format_table(table)]
    t = report["timing"]
    lines += ["", f"timing: {t['epoch_seconds']:.4f} s/epoch, of which inner solver {t['inner_seconds']:.4f} s"]
    if report.get("inner"):
        d = report["inner"]
        line = (
            f"inner solver {d['solver']} at r={d['radius']:g} on {d['rows']} training rows, trained model: "
            f"mean loss {d['clean_loss']:.4f} -> {d['perturbed_loss']:.4f}, {d['iterations']:.3g} iterations"
        )
        if "max_kkt_violation" in d:
            line += (
                f"; path {d['path']}, {d['hard_cases']} hard cases, max relative KKT violation "
                f"{d['max_kkt_violation']:.1e} ({100 * d['certified_fraction']:.1f}% certified)"
            )
        lines.append(line)
    return "\n".join(lines)


def fairlearn_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Fairlearn's four between-group values (rows) per split (columns), and the four-fifths verdict."""
    frame = pd.DataFrame(
        {name: {k: summary.get(k) for k in FAIRLEARN_KEYS} for name, summary in summaries.items()}, dtype=float
    )
    text = frame.map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    text.loc["four-fifths rule"] = ["VIOLATED" if s.get(FOUR_FIFTHS_KEY) else "met" for s in summaries.values()]
    return text.to_string()


def run(args: argparse.Namespace) -> int:
    require(args.out is not None or not args.force, "--force goes with --out DIR")
    config = config_from_args(args)
    out_dir = check_out_dir(args.out, fresh=True, force=args.force)
    data = load_data_from_args(args)
    result = train(data, config, progress=not (args.json or args.no_progress) and sys.stderr.isatty())
    evaluation = evaluate(result, data)
    add_class_tables(result, data, evaluation)
    report = summarize_run(data, result, evaluation)
    if out_dir is not None:  # written before anything is printed: a failed write prints no claim of success
        write_run(out_dir, report, result, data, evaluation, replace=args.force)
    if args.json:
        print(dumps_json({k: v for k, v in report.items() if k != "history"}))
    else:
        print(render_text(report, evaluation))
        if out_dir is not None:
            classes = " classes.csv," if any("classes" in ev for ev in evaluation.values()) else ""
            print(f"\nwrote {out_dir}/metrics.json, history.csv, groups.csv,{classes} predictions.csv, model.pt")
    return 0


def write_run(
    out_dir: Path, report: dict[str, Any], result: Any, data: Any, evaluation: dict[str, Any], *, replace: bool
) -> None:
    """Write model.pt, predictions.csv, history.csv, groups.csv (and, multiclass, classes.csv) and metrics.json
    to ``out_dir`` as one set (:func:`fastfair.io.atomic_directory`): all of them or none, old contents replaced
    only when ``replace``."""
    groups = pd.concat({s: ev["groups"] for s, ev in evaluation.items()}, names=["split", "group"])
    classes = {s: ev["classes"] for s, ev in evaluation.items() if "classes" in ev}
    with atomic_directory(out_dir, replace=replace) as tmp:
        if classes:
            atomic_write_text(tmp / "classes.csv", pd.concat(classes, names=["split", "class"]).to_csv())
        atomic_write_bytes(tmp / "model.pt", model_file_bytes(result.model, result.config, data, result.history))
        atomic_write_text(tmp / "predictions.csv", predictions_table(result, data, evaluation).to_csv(index=False))
        atomic_write_text(tmp / "history.csv", pd.DataFrame(result.history).to_csv(index=False))
        atomic_write_text(tmp / "groups.csv", groups.to_csv())
        atomic_write_json(tmp / "metrics.json", report)


def predictions_table(result: Any, data: Any, evaluation: dict[str, Any]) -> pd.DataFrame:
    """The predictions of the trained model for the rows it was evaluated on (those of ``evaluation``'s splits;
    of train, the rows trained on): ``split``, ``row``, ``probability`` (of the positive class; multiclass: one
    column ``probability[<name>]`` per class, the softmax) and ``prediction`` (the label's name, the original
    value of the target column).

    ``row`` identifies the input row: for a CSV file its 0-based position among the file's data rows, for a
    bundled dataset its position within the split. A CSV file's rows are scored together in file order, the
    order ``fastfair predict`` scores the same file in, so that its predictions and probabilities are
    identical to these bit for bit (a float32 network's last digits can depend on how rows are batched).
    """
    row_index = data.info.get("row_index")
    if row_index is not None:  # all rows of the file, in file order
        X = np.empty((sum(len(v) for v in row_index.values()), data.n_features))
        for split, rows in row_index.items():
            X[rows] = data.split(split).X
        file_logits = result.decision_function(X)
    names = np.asarray(data.label_names, dtype=object)
    frames = []
    for split in evaluation:
        part = data.split(split)
        n = result.config.train_size if split == "train" and result.config.train_size is not None else len(part)
        n = min(n, len(part))
        if row_index is not None:
            rows = np.asarray(row_index[split][:n], dtype=np.int64)
            logits = file_logits[rows]
        else:
            rows = np.arange(n, dtype=np.int64)
            logits = result.decision_function(part.X[:n])
        frame = pd.concat(
            [pd.DataFrame({"split": split, "row": rows}), probability_frame(logits, list(data.label_names))], axis=1
        )
        frame["prediction"] = names[predicted_codes(logits)]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
