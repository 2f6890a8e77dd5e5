"""Pieces shared by the subcommands: data/model options, KEY=VALUE parsing, output directories, tables."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .. import datasets
from ..config import MAX_HIDDEN, MAX_LAYERS, TrainConfig, check_fairness
from ..errors import FastfairError, require
from ..vocabulary import ACTIVATIONS, DTYPES, FAIRNESS_PENALTIES, MODELS, SOLVERS


def add_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``: its one-line ``help`` in the command list, and its ``description`` and
    ``epilog`` printed as written (line breaks kept) by ``fastfair NAME --help``."""
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def parse_value(text: str) -> Any:
    """Read a command-line value: JSON where it parses (numbers, true/false, lists), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    """Turn ``["a=1", "b=x"]`` into ``{"a": 1, "b": "x"}`` with a clear error for malformed items."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        require(bool(sep) and bool(key.strip()), f"malformed {what} {item!r}; expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset NAME`` or ``--data CSV --target COL --sensitive COL``, plus dataset options."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", metavar="NAME", help=f"bundled dataset: {', '.join(datasets.DATASETS)}"
    )
    add_data_source_arguments(group)


class SensitiveColumns(argparse.Action):
    """``--sensitive COL [COL ...]``: one column is kept as its name (a string), several as a list."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def add_data_source_arguments(group: argparse._ArgumentGroup) -> None:
    """``--data CSV --target COL --sensitive COL [--features ...] [--positive V]`` and ``--data-option``: what
    ``train`` and ``sweep`` share besides their ``--dataset`` (one name, or several)."""
    group.add_argument("--data", metavar="CSV", help="your own CSV file (needs --target and --sensitive)")
    group.add_argument(
        "--target", metavar="COL", help="label column of --data (two values, or three or more for multiclass)"
    )
    group.add_argument(
        "--sensitive",
        metavar="COL",
        nargs="+",
        action=SensitiveColumns,
        help=(
            "sensitive column of --data; with --dataset adult: sex (default), race or race_all. Several (--sensitive "
            "sex race) give intersectional groups, the combinations of their values (e.g. Female|White)"
        ),
    )
    group.add_argument("--features", metavar="COL", nargs="+", help="feature columns of --data (default: all others)")
    group.add_argument(
        "--positive",
        metavar="VALUE",
        help="the positive label value of --target (with three or more values: that value against the rest, binary)",
    )
    group.add_argument(
        "--data-option",
        metavar="KEY=VALUE",
        action="append",
        help="dataset option, repeatable (e.g. balanced=true for lsat, features=all for adult)",
    )


def load_data_from_args(args: argparse.Namespace) -> datasets.Dataset:
    """Load the dataset that the data arguments (:func:`add_data_arguments`) name, split with ``--seed``."""
    options = parse_key_values(args.data_option, "--data-option")
    seed = getattr(args, "seed", 0)
    if args.data is not None:
        require(args.dataset is None, "give either --dataset or --data, not both")
        require(args.target is not None and args.sensitive is not None, "--data needs --target and --sensitive")
        return datasets.load_csv(
            args.data,
            target=args.target,
            sensitive=args.sensitive,
            features=args.features,
            positive=args.positive,
            seed=seed,
            **options,
        )
    require(args.dataset is not None, "give --dataset NAME or --data CSV --target COL --sensitive COL")
    require(args.target is None and args.features is None, "--target and --features go with --data")
    if args.sensitive is not None:
        options["sensitive"] = args.sensitive
    return datasets.load(args.dataset, seed=seed, **options)


def add_training_arguments(parser: argparse.ArgumentParser, *, solver: bool = True) -> None:
    """Model, optimiser and (optionally) inner-solver options, with the library's defaults."""
    d = TrainConfig()
    group = parser.add_argument_group("model and training")
    group.add_argument("--model", choices=MODELS, default=d.model, help="classifier (default: %(default)s)")
    group.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        metavar="W",
        default=d.hidden,
        help=(
            "MLP hidden widths, one per hidden layer, first layer first: --hidden 16 is one hidden layer of 16 "
            f"units, --hidden 64 32 two layers (at most {MAX_LAYERS}, each at most {MAX_HIDDEN}; default: "
            "%(default)s)"
        ),
    )
    group.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=d.activation,
        help="MLP activation, of every hidden layer (default: %(default)s)",
    )
    group.add_argument("--epochs", type=int, default=d.epochs, help="default: %(default)s")
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    group.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    group.add_argument("--seed", type=int, default=d.seed, help="seed for splits, weights, shuffling")
    group.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N (default: %(default)s)")
    group.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="default: %(default)s")
    group.add_argument("--train-size", type=int, metavar="N", help="train on the first N training rows only")
    if solver:
        rob = parser.add_argument_group("robustness")
        rob.add_argument(
            "--solver",
            choices=SOLVERS,
            default=d.solver,
            help=(
                "inner maximiser; auto takes the trust-region solver for smooth models and PGD for piecewise-linear "
                "ones (relu, leaky_relu), and reports its choice (default: %(default)s)"
            ),
        )
        rob.add_argument(
            "--radius",
            type=float,
            default=d.radius,
            help=f"L2 radius r of the perturbation ball (default: {d.radius:g})",
        )
        rob.add_argument(
            "--clean-weight",
            type=float,
            default=d.clean_weight,
            help="mix w·clean + (1-w)·robust loss (default: %(default)s, the paper's pure robust loss)",
        )
        rob.add_argument(
            "--solver-option", metavar="KEY=VALUE", action="append", help="inner-solver option, repeatable"
        )
    add_fairness_arguments(parser)


def add_fairness_arguments(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """``--fairness-penalty {dp,eo} --fairness-weight LAMBDA``: the fairness-regularised loss
    (:func:`fastfair.losses.fairness_penalty`), with or without robust training.

    With ``defaults=False`` both default to ``None`` ("not given"), for a command whose options override a
    config file only where given (``sweep``); :func:`config_from_args` reads ``None`` as the library default.
    """
    d = TrainConfig()
    fair = parser.add_argument_group("fairness penalty")
    fair.add_argument(
        "--fairness-penalty",
        choices=FAIRNESS_PENALTIES,
        default=d.fairness_penalty if defaults else None,
        help=(
            "add LAMBDA x the gap between groups of the predicted probabilities to the training loss: dp, of their "
            "means (demographic parity); eo, the larger of that gap among y=1 and among y=0 (equalized odds); "
            "taken on the clean predictions, also with --solver (default: no penalty)"
        ),
    )
    fair.add_argument(
        "--fairness-weight",
        type=float,
        metavar="LAMBDA",
        default=d.fairness_weight if defaults else None,
        help=f"weight LAMBDA >= 0 of --fairness-penalty (default: {d.fairness_weight:g}; 0 only records the penalty)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A validated :class:`TrainConfig` from parsed arguments (``--hidden W [W ...]`` arrives as a list: one
    width is the one-hidden-layer MLP, as an int). The fairness options are checked first, under their option
    names (:func:`fastfair.config.check_fairness`)."""
    penalty, weight = check_fairness(
        getattr(args, "fairness_penalty", None),
        TrainConfig.fairness_weight if getattr(args, "fairness_weight", None) is None else args.fairness_weight,
        names=("--fairness-penalty", "--fairness-weight"),
    )
    return TrainConfig(
        model=args.model,
        hidden=args.hidden,
        activation=args.activation,
        solver=getattr(args, "solver", "none"),
        radius=getattr(args, "radius", TrainConfig.radius),
        clean_weight=getattr(args, "clean_weight", 0.0),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        train_size=args.train_size,
        solver_options=parse_key_values(getattr(args, "solver_option", None), "--solver-option"),
        fairness_penalty=penalty,
        fairness_weight=weight,
    ).validate()


def check_out_dir(path: str | None, *, fresh: bool = False, force: bool = False) -> Path | None:
    """Validate an ``--out DIR`` before any work is done: a non-empty path that is a directory or does not exist
    yet, and can be created. With ``fresh=True`` (a run that writes a complete new set of files) an existing
    non-empty directory is refused unless ``force`` (the user asked to replace its contents)."""
    if path is None:
        return None
    require(path != "", "--out must name a directory, got an empty string")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FastfairError(f"--out {path!r} exists and is not a directory")
    absolute = Path(os.path.abspath(out))
    if fresh and out.is_dir():  # the new set replaces DIR itself (by a rename), so DIR must not hold the cwd
        require(
            not Path.cwd().is_relative_to(absolute.resolve()),
            f"--out {path!r} holds the current directory, which cannot be replaced; name a new directory",
        )
        require(
            force or not any(out.iterdir()),
            f"--out {path!r} exists and is not empty; pass --force to replace its contents",
        )
    ancestor = absolute
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FastfairError(f"--out {path!r} cannot be created: {str(ancestor)!r} is not a directory")
    # A fresh set is written beside DIR and renamed into place, so it is DIR's parent that must be writable.
    where = ancestor.parent if fresh and ancestor == absolute else ancestor
    try:  # a real probe (permissions alone do not tell, e.g. under /proc); it leaves nothing behind
        os.rmdir(tempfile.mkdtemp(prefix=".fastfair-probe-", dir=where))
    except OSError as exc:
        raise FastfairError(f"--out {path!r} cannot be written in {str(where)!r}: {exc.strerror}") from None
    return out


def format_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """Render a DataFrame as aligned text, NaN shown as '-'."""
    return frame.to_string(float_format=lambda v: floatfmt.format(v), na_rep="-")


def class_records(table: pd.DataFrame, label_names: list[str]) -> list[dict[str, Any]]:
    """A per-class table (:func:`fastfair.metrics.per_class_table`, index: class code) as JSON records, each with
    its class code (``class``) and the class's name (``name``)."""
    frame = table.reset_index(names="class")
    frame.insert(1, "name", [label_names[int(c)] for c in frame["class"]])
    return frame.to_dict(orient="records")


def named_classes(table: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    """A per-class table indexed by ``<code> '<name>'`` for printing."""
    out = table.copy()
    out.index = pd.Index([f"{c} {label_names[int(c)]!r}" for c in table.index], name="class")
    return out
