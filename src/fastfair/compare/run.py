"""Running a comparison: its cells through the sweep machinery (store, resume, executors), then the report.

::

    from fastfair.compare import compare_plan, run_compare
    from fastfair.experiments import DataSpec

    plan = compare_plan(DataSpec(label="unfair2d", name="unfair2d"), quick=True)
    outcome = run_compare([plan], "results/compare-u2d", jobs=2)
    outcome.report["report_md"]

Re-running the same comparison into the same directory only runs the cells that are not stored yet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import require
from ..experiments.store import ResultsStore
from ..experiments.sweep import SweepSummary, run_sweep
from ..io import atomic_write_json, atomic_write_text
from .cell import compare_frame, run_compare_cell
from .protocol import ComparePlan
from .robustness import selected_robustness

#: What a comparison's worker processes import before their first cell.
PRELOAD = ("fastfair.compare.cell", "fastfair.estimator", "fairlearn.reductions", "fairlearn.postprocessing")


@dataclass
class CompareOutcome:
    """What a comparison did: the sweep's summary, the robustness table, the report's files."""

    summary: SweepSummary
    robustness: pd.DataFrame
    report: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def check_binary_target(plan: ComparePlan) -> None:
    """A comparison needs a binary target (Fairlearn's reductions, the methods compared, are binary): a dataset
    with C >= 3 classes is a one-line error before any cell runs. Loads the plan's data with its first seed."""
    from ..experiments.cell import load_dataset

    data = load_dataset(plan.data, plan.seeds[0])
    n_classes = len(data.label_names)
    require(
        n_classes == 2,
        f"compare needs a binary target (Fairlearn's reductions are binary); the target of {data.name} has "
        f"{n_classes} distinct values",
    )


def run_compare(
    plans: Sequence[ComparePlan],
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: bool | None = None,
    announce: Callable[[str], None] | None = None,
    report: bool = True,
) -> CompareOutcome:
    """Run every cell of ``plans`` not yet stored in ``out_dir`` (:func:`fastfair.experiments.run_sweep`), measure
    the per-group robustness of each method's selected model (:mod:`fastfair.compare.robustness`), write
    ``results.csv`` (with the robustness summary) and ``robustness.csv``, and, unless a cell failed or ``report``
    is false, the report (:func:`fastfair.compare.report.write_report`)."""
    start = time.perf_counter()
    require(len(plans) > 0, "nothing to compare")
    for plan in plans:
        check_binary_target(plan)
    cells = [cell for plan in plans for cell in plan.cells()]
    summary = run_sweep(
        cells,
        out_dir,
        jobs=jobs,
        scheduler=scheduler,
        progress=progress,
        desc="compare",
        announce=announce,
        runner=run_compare_cell,
        table=compare_frame,
        preload=PRELOAD,
    )
    out = Path(out_dir)
    store = ResultsStore(out)
    records = store.finished(cells)
    radii = {p.data.label: p.knobs.robustness_radii for p in plans}
    robustness, summary.results = selected_robustness(cells, records, summary.results, radii)
    with store.lock():
        atomic_write_text(store.results_path, summary.results.to_csv(index=False))
        atomic_write_text(out / "robustness.csv", robustness.to_csv(index=False))
        atomic_write_json(out / "compare.json", {"plans": [_plan_dict(p) for p in plans]})
    outcome = CompareOutcome(summary=summary, robustness=robustness)
    if report and summary.ok and not summary.results.empty:
        from .report import write_report

        versions = sorted({str(v) for v in summary.results["fairlearn_version"].dropna()})
        outcome.report = write_report(
            summary.results,
            robustness,
            out,
            settings={p.data.label: p.describe() for p in plans},
            fairlearn_version=", ".join(versions),
            seconds=time.perf_counter() - start,
            majority={p.data.label: majority_accuracy(p) for p in plans},
        )
    outcome.seconds = time.perf_counter() - start
    return outcome


def majority_accuracy(plan: ComparePlan) -> float:
    """The test accuracy of always predicting the majority class of the training rows, mean over the seeds."""
    import numpy as np

    from ..experiments.cell import load_dataset

    values = []
    for seed in plan.seeds:
        data = load_dataset(plan.data, seed)
        train = data.train if plan.knobs.train_size is None else data.train.head(plan.knobs.train_size)
        label = int(train.y.mean() >= 0.5)
        values.append(float(np.mean(data.test.y == label)))
    return float(np.mean(values))


def _plan_dict(plan: ComparePlan) -> dict[str, Any]:
    return {"data": plan.data.to_dict(), "description": plan.describe(), "cells": plan.count()}
