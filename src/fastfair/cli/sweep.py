"""``fastfair sweep``: train a grid of datasets x models x solvers x radii x seeds, resumably, in parallel."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..datasets import DATASETS
from ..errors import require
from ..experiments import Grid, grid_from_dict, grid_from_file
from ..experiments.grid import Cell
from ..experiments.grid_config import TRAINING_KEYS
from ..experiments.sweep import summarize_cells
from ..io import dumps_json
from ..vocabulary import ACTIVATIONS, DTYPES, MODELS, SOLVERS
from ._grid_run import (
    LARGE_GRID,
    add_run_arguments,
    cell_limit,
    execute,
    large_grid_hint,
    print_sweep_summary,
    run_interruptibly,
)
from .common import add_command, add_data_source_arguments, check_out_dir, format_table, parse_key_values, parse_value

EPILOG = """\
grid file (--config FILE, YAML or TOML; only 'datasets' is required):
  datasets:                      # bundled names, or mappings:
    - unfair2d
    - {name: lsat, balanced: true, batch_size: 5}          # dataset options + per-dataset settings
    - {name: adult, batch_size: 100, train_size: 10000, radii: "0.10:0.20:0.02"}
    - {csv: my.csv, target: income, sensitive: sex, features: [age, hours], positive: ">50K", label: mine}
  solvers: [none, trs, pgd-paper, pgd, random]   # default [none, trs]; 'none' runs once, radius 0
  radii: "0.10:0.20:0.01"        # numbers and/or start:stop:step ranges (stop included)
  seeds: "0:5"                   # integers and/or start:stop ranges (stop excluded); default [0]
  models: [affine]               # affine, mlp
  epochs: 10                     # also batch_size, lr, train_size, hidden, activation, dtype, clean_weight
  solver_options: {pgd: {steps: 20}}
  Any key but 'datasets' may also go inside a dataset entry, overriding the top level for that dataset.
  Command-line options replace the file's top-level keys. CSV paths are relative to the file.

""" + f"""\
results in --out DIR:
  DIR/results.csv        one row per cell x split (cell_id, dataset, model, solver, radius, seed, split, n,
                         accuracy, auc, the five gaps, epoch_seconds, inner_seconds, training settings)
  DIR/cells/ID.json      one file per finished cell, written atomically as it finishes
  Re-running the same command reuses finished cells; an interrupted sweep (Ctrl-C, SIGTERM) loses nothing
  finished. A cell that fails on its input or settings stops the sweep with that error (a re-run would fail
  the same way); a cell lost otherwise (e.g. a worker died) is listed in DIR/failures.json and retried by a
  re-run. A grid of more than {LARGE_GRID:,} cells needs --allow-large.

examples:
  fastfair sweep --dataset unfair2d --solvers none trs pgd --radii 0.1:0.2:0.05 --seeds 0:3 \\
      --batch-size 5 --out results/u2d --jobs 2
  fastfair sweep --config grid.yaml --out results/grid --scheduler tcp://10.0.0.5:8786
"""


HELP = "train a grid of datasets x solvers x radii x seeds, resumable, local or on Dask"
DESCRIPTION = (
    "Run one training per grid cell (dataset, model, solver, radius, seed), evaluate it on train /\n"
    "validation / test, and collect accuracy, fairness gaps and timing in a tidy results table.\n"
    "Finished cells are stored as they finish and reused when the command is run again."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sweep", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    grid = p.add_argument_group("grid (a --config file, or these options; options override the file)")
    grid.add_argument("--config", metavar="FILE", help="YAML or TOML grid file (schema below)")
    grid.add_argument("--dataset", metavar="NAME", nargs="+", help=f"bundled dataset(s): {', '.join(DATASETS)}")
    add_data_source_arguments(grid)
    grid.add_argument("--solvers", metavar="SOLVER", nargs="+", help=", ".join(SOLVERS))
    grid.add_argument(
        "--radii", metavar="R", nargs="+", help="radii and/or start:stop:step ranges (stop included)"
    )
    grid.add_argument(
        "--seeds", metavar="S", nargs="+", help="seeds and/or start:stop ranges (stop excluded)"
    )
    grid.add_argument("--model", metavar="MODEL", nargs="+", help=" and/or ".join(MODELS))
    train = p.add_argument_group("training settings (defaults as in 'fastfair train')")
    train.add_argument("--epochs", type=int, metavar="N")
    train.add_argument("--batch-size", type=int, metavar="N")
    train.add_argument("--lr", type=float, help="Adam learning rate")
    train.add_argument("--train-size", type=int, metavar="N", help="train on the first N training rows only")
    train.add_argument(
        "--hidden", type=int, nargs="+", metavar="W", help="MLP hidden widths, one per hidden layer (e.g. 64 32)"
    )
    train.add_argument("--activation", metavar="NAME", help=f"MLP activation: {', '.join(ACTIVATIONS)}")
    train.add_argument("--dtype", metavar="NAME", help=" or ".join(DTYPES))
    train.add_argument("--clean-weight", type=float, metavar="W", help="mix w·clean + (1-w)·robust loss")
    train.add_argument(
        "--solver-option",
        metavar="SOLVER.KEY=VALUE",
        action="append",
        help="inner-solver option for one solver, repeatable (e.g. pgd.steps=20)",
    )
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="validate the grid and list its cells; run nothing")
    p.add_argument(
        "--report",
        action="store_true",
        help="also write report.md / report.html with tables and figures (gaps and accuracy vs radius)",
    )
    p.set_defaults(run=run)


def grid_options(args: argparse.Namespace) -> dict[str, Any]:
    """The grid keys given on the command line (only those given), in config-file form."""
    config: dict[str, Any] = {}
    options = parse_key_values(args.data_option, "--data-option")
    entries: list[dict[str, Any]] = []
    for name in args.dataset or []:
        entry = {"name": name, **options}
        if args.sensitive is not None and args.data is None:
            entry["sensitive"] = args.sensitive
        entries.append(entry)
    if args.data is not None:
        require(
            args.target is not None and args.sensitive is not None, "--data needs --target and --sensitive"
        )
        entry = {"csv": args.data, "target": args.target, "sensitive": args.sensitive, **options}
        if args.features is not None:
            entry["features"] = list(args.features)
        if args.positive is not None:
            entry["positive"] = args.positive
        entries.append(entry)
    else:
        require(
            args.target is None and args.features is None and args.positive is None,
            "--target, --features and --positive go with --data",
        )
    if entries:
        config["datasets"] = entries
    else:
        require(not options, "--data-option goes with --dataset or --data")
        require(args.sensitive is None, "--sensitive goes with --dataset or --data")
    for key, value in (("solvers", args.solvers), ("models", args.model)):
        if value is not None:
            config[key] = _split(value)
    if args.radii is not None:
        config["radii"] = _split(args.radii)
    if args.seeds is not None:
        config["seeds"] = _split(args.seeds)
    for key in TRAINING_KEYS:
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.solver_option:
        solver_options: dict[str, dict[str, Any]] = {}
        for item in args.solver_option:
            head, sep, value = item.partition("=")
            solver, dot, key = head.partition(".")
            require(
                bool(sep) and bool(dot) and solver.strip() != "" and key.strip() != "",
                f"malformed --solver-option {item!r}; expected SOLVER.KEY=VALUE, e.g. pgd.steps=20",
            )
            solver_options.setdefault(solver.strip(), {})[key.strip().replace("-", "_")] = parse_value(value)
        config["solver_options"] = solver_options
    return config


def _split(tokens: list[str]) -> list[str]:
    """Accept both ``--radii 0.1 0.2`` and ``--radii 0.1,0.2``."""
    return [part for token in tokens for part in token.split(",") if part.strip() != ""]


def build_grid(args: argparse.Namespace) -> Grid:
    """The validated grid of the command line (and --config file); refused above ``LARGE_GRID`` cells
    unless --allow-large, before it is validated value by value or expanded."""
    options = grid_options(args)
    limit = cell_limit(args)
    with large_grid_hint():
        if args.config is not None:
            return grid_from_file(args.config, overrides=options, max_cells=limit)
        require(
            "datasets" in options, "give --config FILE, or --dataset NAME / --data CSV with the grid options"
        )
        return grid_from_dict(options, source="options", max_cells=limit)


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    return run_interruptibly(lambda: _run(args), args.out)


def _run(args: argparse.Namespace) -> int:
    grid = build_grid(args)
    cells = grid.cells()
    if args.dry_run:
        table = summarize_cells(cells)
        if args.json:
            print(dumps_json({"cells": len(cells), "grid": table.to_dict(orient="records")}))
        else:
            print(format_table(table.set_index("cell_id"), "{:g}"))
            print(f"{len(cells)} cells; nothing run (--dry-run)")
        return 0
    summary = execute(grid, args)
    print_sweep_summary(summary, args)
    if summary.failed:
        return 1
    if args.report and not summary.results.empty:
        from ..report import build_report_cached

        notes = multiclass_notes(cells) + packed_timing_notes(Path(args.out), cells)
        written = build_report_cached(summary.results, Path(args.out), paper=False, notes=notes)
        if not args.json:
            print(f"report: {written['report_md']} and {written['report_html']}")
    return 0


def multiclass_notes(cells: Sequence[Cell]) -> list[str]:
    """A report note for each dataset of ``cells`` with three or more classes: what its gaps and AUC mean there."""
    from ..experiments.cell import load_dataset

    notes, seen = [], set()
    for cell in cells:
        if cell.dataset in seen:
            continue
        seen.add(cell.dataset)
        data = load_dataset(cell.data, cell.seed)  # cached: the sweep loaded it already
        if data.n_classes > 2:
            notes.append(
                f"{cell.dataset} has {data.n_classes} classes ({', '.join(data.label_names)}): each fairness gap is "
                "the worst class's one-vs-rest gap (the largest over classes), and AUC is the macro one-vs-rest AUC."
            )
    return notes


def packed_timing_notes(out: Path, cells: Sequence[Cell]) -> list[str]:
    """A report note when some stored cell of ``cells`` trained in a pack: its epoch times are amortised."""
    from ..experiments.store import ResultsStore

    packed = sum(1 for record in ResultsStore(out).finished(cells).values() if record.get("pack"))
    if not packed:
        return []
    return [
        f"{packed} cell{'s' if packed != 1 else ''} trained together in packs (several models as one computation): "
        "their epoch_seconds and inner_seconds, and the timing table drawn from them, are amortised -- the pack's "
        "time divided by its size -- not the time of one cell alone; each cell file keeps its pack's own times "
        "under 'pack'. Run with --no-pack for per-cell times."
    ]


__all__ = ["add_parser", "multiclass_notes", "packed_timing_notes", "run"]
