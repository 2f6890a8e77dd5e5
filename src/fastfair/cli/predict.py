"""``fastfair predict``: score the rows of a CSV file with a saved model, one prediction per row, in order."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..datasets.user_csv import read_csv_frame
from ..errors import FastfairError, require
from ..io import atomic_write_text
from ..model_file import load_model
from .common import add_command

HELP = "score a CSV file with a saved model (model.pt of `fastfair train --out`)"
DESCRIPTION = (
    "Read a model file and a CSV of rows, and write one prediction per input row, in input order: the row's "
    "0-based position among the data rows, the predicted label (its original value in the target column) and "
    "the probability of the positive class (a multiclass model: one column probability[<class>] per class, the "
    "softmax, and the predicted class is the most probable). The features are encoded and standardised exactly "
    "as in training."
)
EPILOG = (
    "examples:\n"
    "  fastfair predict --model runs/loans/model.pt --data new_loans.csv --out preds.csv\n"
    "\n"
    "The CSV needs the model's feature columns (any order, other columns ignored; the target column may be\n"
    "absent). A missing column or value, a column of the wrong type (text where training had numbers) or a\n"
    "category not seen in training is a one-line error naming it; nothing is written then. The output is\n"
    "written atomically: PREDS.csv is either complete or not there. An existing PREDS.csv is refused unless\n"
    "--force is given. The model file is only ever read as data (tensors and a JSON header): a file holding\n"
    "anything else, e.g. a pickled object that would run code, is refused before any of it runs."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--model", metavar="MODEL", required=True, help="a model file (DIR/model.pt of fastfair train)")
    p.add_argument("--data", metavar="CSV", required=True, help="the rows to score (a CSV file with a header row)")
    p.add_argument("--out", metavar="PREDS", required=True, help="where to write the predictions (CSV)")
    p.add_argument("--force", action="store_true", help="replace an existing PREDS file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = _check_out_file(args.out, force=args.force)
    saved = load_model(args.model)
    source = Path(args.data).name
    frame = read_csv_frame(args.data)
    table = saved.predictions(frame, source=source)
    atomic_write_text(out, table.to_csv(index=False))
    predicted = table["prediction"].to_numpy()
    if saved.multiclass:
        counts = ", ".join(f"{name!r} {int(np.sum(predicted == name))}" for name in saved.label_names)
        print(f"wrote {len(table)} predictions to {out} (per class: {counts})")
        return 0
    positive = saved.label_names[-1]
    n_positive = int(np.sum(predicted == positive))
    print(f"wrote {len(table)} predictions to {out} ({n_positive} of them the positive class {positive!r})")
    return 0


def _check_out_file(path: str, *, force: bool) -> Path:
    """``--out``: a file path that is not a directory, refused if it exists (unless ``force``), checked before
    any work is done."""
    require(path != "", "--out must name a file, got an empty string")
    out = Path(path)
    if out.is_dir():
        raise FastfairError(f"--out {path!r} is a directory; name a file such as {str(out / 'predictions.csv')!r}")
    require(force or not out.exists(), f"--out {path!r} exists; pass --force to replace it")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    require(ancestor.is_dir(), f"--out {path!r} cannot be created: {str(ancestor)!r} is not a directory")
    return out
