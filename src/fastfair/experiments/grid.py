"""The specs of a sweep: what data (:class:`DataSpec`), which runs (:class:`Cell`), and the grid of them.

A :class:`Grid` is a list of :class:`DatasetPlan` (one dataset with its axes: models, solvers, radii, seeds,
and its training settings); it expands into :class:`Cell` objects, one training run each. A cell is fully
described by its :meth:`Cell.spec` (data, model, solver, radius, seed and every training setting); its
:attr:`Cell.cell_id` is a hash of that spec, so the same cell gets the same id in every sweep, on every machine.

These are plain frozen values: they load nothing and run nothing. Grids come from a config file or
command-line options (:mod:`.grid_config`) or from the paper's protocol (:mod:`.paper_protocol`); cells run in
:mod:`.cell`.

Size
----
A grid's cell count is known before it is expanded (:meth:`Grid.count`: per dataset, models x (radii per
robust solver + 1 for ``none``) x seeds), so that a grid too large to run is refused (:meth:`Grid.check_size`,
:class:`GridTooLarge`) before anything proportional to its size is built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import TrainConfig
from ..errors import FastfairError
from ..vocabulary import BASELINE

#: Bump when the meaning of a cell (its training or evaluation) changes, to invalidate stored cells.
CELL_SCHEMA = 2


@dataclass(frozen=True)
class DataSpec:
    """Where a cell's data comes from: a bundled dataset with options, or a CSV file."""

    label: str
    name: str | None = None
    csv: str | None = None
    csv_sha256: str | None = None
    target: str | None = None
    sensitive: str | None = None
    features: tuple[str, ...] | None = None
    positive: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What the data *is* (for hashing): the CSV's content hash rather than its path."""
        if self.csv is not None:
            return {
                "label": self.label,
                "csv_sha256": self.csv_sha256,
                "target": self.target,
                "sensitive": self.sensitive,
                "features": list(self.features) if self.features is not None else None,
                "positive": self.positive,
                "options": dict(sorted(self.options.items())),
            }
        return {"label": self.label, "name": self.name, "options": dict(sorted(self.options.items()))}

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-friendly), with the CSV path."""
        out = self.identity()
        if self.csv is not None:
            out["csv"] = self.csv
        return out


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep: a dataset, a model, a solver at a radius, a seed and training settings."""

    data: DataSpec
    model: str
    solver: str
    radius: float
    seed: int
    epochs: int
    batch_size: int
    lr: float
    train_size: int | None = None
    #: the MLP's hidden widths in canonical form (:func:`fastfair.config.check_hidden`): an int for one hidden
    #: layer, a tuple for several; in :meth:`spec` (and so in the id) an int or a list of ints
    hidden: int | tuple[int, ...] = 16
    activation: str = "tanh"
    dtype: str = "float32"
    clean_weight: float = 0.0
    solver_options: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """Everything that determines this cell's numbers, as a canonical plain dict."""
        return {
            "schema": CELL_SCHEMA,
            "data": self.data.identity(),
            "model": self.model,
            "hidden": _plain_widths(self.hidden) if self.model != "affine" else None,
            "activation": self.activation if self.model != "affine" else None,
            "solver": self.solver,
            "radius": self.radius,
            "solver_options": dict(sorted(self.solver_options.items())),
            "clean_weight": self.clean_weight if self.solver != BASELINE else 0.0,
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "train_size": self.train_size,
            "dtype": self.dtype,
        }

    @property
    def cell_id(self) -> str:
        """Deterministic id: the first 16 hex digits of the SHA-256 of the canonical JSON :meth:`spec`."""
        text = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def dataset(self) -> str:
        return self.data.label

    def describe(self) -> str:
        """Short human description, e.g. ``unfair2d affine trs r=0.18 seed 0``."""
        radius = f" r={self.radius:g}" if self.solver != BASELINE else ""
        return f"{self.data.label} {self.model} {self.solver}{radius} seed {self.seed}"

    def train_config(self) -> TrainConfig:
        """The validated :class:`fastfair.config.TrainConfig` of this cell (always on the CPU).

        A solver that draws random numbers (``random``, ``pgd`` with a random start) and has no ``seed`` option
        draws from the cell's seed (:func:`fastfair.training.train` seeds it from the run's), so that its draws
        depend on the cell only, not on what else ran in the process.
        """
        return TrainConfig(
            model=self.model,
            hidden=self.hidden,
            activation=self.activation,
            solver=self.solver,
            # solver "none" ignores the radius, but TrainConfig wants a positive one
            radius=self.radius if self.solver != BASELINE else TrainConfig.radius,
            clean_weight=self.clean_weight if self.solver != BASELINE else 0.0,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            device="cpu",
            dtype=self.dtype,
            train_size=self.train_size,
            solver_options=dict(self.solver_options),
        ).validate()


def _plain_widths(hidden: int | tuple[int, ...]) -> int | list[int]:
    """Canonical widths as plain JSON data: an int stays an int (so one-hidden-layer ids do not change), a
    tuple becomes a list."""
    return hidden if isinstance(hidden, int) else list(hidden)


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset entry of a grid, with its resolved grid and training settings."""

    data: DataSpec
    solvers: tuple[str, ...]
    radii: tuple[float, ...]
    seeds: Sequence[int]  # a tuple, or a range (which stays lazy: a grid is counted before it is expanded)
    models: tuple[str, ...]
    settings: Mapping[str, Any]
    solver_options: Mapping[str, Mapping[str, Any]]

    def count(self) -> int:
        """Number of cells: models x (radii for each robust solver, one radius-0 run for ``none``) x seeds."""
        per_seed = sum(1 if solver == BASELINE else len(self.radii) for solver in self.solvers)
        return len(self.models) * per_seed * len(self.seeds)

    def probes(self) -> list[Cell]:
        """A few cells that together hold every distinct value of every axis, each with every solver.

        :meth:`fastfair.config.TrainConfig.validate` checks each field on its own (the plan's dtype and other
        settings are the same in every cell), so a value it accepts in one of these cells it accepts in every
        cell of the plan. Their number is linear in the axis lengths, not their product.
        """
        seen: set[tuple[str, str, float, int]] = set()
        out = []

        def probe(model: str, solver: str, radius: float, seed: int) -> None:
            radius = 0.0 if solver == BASELINE else radius
            if (model, solver, radius, seed) not in seen:
                seen.add((model, solver, radius, seed))
                out.append(self._cell(model, solver, radius, seed))

        radius0 = self.radii[0] if self.radii else 0.0
        for solver in self.solvers:
            for model in self.models:
                probe(model, solver, radius0, self.seeds[0])
            for radius in self.radii if solver != BASELINE else ():
                probe(self.models[0], solver, radius, self.seeds[0])
            for seed in self.seeds:
                probe(self.models[0], solver, radius0, seed)
        return out

    def _cell(self, model: str, solver: str, radius: float, seed: int) -> Cell:
        return Cell(
            data=self.data,
            model=model,
            solver=solver,
            radius=radius,
            seed=seed,
            solver_options=dict(self.solver_options.get(solver, {})),
            **self.settings,
        )

    def validate(self, where: str) -> None:
        """Put every distinct setting of this plan through :meth:`Cell.train_config` (see :meth:`probes`);
        a refused value raises :class:`FastfairError` prefixed with ``where`` and the solver."""
        for cell in self.probes():
            try:
                cell.train_config()
            except FastfairError as exc:
                raise FastfairError(f"{where} ({cell.solver}): {exc}") from None

    def cells(self) -> list[Cell]:
        out = []
        for model in self.models:
            for solver in self.solvers:
                radii = (0.0,) if solver == BASELINE else self.radii
                for radius in radii:
                    for seed in self.seeds:
                        out.append(self._cell(model, solver, radius, seed))
        return out


@dataclass(frozen=True)
class Grid:
    """A validated grid; :meth:`cells` expands it in grid order (dataset, model, solver, radius, seed)."""

    plans: tuple[DatasetPlan, ...]

    def cells(self) -> list[Cell]:
        """All cells in grid order, each once (a repeated cell keeps its first position)."""
        seen: set[str] = set()
        out = []
        for plan in self.plans:
            for cell in plan.cells():
                if cell.cell_id not in seen:
                    seen.add(cell.cell_id)
                    out.append(cell)
        return out

    def __len__(self) -> int:
        return len(self.cells())

    def count(self) -> int:
        """The number of cells, from the axis lengths alone (nothing is expanded).

        Equal to ``len(self.cells())`` unless two plans share a cell (same data, settings, model, solver, radius
        and seed), which :func:`grid_from_dict` and the paper grid never produce; an upper bound otherwise.
        """
        return sum(plan.count() for plan in self.plans)

    def check_size(self, max_cells: int | None) -> int:
        """The cell count; :class:`GridTooLarge` if it exceeds ``max_cells`` (``None``: no limit)."""
        count = self.count()
        if max_cells is not None and count > max_cells:
            raise GridTooLarge(count, max_cells)
        return count

    def validate(self) -> Grid:
        """Put every distinct value of every axis through :meth:`fastfair.config.TrainConfig.validate`
        (:meth:`DatasetPlan.probes`); the first refused one raises :class:`FastfairError`."""
        for plan in self.plans:
            plan.validate(plan.data.label)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view of the resolved grid (written next to the results for provenance)."""
        return {
            "datasets": [
                {
                    "data": p.data.to_dict(),
                    "solvers": list(p.solvers),
                    "radii": list(p.radii),
                    "seeds": list(p.seeds),
                    "models": list(p.models),
                    **dict(p.settings),
                    "solver_options": {k: dict(v) for k, v in p.solver_options.items()},
                }
                for p in self.plans
            ]
        }


class GridTooLarge(FastfairError):
    """A grid with more cells than the caller allows (``cells`` of them; the limit is ``limit``)."""

    def __init__(self, cells: int, limit: int) -> None:
        self.cells, self.limit = cells, limit
        super().__init__(f"the grid has {cells:,} cells, more than the limit of {limit:,}")
