"""End-to-end cost of robustness: robust / non-robust epoch-time ratio per solver, measured in the same run.

For each (dataset, model, radius) every solver -- ``none`` (ordinary training) and the robust ones -- trains
one epoch from the same seeded initial weights on the same rows in the same order
(:func:`fastfair.training.train_arrays`, ``epochs=1``). The time recorded is the epoch time the trainer
measures itself (``epoch_seconds``: the inner solver plus the Adam steps; data loading, model construction and
the evaluation after the epoch are excluded). Solvers alternate round-robin over the repeats after one
warm-up epoch each; the median is reported, and the ratio is median(robust) / median(none).

Defaults follow the paper's protocol: Adult with its first 10,000 training rows, batch 100; Unfair2D (400
training rows), batch 5; r = 0.1; affine and one-hidden-layer MLP (h = 16); float32 (the training default). A
third setting goes beyond the paper: Adult with every feature (``features=all``: the categorical columns
one-hot, about 100 columns), its first 10,000 training rows, batch 100, and a tanh MLP with two hidden layers
of widths 64 and 32 (``mlp-64-32-tanh``, :data:`DEEP_MODEL`), whose TRS is solved by the Krylov path.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import datasets
from ..config import check_setting
from ..errors import require
from ..training import TrainConfig, train_arrays
from ..vocabulary import BASELINE, MODELS
from .inner import bench_model
from .render import fmt_ratio, fmt_seconds, markdown_table, text_table
from .timing import interleaved

#: The reference implementation on this machine class (Adult, 10,000 rows, batch 100, affine, r = 0.1).
REFERENCE = {
    "trs_epoch_seconds": 75.9,
    "none_epoch_seconds": 0.099,
    "pgd_over_trs_epoch_r0.1": 1.04,
    "pgd_over_trs_epoch_r0.2": 1.60,
}


@dataclass(frozen=True)
class E2ESetting:
    """One training setting of the end-to-end comparison: a dataset with its loader options
    (:func:`fastfair.datasets.load`), batch size, rows, and the models (names of
    :func:`fastfair.bench.inner.bench_model`) it is run with unless the plan names others."""

    dataset: str
    batch_size: int
    train_size: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    models: tuple[str, ...] = MODELS

    @property
    def label(self) -> str:
        """``adult``, or with options ``adult[features=all]``."""
        if not self.options:
            return self.dataset
        return f"{self.dataset}[{','.join(f'{k}={v}' for k, v in self.options)}]"


#: The deeper model of the end-to-end comparison: two tanh hidden layers, on Adult with every feature.
DEEP_MODEL = "mlp-64-32-tanh"

DEFAULT_SETTINGS = (
    E2ESetting("adult", 100, 10_000),
    E2ESetting("unfair2d", 5, None),
    E2ESetting("adult", 100, 10_000, options=(("features", "all"),), models=(DEEP_MODEL,)),
)


@dataclass
class EndToEndPlan:
    """What :func:`run_end_to_end` runs. ``models``: None runs each setting with its own models; names (of
    :func:`fastfair.bench.inner.bench_model`) run every setting with those."""

    settings: tuple[E2ESetting, ...] = DEFAULT_SETTINGS
    models: tuple[str, ...] | None = None
    radii: tuple[float, ...] = (0.1,)
    solvers: tuple[str, ...] = ("none", "trs", "pgd", "pgd-paper", "random")
    solver_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeats: int = 5
    warmup: int = 1
    seed: int = 0
    dtype: str = "float32"
    hidden: int = 16
    budget_s: float | None = 60.0

    @classmethod
    def quick_plan(cls, **overrides: Any) -> EndToEndPlan:
        base = {"repeats": 3, "budget_s": 10.0, "solvers": ("none", "trs", "pgd", "random")}
        base.update(overrides)
        return cls(**base)

    def validate(self) -> EndToEndPlan:
        require(BASELINE in self.solvers, "the end-to-end comparison needs the 'none' solver as its reference")
        for s in self.solvers:
            check_setting("solver", s)
        for m in self.models or ():
            bench_model(m, self.hidden)
        for setting in self.settings:
            for m in setting.models:
                bench_model(m, self.hidden)
        check_setting("dtype", self.dtype)
        require(self.repeats >= 1, "repeats must be a positive integer")
        for r in self.radii:
            require(r > 0, f"radii must be positive, got {r!r}")
        return self

    def models_of(self, setting: E2ESetting) -> tuple[str, ...]:
        """The models ``setting`` runs with: the plan's, when it names them, else the setting's own."""
        return tuple(self.models) if self.models is not None else setting.models

    def runs(self) -> int:
        per_model = len(self.radii) * len(self.solvers) * (self.warmup + self.repeats)
        return sum(len(self.models_of(setting)) for setting in self.settings) * per_model


def run_end_to_end(plan: EndToEndPlan, *, progress: Any = None) -> list[dict[str, Any]]:
    """One record per (dataset, model, radius, solver): median epoch seconds, inner seconds, ratios."""
    plan.validate()
    records: list[dict[str, Any]] = []
    for setting in plan.settings:
        data = datasets.load(setting.dataset, seed=plan.seed, **dict(setting.options))
        X, y = data.train.X, data.train.y
        if setting.train_size is not None:
            X, y = X[: setting.train_size], y[: setting.train_size]
        for model in plan.models_of(setting):
            spec = bench_model(model, plan.hidden)
            shape = {} if spec.model == "affine" else {"hidden": spec.hidden, "activation": spec.activation}
            for radius in plan.radii:
                if progress is not None and hasattr(progress, "set_description"):
                    progress.set_description(f"end-to-end {setting.label} {model} r={radius:g}")
                configs = {
                    solver: TrainConfig(
                        model=spec.model,
                        **shape,
                        solver=solver,
                        radius=radius,
                        epochs=1,
                        batch_size=setting.batch_size,
                        seed=plan.seed,
                        dtype=plan.dtype,
                        solver_options=dict(plan.solver_options.get(solver, {})),
                    ).validate()
                    for solver in plan.solvers
                }
                inner_log: dict[str, list[float]] = {s: [] for s in configs}

                def task(solver, config, X=X, y=y, log=inner_log):
                    def run():
                        result = train_arrays(X, y, config)
                        log[solver].append(result.history[0]["inner_seconds"])
                        return result

                    return run

                tasks = {s: task(s, c) for s, c in configs.items()}
                timings = interleaved(
                    tasks,
                    repeats=plan.repeats,
                    warmup=plan.warmup,
                    budget_s=plan.budget_s,
                    progress=progress,
                    timer=lambda res, wall: res.history[0]["epoch_seconds"],
                )
                base = timings["none"].median
                for solver, t in timings.items():
                    res = t.result
                    records.append(
                        {
                            "dataset": setting.dataset,
                            "data_options": dict(setting.options),
                            "model": model,
                            "hidden": spec.hidden,
                            "activation": spec.activation,
                            "solver": solver,
                            "radius": radius,
                            "n": len(X),
                            "d": X.shape[1],
                            "batch_size": setting.batch_size,
                            "dtype": plan.dtype,
                            "epoch_seconds": t.median,
                            "inner_seconds": statistics.median(
                                inner_log[solver]
                                if t.warmup_counted
                                else inner_log[solver][max(1, plan.warmup) :]
                            ),
                            "ratio_to_none": t.median / base if base > 0 else None,
                            "per_sample_us": t.median / len(X) * 1e6,
                            "repeats": t.repeats,
                            "warmup_counted": t.warmup_counted,
                            "train_accuracy": res.history[0]["train_accuracy"],
                        }
                    )
                trs = next((r for r in records[-len(timings) :] if r["solver"] == "trs"), None)
                for rec in records[-len(timings) :]:
                    rec["ratio_to_trs"] = (
                        rec["epoch_seconds"] / trs["epoch_seconds"]
                        if trs and trs["epoch_seconds"] > 0
                        else None
                    )
    return records


#: The targets: a robust TRS epoch costs at most this many non-robust epochs (affine; any MLP, deeper ones too).
TARGETS = {"affine": 2.0, "mlp": 3.0}


def _target(model: str) -> float | None:
    """The target of a model name (``mlp-64-32-tanh`` is an MLP)."""
    return TARGETS.get(model.split("-")[0])


def render_end_to_end(records: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """Table: per (dataset, model, r) the epoch time of every solver and its ratio to the non-robust epoch."""
    table = markdown_table if markdown else text_table
    rows = []
    for r in records:
        target = ""
        goal = _target(r["model"])
        if r["solver"] == "trs" and goal is not None:
            ok = r["ratio_to_none"] is not None and r["ratio_to_none"] <= goal
            target = f"≤ {goal:g}×: {'met' if ok else 'MISSED'}"
        options = r.get("data_options") or {}
        rows.append(
            [
                E2ESetting(r["dataset"], r["batch_size"], options=tuple(options.items())).label,
                r["model"],
                f"{r['radius']:g}",
                r["batch_size"],
                r["solver"],
                fmt_seconds(r["epoch_seconds"]) + ("*" if r.get("warmup_counted") else ""),
                fmt_seconds(r["inner_seconds"]) if r["solver"] != "none" else "-",
                fmt_ratio(r["ratio_to_none"]),
                fmt_ratio(r.get("ratio_to_trs")),
                target,
            ]
        )
    header = [
        "dataset",
        "model",
        "r",
        "batch",
        "solver",
        "epoch",
        "of which inner",
        "÷ non-robust",
        "÷ TRS",
        "target",
    ]
    out = [table(header, rows, "llrrlrrrrl")]
    ref = [
        r
        for r in records
        if r["dataset"] == "adult"
        and not r.get("data_options")
        and r["model"] == "affine"
        and r["solver"] == "trs"
        and abs(r["radius"] - 0.1) < 1e-12
    ]
    if ref:
        trs_epoch = ref[0]["epoch_seconds"]
        out.append("")
        out.append(
            "reference implementation (paper's code, same machine class, Adult affine r=0.1 batch 100): "
            f"TRS epoch "
            f"{REFERENCE['trs_epoch_seconds']:g} s vs non-robust {REFERENCE['none_epoch_seconds']:g} s "
            f"({REFERENCE['trs_epoch_seconds'] / REFERENCE['none_epoch_seconds']:.0f}×); fastfair TRS epoch "
            f"{fmt_seconds(trs_epoch)} = {REFERENCE['trs_epoch_seconds'] / trs_epoch:.0f}× faster"
        )
    if any(r.get("warmup_counted") for r in records):
        out.append("* a single epoch over the time budget: its warm-up epoch is the measurement.")
    return "\n".join(out) + "\n"
