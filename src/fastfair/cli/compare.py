"""``fastfair compare``: robust training against the fairness toolbox, as trade-off curves with a verdict."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..datasets import DATASETS
from ..errors import FastfairError, require
from ..io import dumps_json
from ..vocabulary import MODELS
from ._grid_run import add_run_arguments, cell_limit, print_sweep_summary, run_interruptibly
from .common import add_command, add_data_source_arguments, check_out_dir, parse_key_values

HELP = "compare robust training with Fairlearn's mitigations: trade-off curves, dominance, a verdict"
DESCRIPTION = (
    "Train, on the same splits and seeds, the unmitigated model, robust training over radii, Fairlearn's\n"
    "ExponentiatedGradient (DemographicParity, EqualizedOdds) over constraint bounds with our estimator as\n"
    "the base learner, Fairlearn's ThresholdOptimizer (uses the sensitive attribute at prediction time), and\n"
    "the fairness penalty over weights, alone and with robust training. Each knob is chosen on validation;\n"
    "results are reported on test. Writes results.csv, figures, dominance tables and report.md into --out;\n"
    "re-running the same command reuses finished cells."
)
EPILOG = """\
methods and knobs:
  none                 the unmitigated model (same family and settings as every other method)
  robust               robust training, inner maximiser trs (or --solver auto); knob: radius r
  eg-dp, eg-eo         Fairlearn ExponentiatedGradient, DemographicParity / EqualizedOdds; knob: bound eps
  to-dp, to-eo         Fairlearn ThresholdOptimizer (uses the sensitive attribute at prediction time)
  penalty-dp/-eo       the fairness penalty on the predicted probabilities; knob: weight lambda
  robust-penalty-dp/-eo  robust training at a fixed radius plus the penalty; knob: lambda
  --quick: 2 seeds, shorter grids and training (a smoke test); the full run uses 5 seeds.
  The comparison's cells (weighted, penalised and Fairlearn fits) always train one at a time: --no-pack is
  accepted and changes nothing here.

results in --out DIR:
  report.md, figures/     the trade-off figures, dominance tables, conclusion, per-group robustness
  results.csv             one row per cell x split (method, knob, seed, accuracy, gaps, robustness summary)
  robustness.csv          per-group robustness of every cell (test split)
  cells/ID.json           one file per finished cell (the id names method, knob and seed)

examples:
  fastfair compare --dataset unfair2d --out results/compare-u2d --quick
  fastfair compare --dataset adult --out results/compare-adult --jobs 2
  fastfair compare --data examples/loans.csv --target approved --sensitive region --out results/loans --quick
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "compare", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME", help=f"bundled dataset: {', '.join(DATASETS)}")
    add_data_source_arguments(data)
    how = p.add_argument_group("comparison")
    how.add_argument("--quick", action="store_true", help="2 seeds, short grids and training: a smoke test")
    how.add_argument("--seeds", type=int, metavar="K", help="seeds 0..K-1 (default: 5; 2 with --quick)")
    how.add_argument("--model", choices=MODELS, default="affine", help="the model family (default: %(default)s)")
    how.add_argument(
        "--solver", choices=("trs", "auto"), default="trs", help="robust training's inner solver (default: trs)"
    )
    how.add_argument("--no-report", action="store_true", help="run the cells only")
    add_run_arguments(p, jobs_default=_cores())
    p.set_defaults(run=run)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def data_entry(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset entry (grid-file form) the data arguments name."""
    options = parse_key_values(args.data_option, "--data-option")
    if args.data is not None:
        require(args.dataset is None, "give either --dataset or --data, not both")
        require(args.target is not None and args.sensitive is not None, "--data needs --target and --sensitive")
        entry: dict[str, Any] = {"csv": args.data, "target": args.target, "sensitive": args.sensitive, **options}
        if args.features is not None:
            entry["features"] = list(args.features)
        if args.positive is not None:
            entry["positive"] = args.positive
        return entry
    require(args.dataset is not None, "give --dataset NAME or --data CSV --target COL --sensitive COL")
    require(
        args.target is None and args.features is None and args.positive is None,
        "--target, --features and --positive go with --data",
    )
    entry = {"name": args.dataset, **options}
    if args.sensitive is not None:
        entry["sensitive"] = args.sensitive
    return entry


def run(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    require(args.seeds is None or args.seeds >= 1, f"--seeds must be a positive integer, got {args.seeds}")
    require(
        args.jobs is None or args.scheduler is None, "give --jobs (local processes) or --scheduler (Dask), not both"
    )
    require(args.jobs is None or args.jobs >= 1, f"--jobs must be a positive integer, got {args.jobs}")
    from ..compare import compare_plan
    from ..experiments.grid_config import data_spec

    spec = data_spec(data_entry(args), "--data" if args.data is not None else "--dataset")
    plan = compare_plan(spec, quick=args.quick, seeds=args.seeds, model=args.model, solver=args.solver)
    limit = cell_limit(args)
    if limit is not None and plan.count() > limit:
        raise FastfairError(
            f"the comparison has {plan.count():,} cells, more than {limit:,}; pass --allow-large to run it anyway"
        )
    return run_interruptibly(lambda: _run(args, plan), args.out)


def _run(args: argparse.Namespace, plan: Any) -> int:
    from ..compare import run_compare

    start = time.perf_counter()
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    announce = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    outcome = run_compare(
        [plan],
        args.out,
        jobs=args.jobs or _cores(),
        scheduler=args.scheduler,
        progress=progress,
        announce=announce,
        report=not args.no_report,
    )
    summary = outcome.summary
    total = time.perf_counter() - start
    if args.json:
        print(
            dumps_json(
                {
                    **summary.to_dict(),
                    "report": {k: str(v) for k, v in outcome.report.items()},
                    "total_seconds": total,
                }
            )
        )
    else:
        print_sweep_summary(summary, args, table=False)
    if summary.failed:
        print("fastfair: some cells failed; no report was built (re-run to retry them)", file=sys.stderr)
        return 1
    if outcome.report and not args.json:
        print(f"report: {outcome.report['report_md']} ({len(outcome.report)} files); total {total:.1f} s")
    return 0


__all__ = ["add_parser", "run"]
