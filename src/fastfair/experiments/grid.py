"""Sweep grids: datasets x models x solvers x radii x seeds, from options or a YAML/TOML file.

A grid expands into :class:`Cell` objects, one training run each. A cell is fully described by its
:meth:`Cell.spec` (data, model, solver, radius, seed and every training setting); its :attr:`Cell.cell_id` is
a hash of that spec, so the same cell gets the same id in every sweep, on every machine.

Config file schema
------------------
A YAML (``.yaml``/``.yml``) or TOML (``.toml``) mapping. Only ``datasets`` is required::

    datasets:                       # non-empty list; each entry is one of
      - unfair2d                    #   a bundled dataset name (unfair2d, adult, lsat)
      - {name: lsat, balanced: true, batch_size: 5}
                                    #   name + dataset options (passed to fastfair.datasets.load)
                                    #   + per-dataset grid/training keys (below)
      - {csv: data/my.csv, target: income, sensitive: sex, features: [age, hours], positive: ">50K",
         label: mine}               #   your own CSV (path relative to the config file); any other key that is
                                    #   not a grid/training key is passed to fastfair.datasets.load_csv
    solvers: [none, trs, pgd]       # inner solvers (default [none, trs]); none = non-robust baseline
    radii: [0.1, 0.15]              # radii > 0, or a range "start:stop:step" (stop included), or a list
                                    # mixing both; required when a robust solver is listed
    seeds: [0, 1, 2]                # non-negative integers, or a range "start:stop" (stop excluded);
                                    # default [0]
    models: [affine]                # affine and/or mlp (a single string is accepted); default [affine]
    epochs: 10                      # training settings (defaults: fastfair.training.TrainConfig)
    batch_size: 32
    lr: 0.01
    train_size: null                # train on the first N training rows only (null: all)
    hidden: 16                      # MLP width and activation (ignored for affine)
    activation: tanh
    dtype: float32
    clean_weight: 0.0
    solver_options: {pgd: {steps: 20}}   # per-solver options, keyed by solver name

Every key except ``datasets`` may also appear inside a dataset entry, where it overrides the top-level value
for that dataset only (e.g. ``batch_size: 100`` and ``train_size: 10000`` for adult, or its own ``radii``).
A dataset's ``label`` (the ``dataset`` column of the results) defaults to its name (or the CSV file's stem);
labels must be unique. Solver ``none`` runs once per (dataset, model, seed) with radius 0, not once per
radius.
Unknown keys, wrong types, non-positive radii, empty lists, duplicate values and unknown datasets, models or
solvers are rejected with a one-line :class:`~fastfair.errors.FastfairError` before anything runs. So is every
value that :meth:`fastfair.training.TrainConfig.validate` refuses (e.g. a seed torch cannot take): each
distinct value of each axis is put through it (:meth:`Grid.validate`), not just the first.

Size
----
A grid's cell count is known before it is expanded (:meth:`Grid.count`: per dataset, models x (radii per
robust solver + 1 for ``none``) x seeds). ``grid_from_dict(..., max_cells=N)`` refuses a larger grid with
:class:`GridTooLarge` before validating or expanding it; a range holds at most :data:`MAX_RANGE_VALUES` values.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FastfairError, require

#: Bump when the meaning of a cell (its training or evaluation) changes, to invalidate stored cells.
CELL_SCHEMA = 2
#: Decimals radii are rounded to (so that 0.1 + 3·0.01 == 0.13).
RADIUS_DECIMALS = 10
#: Most values one ``start:stop[:step]`` range may hold (its length is computed before it is built).
MAX_RANGE_VALUES = 100_000

#: Keys allowed at the top level and inside a dataset entry (overriding the top level).
GRID_KEYS = ("solvers", "radii", "seeds", "models", "solver_options")
TRAINING_KEYS = ("epochs", "batch_size", "lr", "train_size", "hidden", "activation", "dtype", "clean_weight")
TOP_KEYS = ("datasets", *GRID_KEYS, *TRAINING_KEYS)
#: Keys of a dataset entry that describe the data itself.
CSV_KEYS = ("csv", "target", "sensitive", "features", "positive")
DEFAULT_SOLVERS = ("none", "trs")
BASELINE = "none"


# --------------------------------------------------------------------------------------------- specs


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

    def load(self, seed: int) -> Any:
        """Load the dataset (split with ``seed``) through :mod:`fastfair.datasets`."""
        from .. import datasets

        try:
            if self.csv is not None:
                return datasets.load_csv(
                    self.csv,
                    target=self.target,
                    sensitive=self.sensitive,
                    features=list(self.features) if self.features is not None else None,
                    positive=self.positive,
                    seed=seed,
                    **dict(self.options),
                )
            return datasets.load(self.name, seed=seed, **dict(self.options))
        except TypeError as exc:  # an unknown dataset option
            raise FastfairError(f"dataset {self.label!r}: {exc}") from exc


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
    hidden: int = 16
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
            "hidden": self.hidden if self.model != "affine" else None,
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

    def train_config(self) -> Any:
        """The validated :class:`fastfair.training.TrainConfig` of this cell (always on the CPU).

        A solver that draws random numbers (``random``, ``pgd`` with a random start) gets the cell's seed
        unless its options give one, so that its draws depend on the cell only, not on what else ran in the
        process.
        """
        from ..inner import solver_options
        from ..training import TrainConfig

        options = dict(self.solver_options)
        if self.solver != BASELINE:
            accepted = solver_options(self.solver)
            if "seed" in accepted and options.get("seed") is None and options.get("generator") is None:
                options["seed"] = self.seed

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
            solver_options=options,
        ).validate()


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

        :meth:`fastfair.training.TrainConfig.validate` checks each field on its own (the plan's dtype and other
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
        """Put every distinct value of every axis through :meth:`fastfair.training.TrainConfig.validate`
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


# --------------------------------------------------------------------------------------------- parsing


def parse_radii(value: Any, where: str = "radii") -> tuple[float, ...]:
    """Radii from a number, a ``"start:stop:step"`` range (stop included), or a list of either."""
    return _parse_values(value, where, _radius, _float_range)


def _parse_values(
    value: Any, where: str, one: Callable[[Any, str], Any], many: Callable[[str, str], list[Any]]
) -> tuple[Any, ...]:
    """A value or a non-empty list of values, each parsed by ``one``, or by ``many`` when it is a range string
    (it contains ``:``); no duplicates."""
    items = value if isinstance(value, (list, tuple)) else [value]
    require(len(items) > 0, f"{where} must not be empty")
    out: list[Any] = []
    for item in items:
        if isinstance(item, str) and ":" in item:
            out.extend(many(item, where))
        else:
            out.append(one(item, where))
    _no_duplicates(out, where)
    return tuple(out)


def _radius(item: Any, where: str) -> float:
    if isinstance(item, str):
        try:
            item = float(item)
        except ValueError:
            raise FastfairError(f"{where}: {item!r} is not a number or a start:stop:step range") from None
    require(
        isinstance(item, (int, float)) and not isinstance(item, bool),
        f"{where} must be numbers, got {item!r}",
    )
    value = float(item)
    require(math.isfinite(value) and value > 0, f"{where}: radius must be positive and finite, got {item!r}")
    return round(value, RADIUS_DECIMALS)


def _float_range(text: str, where: str) -> list[float]:
    parts = text.split(":")
    require(
        len(parts) == 3, f"{where}: malformed range {text!r}; expected start:stop:step, e.g. 0.10:0.20:0.01"
    )
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise FastfairError(f"{where}: malformed range {text!r}; expected start:stop:step numbers") from None
    require(
        all(math.isfinite(v) for v in (start, stop, step)) and step > 0 and stop >= start,
        f"{where}: range {text!r} needs finite start <= stop and step > 0",
    )
    steps = (stop - start) / step  # may overflow to inf: compare before converting to an integer
    count = math.floor(steps + 1e-9) + 1 if steps < MAX_RANGE_VALUES else MAX_RANGE_VALUES + 1
    require(
        count <= MAX_RANGE_VALUES,
        f"{where}: range {text!r} has more than {MAX_RANGE_VALUES:,} values",
    )
    return [_radius(start + k * step, where) for k in range(count)]


def parse_seeds(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """Seeds from an integer, a ``"start:stop"`` range (stop excluded), or a list of either."""
    return _parse_values(value, where, _seed, _int_range)


def _seed(item: Any, where: str) -> int:
    if isinstance(item, str):
        try:
            item = int(item)
        except ValueError:
            raise FastfairError(f"{where}: {item!r} is not an integer or a start:stop range") from None
    require(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0,
        f"{where} must be non-negative integers, got {item!r}",
    )
    return int(item)


def _int_range(text: str, where: str) -> list[int]:
    try:
        start, stop = (int(p) for p in text.split(":"))
    except ValueError:
        raise FastfairError(f"{where}: malformed range {text!r}; expected start:stop, e.g. 0:5") from None
    require(0 <= start < stop, f"{where}: range {text!r} needs 0 <= start < stop")
    require(
        stop - start <= MAX_RANGE_VALUES,
        f"{where}: range {text!r} has {stop - start:,} values, more than {MAX_RANGE_VALUES:,}",
    )
    return list(range(start, stop))


def _names(value: Any, where: str, allowed: Sequence[str], kind: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    require(isinstance(items, (list, tuple)), f"{where} must be a list of names, got {value!r}")
    require(len(items) > 0, f"{where} must not be empty")
    for item in items:
        require(isinstance(item, str), f"{where} must be names, got {item!r}")
        require(item in allowed, f"{where}: unknown {kind} {item!r}; choose from {', '.join(allowed)}")
    _no_duplicates(items, where)
    return tuple(items)


def _no_duplicates(items: Sequence[Any], where: str) -> None:
    seen = set()
    for item in items:
        require(item not in seen, f"{where}: duplicate value {item!r}")
        seen.add(item)


def _check_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = list(allowed)
    for key in obj:
        require(isinstance(key, str), f"{where}: keys must be strings, got {key!r}")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(allowed)}"
            raise FastfairError(f"{where}: unknown key {key!r}{hint}")


def _setting(key: str, value: Any, where: str) -> Any:
    """Validate one training setting's type and range."""
    from ..models import ACTIVATIONS
    from ..training import DTYPES

    name = f"{where}{key}"

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if key in ("epochs", "batch_size", "hidden"):
        require(integer(value) and value > 0, f"{name} must be a positive integer, got {value!r}")
        return int(value)
    if key == "train_size":
        require(
            value is None or (integer(value) and value > 0),
            f"{name} must be a positive integer or null, got {value!r}",
        )
        return None if value is None else int(value)
    if key in ("lr", "clean_weight") and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-2 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if key == "lr":
        require(number(value) and value > 0, f"{name} must be a positive number, got {value!r}")
        return float(value)
    if key == "clean_weight":
        require(number(value) and 0 <= value <= 1, f"{name} must be a number in [0, 1], got {value!r}")
        return float(value)
    if key == "activation":
        require(
            value in ACTIVATIONS,
            f"{name}: unknown activation {value!r}; choose from {', '.join(ACTIVATIONS)}",
        )
        return value
    if key == "dtype":
        require(value in DTYPES, f"{name}: unknown dtype {value!r}; choose from {', '.join(DTYPES)}")
        return value
    raise AssertionError(key)  # pragma: no cover


def _solver_options(value: Any, where: str, solvers: Sequence[str]) -> dict[str, dict[str, Any]]:
    from ..inner import SOLVERS

    require(isinstance(value, Mapping), f"{where} must be a mapping of solver name to options, got {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for solver, options in value.items():
        require(solver in SOLVERS, f"{where}: unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
        require(solver != BASELINE, f"{where}: solver 'none' takes no options")
        require(
            isinstance(options, Mapping), f"{where}.{solver} must be a mapping of options, got {options!r}"
        )
        for key in options:
            require(isinstance(key, str), f"{where}.{solver}: option names must be strings, got {key!r}")
        out[solver] = {k.replace("-", "_"): _plain(v) for k, v in options.items()}
    return out


def _plain(value: Any) -> Any:
    """Check that an option value is plain JSON data (so that it hashes and travels)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise FastfairError(
            f"option value {value!r} is not plain data (numbers, strings, booleans, lists)"
        ) from None
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_spec(entry: Any, where: str, base_dir: Path) -> tuple[DataSpec, dict[str, Any]]:
    """Split a dataset entry into its DataSpec and its grid/training overrides."""
    from .. import datasets

    if isinstance(entry, str):
        entry = {"name": entry}
    require(isinstance(entry, Mapping), f"{where} must be a dataset name or a mapping, got {entry!r}")
    for key in entry:
        require(isinstance(key, str), f"{where}: keys must be strings, got {key!r}")
    overrides = {k: v for k, v in entry.items() if k in GRID_KEYS or k in TRAINING_KEYS}
    rest = {k: v for k, v in entry.items() if k not in overrides}
    label = rest.pop("label", None)
    require(
        label is None or (isinstance(label, str) and label.strip() != ""),
        f"{where}.label must be a non-empty string",
    )
    has_name, has_csv = "name" in rest, "csv" in rest
    require(has_name != has_csv, f"{where} needs exactly one of 'name' (a bundled dataset) or 'csv' (a file)")
    if has_name:
        name = rest.pop("name")
        require(
            isinstance(name, str) and name in datasets.DATASETS,
            f"{where}: unknown dataset {name!r}; choose from {', '.join(datasets.DATASETS)} or give 'csv'",
        )
        for key in ("target", "features", "positive"):
            require(key not in rest, f"{where}: {key!r} goes with 'csv', not with a bundled dataset")
        known = datasets.dataset_options(name)
        _check_keys(rest, [*known, "name", "label", *GRID_KEYS, *TRAINING_KEYS], f"{where} ({name})")
        options = {k: _plain(v) for k, v in rest.items()}
        return DataSpec(label=label or name, name=name, options=options), overrides
    path = rest.pop("csv")
    require(isinstance(path, str) and path != "", f"{where}.csv must be a file path, got {path!r}")
    csv = Path(path).expanduser()
    if not csv.is_absolute():
        csv = base_dir / csv
    problem = file_problem(csv)
    require(problem is None, f"{where}: CSV file {path!r} {problem}")
    target, sensitive = rest.pop("target", None), rest.pop("sensitive", None)
    require(isinstance(target, str), f"{where}: a CSV dataset needs 'target' (the label column)")
    require(isinstance(sensitive, str), f"{where}: a CSV dataset needs 'sensitive' (the group column)")
    features = rest.pop("features", None)
    if features is not None:
        require(
            isinstance(features, (list, tuple))
            and len(features) > 0
            and all(isinstance(f, str) for f in features),
            f"{where}.features must be a non-empty list of column names",
        )
        features = tuple(features)
    positive = _plain(rest.pop("positive", None))
    options = {k: _plain(v) for k, v in rest.items()}
    spec = DataSpec(
        label=label or csv.stem,
        csv=str(csv.resolve()),
        csv_sha256=_sha256(csv),
        target=target,
        sensitive=sensitive,
        features=features,
        positive=positive,
        options=options,
    )
    return spec, overrides


def grid_from_dict(
    config: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "config",
    max_cells: int | None = None,
) -> Grid:
    """Validate a grid mapping (the schema in this module's docstring) and resolve it into a :class:`Grid`.

    ``base_dir`` is where relative CSV paths start (the config file's folder; default: the working directory).
    A grid of more than ``max_cells`` cells (``None``: no limit) raises :class:`GridTooLarge` before any
    per-value validation or expansion. Errors are raised as :class:`FastfairError` prefixed with ``source``.
    """
    try:
        return _grid_from_dict(config, Path(base_dir) if base_dir is not None else Path.cwd(), max_cells)
    except GridTooLarge:
        raise
    except FastfairError as exc:
        raise FastfairError(f"{source}: {exc}") from None


def _grid_from_dict(config: Any, base_dir: Path, max_cells: int | None) -> Grid:
    from ..inner import SOLVERS
    from ..models import MODELS
    from ..training import TrainConfig

    require(
        isinstance(config, Mapping),
        f"the grid must be a mapping of keys to values, got {type(config).__name__}",
    )
    _check_keys(config, TOP_KEYS, "top level")
    require("datasets" in config, "missing key 'datasets' (a list of dataset names or mappings)")
    entries = config["datasets"]
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    require(isinstance(entries, (list, tuple)), "datasets must be a list")
    require(len(entries) > 0, "datasets must not be empty")

    defaults = TrainConfig()
    top = {k: config[k] for k in config if k != "datasets"}
    plans = []
    labels: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        data, overrides = _data_spec(entry, where, base_dir)
        require(
            data.label not in labels, f"{where}: two datasets share label {data.label!r}; give one a 'label'"
        )
        labels.add(data.label)
        merged = {**top, **overrides}

        def origin(key: str, where: str = where, overrides: dict[str, Any] = overrides) -> str:
            return f"{where}.{key}" if key in overrides else key

        solvers = _names(merged.get("solvers", list(DEFAULT_SOLVERS)), origin("solvers"), SOLVERS, "solver")
        robust = [s for s in solvers if s != BASELINE]
        if "radii" in merged:
            radii = parse_radii(merged["radii"], origin("radii"))
        else:
            require(not robust, f"{where}: radii are required for solver(s) {', '.join(robust)}")
            radii = ()
        seeds = parse_seeds(merged.get("seeds", [0]), origin("seeds"))
        models = _names(merged.get("models", [defaults.model]), origin("models"), MODELS, "model")
        settings = {
            key: _setting(key, merged[key], f"{where}." if key in overrides else "")
            if key in merged
            else getattr(defaults, key)
            for key in TRAINING_KEYS
        }
        options = _solver_options(merged.get("solver_options", {}), origin("solver_options"), solvers)
        plan = DatasetPlan(
            data=data,
            solvers=solvers,
            radii=radii,
            seeds=seeds,
            models=models,
            settings=settings,
            solver_options=options,
        )
        plans.append(plan)
    grid = Grid(plans=tuple(plans))
    grid.check_size(max_cells)  # before anything proportional to the axis lengths
    for i, plan in enumerate(plans):
        plan.validate(f"datasets[{i}]")
    return grid


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or TOML grid file into a mapping (by extension; unknown extensions are tried as YAML)."""
    p = Path(path)
    problem = file_problem(p)
    require(problem is None, f"config file {str(path)!r} {problem}")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FastfairError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FastfairError(f"config file {str(path)!r} is not UTF-8 text") from None
    if p.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise FastfairError(
                    "TOML config files need Python 3.11+ (or the tomli package); use YAML"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FastfairError(f"{p.name}: malformed TOML: {_one_line(exc)}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FastfairError(f"{p.name}: malformed YAML: {_one_line(exc)}") from None
    require(
        isinstance(data, dict), f"{p.name}: the file must hold a mapping of keys (datasets, solvers, ...)"
    )
    return data


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, as the end of a sentence ("not found", "is a directory", "is a
    symlink loop", "cannot be read: <reason>"), or None when it can be opened for reading."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a broken symlink" if path.is_symlink() else "not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read: permission denied"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def grid_from_file(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, *, max_cells: int | None = None
) -> Grid:
    """Load, validate and resolve a grid file; ``overrides`` replace top-level keys (command-line options).
    ``max_cells`` as in :func:`grid_from_dict`."""
    config = load_config(path)
    if overrides:
        config = {**config, **overrides}
    return grid_from_dict(
        config, base_dir=Path(path).resolve().parent, source=Path(path).name, max_cells=max_cells
    )
