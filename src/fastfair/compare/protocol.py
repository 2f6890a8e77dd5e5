"""The comparison's protocol: per dataset, each method's knob grid, the shared training settings, the seeds.

Full (``fastfair compare``): 5 seeds, every method of :data:`fastfair.compare.methods.METHODS`, the knob grids
of :data:`FULL` (ExponentiatedGradient capped at 15 iterations instead of Fairlearn's default 50, to fit the run
in about half an hour on two shared cores). Quick (``--quick``): 2 seeds (the fewest that give a confidence interval),
shorter grids and training, ExponentiatedGradient capped at 5 iterations (:data:`QUICK`); sized to finish in
under three minutes on two shared cores. Its numbers are a smoke test of the pipeline, not a verdict.

Radii are in the units of the features: Unfair2D is not standardised (unit square, the paper's radii);
Adult, LSAT and CSV data are standardised, so a radius there is in standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import require
from ..experiments.grid import DataSpec
from .cell import CompareCell
from .methods import METHODS, method


@dataclass(frozen=True)
class Knobs:
    """The knob grids and training settings of one dataset. ``robustness_radii``: the radii of the per-group
    robustness analysis, the first one the radius of the summary columns of ``results.csv``."""

    radii: tuple[float, ...]
    eps: tuple[float, ...]
    lambdas: tuple[float, ...]
    penalty_radius: float
    robustness_radii: tuple[float, ...]
    epochs: int
    batch_size: int
    train_size: int | None
    eg_max_iter: int
    methods: tuple[str, ...] = tuple(METHODS)
    lr: float = 1e-2


_UNFAIR2D_FULL = Knobs(
    radii=(0.02, 0.05, 0.08, 0.11, 0.14, 0.18, 0.22),
    eps=(0.01, 0.02, 0.05, 0.1),
    lambdas=(0.1, 0.3, 1.0, 3.0, 10.0),
    penalty_radius=0.1,
    robustness_radii=(0.1, 0.02, 0.05, 0.15, 0.2),
    epochs=20,
    batch_size=40,
    train_size=None,
    eg_max_iter=15,
)
_STANDARDISED_FULL = Knobs(
    radii=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8),
    eps=(0.01, 0.02, 0.05, 0.1),
    lambdas=(0.1, 0.3, 1.0, 3.0, 10.0),
    penalty_radius=0.2,
    robustness_radii=(0.2, 0.05, 0.1, 0.3, 0.5),
    epochs=5,
    batch_size=200,
    train_size=10_000,
    eg_max_iter=15,
)
FULL = {"unfair2d": _UNFAIR2D_FULL, "default": _STANDARDISED_FULL}

_QUICK_METHODS = ("none", "robust", "eg-dp", "eg-eo", "to-dp", "to-eo", "penalty-dp", "robust-penalty-dp")
QUICK = {
    "unfair2d": replace(
        _UNFAIR2D_FULL,
        radii=(0.05, 0.1, 0.18),
        eps=(0.02, 0.1),
        lambdas=(0.5, 2.0, 8.0),
        epochs=10,
        eg_max_iter=5,
        methods=_QUICK_METHODS,
    ),
    "default": replace(
        _STANDARDISED_FULL,
        radii=(0.1, 0.3, 0.6),
        eps=(0.02, 0.1),
        lambdas=(0.5, 2.0, 8.0),
        epochs=3,
        train_size=4_000,
        eg_max_iter=5,
        methods=_QUICK_METHODS,
    ),
}
FULL_SEEDS = 5
QUICK_SEEDS = 2


@dataclass(frozen=True)
class ComparePlan:
    """One dataset's comparison: its data, seeds, knob grids and shared settings."""

    data: DataSpec
    seeds: tuple[int, ...]
    knobs: Knobs
    model: str = "affine"
    hidden: int | tuple[int, ...] = 16
    activation: str = "tanh"
    dtype: str = "float32"
    solver: str = "trs"
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def knob_values(self, name: str) -> tuple[float | None, ...]:
        """The knob grid of method ``name`` (``(None,)`` for a method without a knob)."""
        knob = method(name).knob
        if knob is None:
            return (None,)
        return {"r": self.knobs.radii, "eps": self.knobs.eps, "lambda": self.knobs.lambdas}[knob]

    def count(self) -> int:
        return len(self.seeds) * sum(len(self.knob_values(m)) for m in self.knobs.methods)

    def cells(self) -> list[CompareCell]:
        """Every cell, method by method, knob by knob, seed by seed."""
        k = self.knobs
        out = []
        for name in k.methods:
            for knob in self.knob_values(name):
                for seed in self.seeds:
                    out.append(
                        CompareCell(
                            data=self.data,
                            method=name,
                            knob=knob,
                            seed=seed,
                            model=self.model,
                            hidden=self.hidden,
                            activation=self.activation,
                            epochs=k.epochs,
                            batch_size=k.batch_size,
                            lr=k.lr,
                            train_size=k.train_size,
                            dtype=self.dtype,
                            solver=self.solver,
                            penalty_radius=k.penalty_radius,
                            eg_max_iter=k.eg_max_iter,
                        )
                    )
        return out

    def describe(self) -> str:
        """One paragraph for the report: the grids and settings."""
        k = self.knobs

        def fmt(values: tuple[float, ...]) -> str:
            return ", ".join(f"{v:g}" for v in values)

        size = f"first {k.train_size:,} training rows" if k.train_size else "all training rows"
        return (
            f"{'Quick run' if self.quick else 'Full run'}: {len(self.seeds)} seeds; {self.model} model, "
            f"{k.epochs} epochs of Adam (lr {k.lr:g}), batch {k.batch_size}, {size}; robust solver "
            f"{self.solver}; radii r: {fmt(k.radii)}; ExponentiatedGradient bounds eps: {fmt(k.eps)} "
            f"(max_iter {k.eg_max_iter}); penalty weights lambda: {fmt(k.lambdas)} (robust + penalty at "
            f"r = {k.penalty_radius:g}); per-group robustness at r: {fmt(tuple(sorted(k.robustness_radii)))}. "
            "Methods: "
            f"{', '.join(k.methods)}."
        )


def compare_plan(
    data: DataSpec,
    *,
    quick: bool = False,
    seeds: int | None = None,
    model: str = "affine",
    solver: str = "trs",
) -> ComparePlan:
    """The comparison of one dataset: Unfair2D's grids for ``unfair2d``, the standardised grids otherwise."""
    n_seeds = seeds if seeds is not None else (QUICK_SEEDS if quick else FULL_SEEDS)
    require(isinstance(n_seeds, int) and n_seeds >= 1, f"--seeds must be a positive integer, got {n_seeds!r}")
    require(solver in ("trs", "auto"), f"the robust solver of compare is trs or auto, got {solver!r}")
    table = QUICK if quick else FULL
    knobs = table["unfair2d" if data.name == "unfair2d" else "default"]
    return ComparePlan(
        data=data, seeds=tuple(range(n_seeds)), knobs=knobs, model=model, solver=solver, quick=quick
    )
