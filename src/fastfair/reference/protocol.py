"""One cell of the reference protocol: the authors' training run, step for step, in their order of random draws.

A cell is (dataset, solver, radius, epochs, seed) plus the switches of the ablation (:class:`ReferenceCell`).
With every switch at ``"reference"`` it does what the reference's ``ex_unfair_2d.py`` / ``ex_adult.py`` do:

1. one generator (torch's CPU generator, as the reference's global one) seeded with ``seed``; the data
   (:mod:`fastfair.reference.data`: Unfair2D draws from it, Adult has no randomness);
2. the generator re-seeded with ``seed``; the initial weights drawn from it
   (:func:`~fastfair.reference.model.reference_init`);
3. Adam (lr 1e-2, torch's defaults otherwise) on K then b;
4. every epoch: ``randperm(n)`` from the same generator, then ⌊n/b⌋ mini-batches of b rows in that order (the
   last n mod b rows of the permutation are left out, as the reference does); for each batch, the perturbed
   batch from the inner solver if the cell is robust (radius ≥ 1e-10 and a solver other than ``"none"``),
   the reference's batch-mean loss (:func:`~fastfair.reference.model.reference_loss`) at it, one Adam step.
   Batch 5 for Unfair2D and 100 for Adult; 10 epochs unless told otherwise.

Solvers: ``"none"``; ``"pgd-paper"``, the reference's PGD: :class:`~fastfair.inner.PaperPGDAdversary` with
``batch_shared=True`` (batch-mean objective, one step size and stopping test for the batch, step 0.1, at most
5000 iterations); ``"trs-paper"``, the reference's TRS (when this installation has it); ``"trs"``, ours
(exact); ``"pgd-paper-per-sample"``, our per-sample variant of the reference's PGD. No solver draws random
numbers, so the generator's sequence is the reference's whatever the solver.

The result (:func:`run_reference_cell`) is accuracy and the five fairness gaps of every split, computed by
:func:`fastfair.metrics.classification_summary` on all rows of the split, with ŷ = 1 where the logit is > 0
(the reference's threshold).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..errors import FastfairError, require
from ..inner import make_inner
from ..inner.base import InnerMaximizer
from ..vocabulary import GAP_KEYS, SOLVERS, SPLITS
from .data import ReferenceData, reference_adult, reference_unfair2d
from .model import ReferenceAffine, our_init, reference_init, reference_loss

DATASETS = ("unfair2d", "adult")
#: The reference's batch sizes.
BATCH_SIZE = {"unfair2d": 5, "adult": 100}
LR = 1e-2
EPOCHS = 10
#: The reference's seed.
SEED = 42
#: Below this radius the reference trains without perturbation.
MIN_RADIUS = 1e-10
#: The solvers a reference cell can use (see the module docs).
CELL_SOLVERS = ("none", "pgd-paper", "trs-paper", "trs", "pgd-paper-per-sample")

#: Every switch of a cell and its values; ``"reference"`` everywhere is the reference protocol.
SWITCHES: dict[str, tuple[str, ...]] = {
    "draw": ("reference", "ours"),
    "splits": ("reference", "ours"),
    "init": ("reference", "ours"),
    "records": ("reference", "ours"),
    "label": ("reference", "ours"),
}


@dataclass(frozen=True)
class ReferenceCell:
    """One run of the reference protocol (module docs).

    ``draw`` applies to Unfair2D only, ``records`` and ``label`` to Adult only; ``splits`` and ``init`` to both.
    ``batch_size`` None means the reference's (5 for Unfair2D, 100 for Adult).
    """

    dataset: str
    solver: str = "none"
    radius: float = 0.0
    epochs: int = EPOCHS
    seed: int = SEED
    batch_size: int | None = None
    lr: float = LR
    draw: str = "reference"
    splits: str = "reference"
    init: str = "reference"
    records: str = "reference"
    label: str = "reference"

    def validate(self) -> ReferenceCell:
        """The cell itself, or FastfairError naming the first bad field."""
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        require(self.solver in CELL_SOLVERS, f"unknown solver {self.solver!r}; choose one of {', '.join(CELL_SOLVERS)}")
        radius_ok = isinstance(self.radius, int | float) and np.isfinite(self.radius) and self.radius >= 0
        require(radius_ok, f"radius must be a finite number >= 0, got {self.radius!r}")
        require(self.solver == "none" or self.radius >= MIN_RADIUS, f"solver {self.solver!r} needs a radius > 0")
        require(
            isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be a positive integer, got {self.epochs!r}"
        )
        require(
            isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"seed must be an integer >= 0, got {self.seed!r}"
        )
        bs = self.batch_size
        require(bs is None or (isinstance(bs, int) and bs >= 1), f"batch_size must be a positive integer, got {bs!r}")
        require(isinstance(self.lr, float | int) and self.lr > 0, f"lr must be positive, got {self.lr!r}")
        for name, values in SWITCHES.items():
            value = getattr(self, name)
            require(value in values, f"{name} must be one of {', '.join(values)}, got {value!r}")
        return self

    @property
    def batch(self) -> int:
        """The batch size used: the given one or the reference's for the dataset."""
        return self.batch_size if self.batch_size is not None else BATCH_SIZE[self.dataset]

    def describe(self) -> dict[str, Any]:
        """The cell's fields as a flat dict (for tables), with the batch size resolved."""
        return {**asdict(self), "batch_size": self.batch}


def cell_data(cell: ReferenceCell, generator: torch.Generator) -> ReferenceData:
    """The cell's data; Unfair2D's reference draw consumes ``generator`` (seeded here with the cell's seed)."""
    if cell.dataset == "unfair2d":
        return reference_unfair2d(cell.seed, draw=cell.draw, splits=cell.splits, generator=generator)
    generator.manual_seed(cell.seed)
    return reference_adult(records=cell.records, label=cell.label, splits=cell.splits, seed=cell.seed)


def cell_solver(solver: str) -> InnerMaximizer | None:
    """The inner maximiser behind a cell's solver name (module docs); None for ``"none"``."""
    if solver == "none":
        return None
    if solver == "pgd-paper":
        return make_inner("pgd-paper", batch_shared=True)
    if solver == "pgd-paper-per-sample":
        return make_inner("pgd-paper")
    if solver not in SOLVERS:
        raise FastfairError(f"solver {solver!r} is not available in this installation of fastfair")
    return make_inner(solver)


def train_reference(
    cell: ReferenceCell, data: ReferenceData, generator: torch.Generator
) -> tuple[ReferenceAffine, dict[str, Any]]:
    """Steps 2-4 of the module docs on ``data``: the trained model and a few facts about the run."""
    X, y, _ = data.train
    x_t, y_t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), torch.from_numpy(np.asarray(y))
    yf = y_t.to(torch.float32)
    generator.manual_seed(cell.seed)
    d = x_t.shape[1]
    model = reference_init(d, generator) if cell.init == "reference" else our_init(d, cell.seed)
    if cell.init == "ours":  # our initialisation draws nothing from the reference's generator; keep its position
        reference_init(d, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)
    inner = cell_solver(cell.solver) if cell.radius >= MIN_RADIUS else None
    n, b = len(y_t), cell.batch
    require(n >= b, f"the training set has {n} rows, fewer than one batch of {b}")
    radius = torch.full((b,), float(cell.radius))
    inner_seconds = 0.0
    start = time.perf_counter()
    for _ in range(cell.epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(n // b):
            idx = order[i * b : (i + 1) * b]
            xb, yb = x_t[idx], y_t[idx]
            if inner is not None:
                t0 = time.perf_counter()
                xb = inner.attack(model, xb, yf[idx], radius)
                inner_seconds += time.perf_counter() - t0
            optimizer.zero_grad()
            loss = reference_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
    facts = {"seconds": time.perf_counter() - start, "inner_seconds": inner_seconds}
    return model, facts


def evaluate_reference(model: ReferenceAffine, data: ReferenceData) -> dict[str, float]:
    """Accuracy and the five gaps of every split (``"<split>_accuracy"``, ``"<split>_<gap>"``).

    ŷ = 1 where the logit is > 0. A gap whose rate is undefined in a group (e.g. no positive prediction there)
    is NaN, as in :mod:`fastfair.metrics`; its warning is not repeated here.
    """
    out: dict[str, float] = {}
    with torch.no_grad():
        for name in SPLITS:
            X, y, s = data.split(name)
            logits = model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metrics.FairnessWarning)
                summary = metrics.classification_summary(y, (logits > 0).astype(np.int64), s)
            out[f"{name}_accuracy"] = summary["accuracy"]
            for gap in GAP_KEYS:
                out[f"{name}_{gap}"] = summary[gap]
    return out


def run_reference_cell(cell: ReferenceCell | None = None, /, **fields: Any) -> dict[str, Any]:
    """Run one cell (a :class:`ReferenceCell`, or its fields as keywords) and return its description, metrics
    (fractions, not percent) and timing as one flat dict.

    >>> run_reference_cell(dataset="unfair2d")["test_accuracy"]   # the reference's non-robust Unfair2D row
    0.78
    """
    if cell is None:
        cell = ReferenceCell(**fields)
    elif fields:
        cell = replace(cell, **fields)
    cell.validate()
    generator = torch.Generator()
    data = cell_data(cell, generator)
    model, facts = train_reference(cell, data, generator)
    return {**cell.describe(), **evaluate_reference(model, data), **facts}
