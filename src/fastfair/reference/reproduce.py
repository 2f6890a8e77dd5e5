"""The reference protocol's rows, beside the numbers the authors' code prints, and its written outputs.

:data:`PUBLISHED` holds what the reference code prints when run as published (train / validation / test
accuracy in percent as it prints them, and the training split's independence gap where it is part of the
paper's claim). :func:`reference_rows` runs the cells (``quick``: the headline settings, seed 42 only) and puts
ours beside them. :func:`run_reference_protocol` runs a whole reference run, one cell at a time (quick: the
headline cells; full: every published row, the seed spread and the ablation) and returns its tables;
:func:`write_reference_files` writes them: ``results.csv`` (one row per cell, ``protocol`` = ``"reference"``),
the ablation and seed-spread tables and figure, and ``reference.md``, a section in plain words with Holm's
correction beside the per-claim verdicts. :func:`write_reference_outputs` does both, writing the files as one set
(all or none). LSAT is not part of it: the reference downloads its own preparation of the data at run time,
which cannot be reproduced offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import FastfairError, require
from ..experiments.manifest import write_manifest
from ..io import atomic_directory, atomic_write_text
from .ablation import ablation_runs, ablation_table, holm, progress_items, seed_spread, seed_spread_summary
from .figure import seed_spread_figure
from .protocol import ReferenceCell, run_reference_cell

#: The reference's printed numbers, per cell (dataset, solver, radius, epochs): train, val, test accuracy (%),
#: and the training split's independence gap where the paper reports it.
PUBLISHED: dict[tuple[str, str, float, int], dict[str, float]] = {
    ("unfair2d", "none", 0.0, 10): {"train": 79.5, "val": 79.3333, "test": 78.0, "train_independence": 0.152},
    ("unfair2d", "trs-paper", 0.18, 10): {"train": 73.5, "val": 75.0, "test": 73.0, "train_independence": 0.025},
    ("unfair2d", "pgd-paper", 0.18, 10): {"train": 73.5, "val": 75.0, "test": 73.0, "train_independence": 0.025},
    ("adult", "none", 0.0, 10): {"train": 81.04, "val": 81.5337, "test": 81.2408},
    ("adult", "trs-paper", 0.1, 1): {"train": 78.29, "val": 78.0629, "test": 78.3784},
    ("adult", "pgd-paper", 0.1, 1): {"train": 78.29, "val": 78.0629, "test": 78.3784},
    ("adult", "pgd-paper", 0.2, 1): {"train": 77.08, "val": 76.578, "test": 77.1806},
}
#: ``--quick``: the headline settings (non-robust, and TRS at the paper's radius), seed 42.
QUICK_CELLS = (
    ReferenceCell("unfair2d"),
    ReferenceCell("unfair2d", "trs-paper", 0.18),
    ReferenceCell("adult"),
    ReferenceCell("adult", "trs-paper", 0.1, epochs=1),
)
#: The full set adds the reference's PGD rows (slow: minutes per Adult cell here).
FULL_CELLS = (
    *QUICK_CELLS,
    ReferenceCell("unfair2d", "pgd-paper", 0.18),
    ReferenceCell("adult", "pgd-paper", 0.1, epochs=1),
    ReferenceCell("adult", "pgd-paper", 0.2, epochs=1),
)
#: Seeds of the full run's seed spread (besides 42) and of its ablation (42 and 0, 1, ...).
SPREAD_SEEDS = 20
ABLATION_SEEDS = 6
#: Every file a reference run writes into its directory (the report's among them).
RUN_FILES = (
    "results.csv",
    "reference.md",
    "seed_spread.csv",
    "seed_spread_summary.csv",
    "seed_spread.png",
    "ablation.csv",
    "ablation_runs.csv",
    "report.md",
    "report.html",
    "manifest.json",
)


def reference_rows(cells: Sequence[ReferenceCell] = QUICK_CELLS, *, progress: bool = False) -> pd.DataFrame:
    """Run ``cells`` one at a time, in order, and return one row each: the cell, our metrics, ``protocol`` =
    ``"reference"``, the published numbers (``published_<split>`` in %, ``published_train_independence``) and
    ``matches`` (every published number equal to ours at the precision it was printed with)."""
    rows = []
    for cell in progress_items(list(cells), progress, "reference cells"):
        row: dict[str, Any] = {"protocol": "reference", **run_reference_cell(cell)}
        published = PUBLISHED.get((cell.dataset, cell.solver, round(float(cell.radius), 10), cell.epochs))
        if published is not None and cell.seed == 42 and all(getattr(cell, k) == "reference" for k in _SWITCHES):
            ok = True
            for key, value in published.items():
                row[f"published_{key}"] = value
                ours = 100 * row[f"{key}_accuracy"] if key in ("train", "val", "test") else row[key]
                ok = ok and round(ours, _decimals(value)) == value
            row["matches"] = ok
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class ReferenceOutputs:
    """Everything a reference run computed, before anything is written.

    ``rows``: :func:`reference_rows`. Only in a full run (None in a quick one): ``spread``, the Unfair2D TRS
    r = 0.18 row per seed (:func:`~fastfair.reference.ablation.seed_spread`) and ``spread_summary`` its summary;
    ``ablation_runs``, every (dataset, seed, switch) run and ``ablation``, the table of changes
    (:func:`~fastfair.reference.ablation.ablation_table` per dataset, with a ``dataset`` column) whose ``p_holm``
    is Holm's adjustment over every row of both datasets: the claims the report makes at once.
    """

    rows: pd.DataFrame
    quick: bool
    spread: pd.DataFrame | None = None
    spread_summary: pd.DataFrame | None = None
    ablation_runs: pd.DataFrame | None = None
    ablation: pd.DataFrame | None = None


def run_reference_protocol(
    *,
    quick: bool = True,
    spread_seeds: int = SPREAD_SEEDS,
    ablation_seeds: int = ABLATION_SEEDS,
    progress: bool = False,
) -> ReferenceOutputs:
    """Run the reference protocol, one cell at a time, and return its outputs (nothing is written).

    ``quick``: :data:`QUICK_CELLS` only (seed 42). Otherwise :data:`FULL_CELLS`, then the Unfair2D TRS r = 0.18
    row over seeds 0 .. ``spread_seeds`` - 1 and 42, then the ablation over ``ablation_seeds`` seeds (42 and
    0, 1, ...) of the Unfair2D TRS r = 0.18 and Adult TRS r = 0.1 (1 epoch) rows.
    """
    require(spread_seeds >= 2, f"the seed spread needs at least 2 seeds besides 42, got {spread_seeds}")
    require(ablation_seeds >= 2, f"the ablation needs at least 2 seeds, got {ablation_seeds}")
    rows = reference_rows(QUICK_CELLS if quick else FULL_CELLS, progress=progress)
    if quick:
        return ReferenceOutputs(rows=rows, quick=True)
    spread = seed_spread(seeds=range(spread_seeds), progress=progress)
    seeds = [42, *range(ablation_seeds - 1)]
    runs = pd.concat(
        [
            ablation_runs("unfair2d", "trs-paper", 0.18, seeds=seeds, progress=progress),
            ablation_runs("adult", "trs-paper", 0.1, epochs=1, seeds=seeds, progress=progress),
        ],
        ignore_index=True,
    )
    table = pd.concat(
        [ablation_table(runs[runs["dataset"] == d]).assign(dataset=d) for d in ("unfair2d", "adult")],
        ignore_index=True,
    )
    table["p_holm"] = holm(table["p_value"].to_numpy(float))  # one family: every claim of the report
    return ReferenceOutputs(
        rows=rows,
        quick=False,
        spread=spread,
        spread_summary=seed_spread_summary(spread),
        ablation_runs=runs,
        ablation=table,
    )


def write_reference_files(outputs: ReferenceOutputs, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``outputs`` into the directory ``out`` (each file atomically); returns the paths by name.

    Always ``results.csv`` (one row per cell, ``protocol`` = ``"reference"``) and ``reference.md``; from a full
    run also ``seed_spread.csv``, ``seed_spread_summary.csv``, ``seed_spread.png``, ``ablation.csv`` (the table)
    and ``ablation_runs.csv`` (every run behind it); always ``manifest.json``
    (:func:`fastfair.experiments.manifest.write_manifest`: versions, commit, machine, data checksums).
    """
    out = Path(out)
    written: dict[str, Path] = {}
    written["results_csv"] = atomic_write_text(out / "results.csv", outputs.rows.to_csv(index=False))
    if outputs.spread is not None and outputs.spread_summary is not None:
        written["seed_spread_csv"] = atomic_write_text(out / "seed_spread.csv", outputs.spread.to_csv(index=False))
        summary = outputs.spread_summary.to_csv(index=False)
        written["seed_spread_summary_csv"] = atomic_write_text(out / "seed_spread_summary.csv", summary)
        written["seed_spread_png"] = seed_spread_figure(outputs.spread, out / "seed_spread.png")
    if outputs.ablation is not None and outputs.ablation_runs is not None:
        written["ablation_csv"] = atomic_write_text(out / "ablation.csv", outputs.ablation.to_csv(index=False))
        runs = outputs.ablation_runs.to_csv(index=False)
        written["ablation_runs_csv"] = atomic_write_text(out / "ablation_runs.csv", runs)
    section = reference_section(outputs.rows, outputs.spread_summary, outputs.ablation)
    written["reference_md"] = atomic_write_text(out / "reference.md", section)
    written["manifest_json"] = write_manifest(
        out, reference_datasets(outputs), extra={"command": "reproduce --protocol reference", "quick": outputs.quick}
    )
    return written


def reference_datasets(outputs: ReferenceOutputs) -> list[str]:
    """The bundled datasets a reference run used: those of its rows, seed spread and ablation, in that order."""
    names: list[str] = []
    for frame in (outputs.rows, outputs.spread, outputs.ablation_runs):
        if frame is not None and "dataset" in frame.columns:
            names.extend(str(d) for d in frame["dataset"].dropna().unique() if str(d) not in names)
    return names


def write_reference_outputs(
    out: str | os.PathLike[str],
    *,
    quick: bool = True,
    spread_seeds: int = SPREAD_SEEDS,
    ablation_seeds: int = ABLATION_SEEDS,
) -> dict[str, Path]:
    """Run the reference protocol (:func:`run_reference_protocol`) and write its files
    (:func:`write_reference_files`) into ``out`` as one set: into a new directory beside it, renamed into place
    once every file is complete, so that an interrupted run leaves ``out`` as it was. ``out`` must be absent,
    empty, or an earlier reference run (:func:`is_reference_run`), which the new set replaces. Returns the paths
    by name (inside ``out``)."""
    target = Path(out)
    replace = check_reference_out(target)
    outputs = run_reference_protocol(quick=quick, spread_seeds=spread_seeds, ablation_seeds=ablation_seeds)
    with atomic_directory(target, replace=replace) as tmp:
        written = write_reference_files(outputs, tmp)
    return {name: target / path.relative_to(tmp) for name, path in written.items()}


def is_reference_run(out: str | os.PathLike[str]) -> bool:
    """Whether the directory ``out`` holds a reference run and nothing else: only files a reference run writes
    (:data:`RUN_FILES`), among them a ``results.csv`` whose every row has ``protocol`` = ``"reference"``."""
    out = Path(out)
    if not out.is_dir():
        return False
    names = {p.name for p in out.iterdir()}
    if "results.csv" not in names or not names <= set(RUN_FILES):
        return False
    try:
        protocol = pd.read_csv(out / "results.csv", usecols=["protocol"])["protocol"]
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    return len(protocol) > 0 and bool((protocol == "reference").all())


def check_reference_out(out: str | os.PathLike[str]) -> bool:
    """Check before any work that a reference run can be written to ``out``; returns whether it replaces an
    earlier reference run there. FastfairError if ``out`` is a file, or a non-empty directory holding anything
    else (e.g. a corrected-protocol run, whose results.csv it would otherwise overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FastfairError(f"{str(out)!r} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    require(
        is_reference_run(out),
        f"{str(out)!r} holds files that are not a reference-protocol run (e.g. a corrected-protocol run); "
        "name a new or empty directory",
    )
    return True


def reference_section(rows: pd.DataFrame, spread: pd.DataFrame | None, ablation: pd.DataFrame | None) -> str:
    """The report section in Markdown: the rows beside the published numbers, the spread over seeds, and the
    ablation's significant changes after Holm's correction."""
    lines = ["## The reference protocol", ""]
    lines.append(
        "The authors' setup replayed exactly (their Unfair2D draw from torch's generator with seed 42, 200 training "
        "points; Adult with its first records eaten and label 1 = <=50K; initialisation bound 1; their batch order, "
        "loss and solvers). Accuracy in %, independence gap on the training split."
    )
    lines += ["", "| dataset | solver | r | epochs | train | val | test | gap (train) | published | match |"]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for _, r in rows.iterrows():
        pub = "–"
        if "published_train" in r and pd.notna(r.get("published_train")):
            pub = f"{r['published_train']:g} / {r['published_val']:g} / {r['published_test']:g}"
        match = {True: "yes", False: "NO"}.get(r.get("matches"), "–")
        lines.append(
            f"| {r['dataset']} | {r['solver']} | {r['radius']:g} | {r['epochs']} | {100 * r['train_accuracy']:.2f} "
            f"| {100 * r['val_accuracy']:.4f} | {100 * r['test_accuracy']:.4f} | {r['train_independence']:.3f} "
            f"| {pub} | {match} |"
        )
    if spread is not None:
        s = spread.set_index("metric")
        acc = s.loc["test_accuracy"]
        lines += [
            "",
            f"Spread of the Unfair2D TRS r = 0.18 row over {int(acc['seeds'])} other seeds: test accuracy "
            f"{100 * acc['mean']:.1f}% on average (95% CI {100 * acc['ci_low']:.1f}–{100 * acc['ci_high']:.1f}, range "
            f"{100 * acc['min']:.1f}–{100 * acc['max']:.1f}); the paper's seed 42 gives "
            f"{100 * acc['value_at_42']:.1f}%, above {100 * acc['share_below']:.0f}% of the other seeds. "
            "See seed_spread.png.",
        ]
    if ablation is not None:
        sig = ablation[ablation["p_holm"] <= 0.05]
        lines += [
            "",
            f"Ablation (one difference at a time, paired over seeds; {len(ablation)} claims, Holm-corrected at 5%): "
            + (
                "; ".join(
                    f"{r['dataset']} {r['switch']} changes {r['metric']} by {r['change']:+.3f} "
                    f"(95% CI {r['ci_low']:+.3f}..{r['ci_high']:+.3f}, p = {r['p_value']:.3g}, Holm {r['p_holm']:.3g})"
                    for _, r in sig.iterrows()
                )
                or "no change is significant after the correction."
            ),
        ]
    lines += [
        "",
        "LSAT cannot be reproduced exactly offline: the reference downloads a different preparation of the data at run "
        "time.",
        "",
    ]
    return "\n".join(lines)


_SWITCHES = ("draw", "splits", "init", "records", "label")


def _decimals(value: float) -> int:
    """How many decimals a published number was printed with (79.3333 -> 4, 78.0 -> 1, 0.152 -> 3)."""
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text else 0
