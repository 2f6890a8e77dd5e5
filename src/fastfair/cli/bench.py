"""``fastfair bench``: honest speed comparisons (inner maximisers, scaling, end-to-end epoch cost).

    fastfair bench [--quick] [--json]          inner maximisers on identical batches and weights (affine,
                                               one-hidden-layer and deeper MLPs; what auto chooses)
    fastfair bench --scaling [--quick]         time vs n and d: structured / generic TRS, derivative backends
    fastfair bench --end-to-end [--quick]      robust / non-robust epoch-time ratio on Adult and Unfair2D
                                               (and a two-hidden-layer MLP on Adult with every feature)

Numbers go to stdout (a table, or with ``--json`` a list of records); the progress bar goes to stderr.
``--out DIR`` also writes the records (JSON, CSV), the Markdown tables, the machine description and, for
``--scaling``, the log-log figure -- each file atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from ..bench import end_to_end, scaling, timing
from ..bench import inner as inner_bench
from ..bench.end_to_end import DEEP_MODEL as END_TO_END_DEEP
from ..bench.inner import DEEP_MODELS
from ..bench.inner_tables import render_inner
from ..errors import FastfairError, require
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, dumps_json
from ..vocabulary import DTYPES
from . import _Parser
from .common import add_command, check_out_dir

SUITES = ("inner", "scaling", "end-to-end")


HELP = "benchmark the inner maximisers, their scaling, and the end-to-end cost of robustness"
DESCRIPTION = (
    "Compare the inner maximisers on identical batches and model weights (median time of interleaved "
    "repeats, attained objective, and pgd-matched: the cheapest tuned PGD within 1e-6 of TRS's "
    "objective; what auto chose against the alternative), for the affine model, the one-hidden-layer MLP "
    "and 3-layer MLPs (tanh and ReLU; with the dense path per row and the Krylov solve's peak memory); or, "
    "with --scaling, time against n and d; or, with --end-to-end, the robust / non-robust epoch-time ratio "
    "per solver on Adult and Unfair2D (and a two-hidden-layer MLP on Adult with every feature). A "
    "comparison whose estimated memory exceeds what the machine has available is refused before it starts."
)
EPILOG = (
    "examples:\n"
    "  fastfair bench --quick\n"
    "  fastfair bench --json > inner.json\n"
    "  fastfair bench --models mlp --dims 100 --radius 0.1 0.5 1.0\n"
    "  fastfair bench --models mlp-128-64-tanh --dims 784 --threads 1\n"
    "  fastfair bench --scaling --out bench-results\n"
    "  fastfair bench --end-to-end --radius 0.1 0.2"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(p)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fastfair bench`` (also used by the scripts under ``benchmarks/``)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--scaling", action="store_true", help="time vs n and d instead of the solver comparison"
    )
    which.add_argument(
        "--end-to-end",
        action="store_true",
        help="robust / non-robust epoch-time ratios instead of the comparison",
    )
    p.add_argument("--quick", action="store_true", help="a smaller plan that runs in a couple of minutes")
    p.add_argument("--json", action="store_true", help="print a JSON list of records instead of tables")
    p.add_argument("--out", metavar="DIR", help="also write records, Markdown tables (and the figure) here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (stderr)")
    p.add_argument("--repeats", type=int, metavar="K", help="timed repeats per measurement (after a warm-up)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, weights and random solvers (default 0)")
    p.add_argument(
        "--threads", type=int, metavar="T", help="torch CPU threads (default: torch's own choice, all cores)"
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help=(
            "default: float64 (solver comparison of affine and mlp), float32 (deeper models, scaling, end-to-end: "
            "the training default)"
        ),
    )
    g = p.add_argument_group("solver comparison (default suite)")
    g.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=(
            "affine, mlp (one hidden layer), or mlp-W1-...-Wk-ACT (hidden widths and activation, e.g. "
            f"mlp-128-64-relu); default: affine mlp {' '.join(DEEP_MODELS)} (--end-to-end: affine mlp, and "
            f"{END_TO_END_DEEP} on Adult with every feature)"
        ),
    )
    g.add_argument(
        "--dims",
        nargs="+",
        type=int,
        metavar="D",
        help="input dimensions (default: 5 100 for affine and mlp, 100 784 for deeper models)",
    )
    g.add_argument("--n", type=int, help="batch size (default 4096; --quick: 1024 for deeper models)")
    g.add_argument(
        "--radius",
        nargs="+",
        type=float,
        metavar="R",
        help="radii in standardised units (default 0.1; 0.5 for deeper models); also used by --end-to-end",
    )
    g.add_argument(
        "--dense-rows",
        type=int,
        metavar="N",
        help="rows of the dense-path comparison of deeper smooth models (default 64, --quick 8; 0: skip it)",
    )
    g.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurement of the deeper models' Krylov solve (a child process)",
    )
    g.add_argument("--pretrain-epochs", type=int, metavar="E", help="non-robust epochs before benchmarking")
    g.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="seconds of counted runs per solver and case; slower solvers get fewer repeats",
    )
    s = p.add_argument_group("--scaling")
    s.add_argument("--memory-budget-gb", type=float, metavar="G", help="skip points estimated above this")
    s.add_argument("--point-budget", type=float, metavar="S", help="skip points predicted slower than this")
    e = p.add_argument_group("--end-to-end")
    e.add_argument("--datasets", nargs="+", choices=("adult", "unfair2d"), help="default: adult unfair2d")
    e.add_argument(
        "--solvers",
        nargs="+",
        metavar="NAME",
        help="solvers to compare with 'none' (default: trs pgd pgd-paper random; --quick: no pgd-paper)",
    )


def run(args: argparse.Namespace) -> int:
    out_dir = check_out_dir(args.out)
    if args.threads is not None:
        require(args.threads >= 1, f"--threads must be a positive integer, got {args.threads!r}")
    if args.repeats is not None:
        require(args.repeats >= 1, f"--repeats must be a positive integer, got {args.repeats!r}")
    threads = torch.get_num_threads()
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        return _run(args, out_dir)
    except MemoryError:
        raise FastfairError(OUT_OF_MEMORY) from None
    except RuntimeError as exc:
        # torch reports a failed CPU allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate memory",
        # torch.OutOfMemoryError on a GPU)
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
            raise FastfairError(OUT_OF_MEMORY) from None
        raise
    finally:
        torch.set_num_threads(threads)


OUT_OF_MEMORY = "the benchmark ran out of memory; use a smaller --n or --dims (or --quick)"


def check_memory(needed: float, what: str) -> None:
    """Refuse a plan whose estimated peak memory ``needed`` (bytes) exceeds what the machine has available."""
    available = timing.available_memory_bytes()
    require(
        available is None or needed <= available,
        f"the benchmark needs about {_gib(needed)} of memory ({what}), more than the {_gib(available or 0)} "
        "available; use a smaller --n or --dims",
    )


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def _run(args: argparse.Namespace, out_dir: Any) -> int:
    suite = "scaling" if args.scaling else "end-to-end" if args.end_to_end else "inner"
    machine = timing.machine_info()
    if suite == "inner":
        records, text, markdown, extra = _inner(args)
    elif suite == "scaling":
        records, text, markdown, extra = _scaling(args, machine)
    else:
        records, text, markdown, extra = _end_to_end(args)
    if args.json:
        print(dumps_json(records))
    else:
        print(f"machine: {timing.describe_machine(machine)}\n")
        print(text, end="")
    if out_dir is not None:
        stem = suite.replace("-", "_")
        header = f"Machine: {timing.describe_machine(machine)}\n\n"
        atomic_write_json(out_dir / f"{stem}.json", {"machine": machine, "records": records})
        atomic_write_text(out_dir / f"{stem}.md", header + markdown)
        atomic_write_text(out_dir / f"{stem}.csv", scaling.records_csv(records))
        for name, data in extra.items():
            atomic_write_bytes(out_dir / name, data)
        if not args.json:
            written = ", ".join([f"{stem}.json", f"{stem}.md", f"{stem}.csv", *extra])
            print(f"\nwrote {out_dir}/: {written}")
    return 0


def _progress(args: argparse.Namespace, total: int, desc: str):
    if args.no_progress:
        return nullcontext(None)
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, leave=False, dynamic_ncols=True)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if v is not None}


#: Options of the inner and end-to-end plans -> the plan's field.
COMMON_FIELDS = {"repeats": "repeats", "dtype": "dtype", "seed": "seed", "budget": "budget_s"}


def _fields(given: dict[str, Any], **fields: str) -> dict[str, Any]:
    """``{field: given[option]}`` for every ``option=field`` whose option was given on the command line."""
    return {field: given[option] for option, field in fields.items() if option in given}


def _inner(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str, str, dict[str, bytes]]:
    a = _given(args)
    overrides = {field: tuple(v) for field, v in _fields(a, models="models", dims="dims", radius="radii").items()}
    overrides |= _fields(a, n="n", pretrain_epochs="pretrain_epochs", dense_rows="dense_rows", **COMMON_FIELDS)
    if "n" in a:
        overrides["deep_n"] = None  # --n is the batch size of every case
    if args.no_memory:
        overrides["memory"] = False
    plan_class = inner_bench.InnerBenchPlan
    plan = (plan_class.quick_plan if args.quick else plan_class.full)(**overrides).validate()
    check_memory(*plan.estimated_bytes())
    with _progress(args, plan.runs(), "bench") as bar:
        records = inner_bench.run_inner_bench(plan, progress=bar)
    return records, render_inner(records), render_inner(records, markdown=True), {}


def _scaling(args: argparse.Namespace, machine: dict[str, Any]):
    a = _given(args)
    overrides = _fields(
        a, repeats="repeats", dtype="dtype", seed="seed", memory_budget_gb="memory_budget_gb",
        point_budget="point_budget_s",
    )
    plan = (scaling.ScalingPlan.quick_plan if args.quick else scaling.ScalingPlan)(**overrides).validate()
    total = len(plan.points()) * len(scaling.METHODS) * (plan.warmup + plan.repeats)
    with _progress(args, total, "scaling") as bar:
        records = scaling.run_scaling(plan, progress=bar)
    figure = scaling.scaling_figure(records, title=timing.describe_machine(machine))
    text, markdown = scaling.render_scaling(records), scaling.render_scaling(records, markdown=True)
    return records, text, markdown, {"scaling.png": figure}


def _end_to_end(args: argparse.Namespace):
    a = _given(args)
    overrides: dict[str, Any] = {}
    if "datasets" in a:
        overrides["settings"] = tuple(s for s in end_to_end.DEFAULT_SETTINGS if s.dataset in a["datasets"])
    if "models" in a:
        overrides["models"] = tuple(a["models"])
    if "radius" in a:
        overrides["radii"] = tuple(a["radius"])
    if "solvers" in a:
        require("none" not in a["solvers"], "--solvers lists the robust solvers; 'none' is always included")
        overrides["solvers"] = ("none", *a["solvers"])
    overrides |= _fields(a, **COMMON_FIELDS)
    plan_class = end_to_end.EndToEndPlan
    plan = (plan_class.quick_plan if args.quick else plan_class)(**overrides).validate()
    with _progress(args, plan.runs(), "end-to-end") as bar:
        records = end_to_end.run_end_to_end(plan, progress=bar)
    return records, end_to_end.render_end_to_end(records), end_to_end.render_end_to_end(records, markdown=True), {}


def main(argv: Sequence[str] | None = None, *, prog: str = "fastfair bench") -> int:
    """Stand-alone entry point (used by the scripts under ``benchmarks/``): same options, same output."""
    parser = _Parser(
        prog=prog,
        description="Honest speed comparisons: inner maximisers, scaling, end-to-end epoch cost.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except FastfairError as exc:
        print(f"fastfair: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastfair: interrupted", file=sys.stderr)
        return 130
