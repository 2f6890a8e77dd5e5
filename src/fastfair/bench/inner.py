"""Inner-maximiser comparison: every solver on the same batch, the same model weights, the same radius.

For each case (model ``affine`` or ``mlp``, input dimension d, batch size n, radius r):

* one synthetic, standardised batch x ~ N(0, I) with labels from a planted logistic teacher (seeded);
* one model, built once from a seed and then, for realism, trained non-robustly for ``pretrain_epochs``
  epochs of Adam (batch 128, lr 1e-2, :func:`fastfair.training.train_arrays` with ``solver="none"``) on that
  batch, so that the weights are not at their initialisation (confident and misclassified points both occur);
* every solver (:func:`default_solvers`: ``trs``, a ladder of tuned ``pgd`` settings, ``pgd-paper``,
  ``random``) is timed with :func:`fastfair.bench.timing.interleaved` -- a warm-up run each, then round-robin
  repeats -- and its **objective**, the mean over the batch of the true loss at x + δ, is recorded.

``pgd-matched`` (:func:`pgd_matched`) is the cheapest tuned-PGD setting whose objective is within ``rtol``
(1e-6) relative of TRS's -- what PGD must spend to do as well as TRS -- or "none matched".

For the affine model TRS's closed form is the exact maximiser of the true loss, so no solver can beat it. For
the MLP, TRS maximises the *quadratic model* of the loss exactly; PGD works on the true loss and may end up a
little higher (or lower: it is a local method). The records say which happened (``rel_gap_to_trs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import check_setting
from ..errors import require
from ..inner import make_inner
from ..losses import logistic_loss
from ..models import build_model
from ..training import DTYPES, TrainConfig, train_arrays
from ..vocabulary import MODELS
from .scaling import METHODS, estimated_bytes
from .timing import interleaved

#: Record keys every row of :func:`run_inner_bench` has (the ``--json`` contract).
RECORD_KEYS = ("model", "solver", "n", "d", "seconds", "objective")
#: Relative objective tolerance of ``pgd-matched``.
MATCH_RTOL = 1e-6
#: Relative tolerance within which TRS counts as attaining the best objective (rounding ties).
BEST_RTOL = 1e-7


@dataclass(frozen=True)
class SolverSpec:
    """One contender: a solver name of :func:`fastfair.inner.make_inner`, its options, and a short label."""

    solver: str
    options: dict[str, Any] = field(default_factory=dict)
    setting: str = ""

    @property
    def label(self) -> str:
        return f"{self.solver}[{self.setting}]" if self.setting else self.solver

    def build(self):
        return make_inner(self.solver, **self.options)


def pgd_spec(steps: int, rel_step: float) -> SolverSpec:
    """Tuned PGD with ``steps`` normalised steps of ``rel_step``·r from the centre, no random start."""
    return SolverSpec("pgd", {"steps": steps, "rel_step": rel_step}, f"steps={steps},rel_step={rel_step:.4g}")


def pgd_ladder(quick: bool = False) -> list[SolverSpec]:
    """The tuned-PGD settings searched for ``pgd-matched``, cheapest first.

    Step counts 1 … 200 (1 … 50 with ``quick``); for each, step lengths 2.5·r/steps (the library default: the
    walk can cross the ball 1.25 times) and 1·r/steps (just reaches the boundary on a straight path); one step
    of length r (the fast gradient method) for ``steps=1``. The library default (10 steps of 0.25·r) is in it.
    """
    counts = (1, 2, 3, 5, 10, 20, 50) if quick else (1, 2, 3, 5, 10, 20, 50, 100, 200)
    specs = []
    for steps in counts:
        rels = (1.0,) if steps == 1 else (2.5 / steps, 1.0 / steps)
        specs += [pgd_spec(steps, rel) for rel in rels]
    return specs


#: ``pgd-paper``'s iteration cap under ``--quick`` (the paper's 5000 makes a few non-converging samples cost
#: tens of seconds per batch on the CPU).
QUICK_PAPER_MAX_ITER = 100


def default_solvers(quick: bool = False, seed: int = 0) -> list[SolverSpec]:
    """The contenders, in table order.

    * ``trs`` -- the lean training path (``certify=False``: structured paths, :mod:`fastfair.trs`'s fixed point),
      i.e. the step ``fastfair train --solver trs`` takes; it is the reference of every ratio;
    * ``trs[certified]`` -- the same step from the certified solver, with its KKT certificate (diagnostic);
    * the tuned-PGD ladder (:func:`pgd_ladder`), ``pgd-paper`` (with ``quick``: capped at
      :data:`QUICK_PAPER_MAX_ITER` iterations, and labelled so), ``random`` (seeded, on the sphere).
    """
    paper = (
        SolverSpec("pgd-paper", {"max_iter": QUICK_PAPER_MAX_ITER}, f"max_iter={QUICK_PAPER_MAX_ITER}")
        if quick
        else SolverSpec("pgd-paper")
    )
    return [
        SolverSpec("trs", {"certify": False}),
        SolverSpec("trs", {}, "certified"),
        *pgd_ladder(quick),
        paper,
        SolverSpec("random", {"seed": seed}),
    ]


@dataclass
class BenchCase:
    """One batch and one model: what every solver of a comparison is given."""

    model_name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    info: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])


def synthetic_batch(n: int, d: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features x ~ N(0, I) (n, d), labels y ~ Bernoulli(σ(2·xᵀβ/‖β‖ + 0.5·sin(3x₁))); seeded.

    The teacher's logit has unit-variance signal and a mild non-linearity: neither model fits it perfectly, so
    a trained model has both confident and misclassified points, as on real data.
    """
    require(n >= 1 and d >= 1, f"a benchmark batch needs n >= 1 and d >= 1, got n={n}, d={d}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    beta = rng.standard_normal(d)
    logit = 2.0 * (x @ beta) / np.linalg.norm(beta) + 0.5 * np.sin(3.0 * x[:, 0])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return x, y


def make_case(
    model: str,
    d: int,
    n: int,
    *,
    hidden: int = 16,
    seed: int = 0,
    dtype: str = "float64",
    pretrain_epochs: int = 2,
    device: str = "cpu",
) -> BenchCase:
    """Build the batch and the (briefly pre-trained) model of one case; see the module docs."""
    check_setting("model", model)
    check_setting("dtype", dtype)
    X, Y = synthetic_batch(n, d, seed=seed)
    net = build_model(model, d, hidden=hidden, seed=seed, dtype=DTYPES[dtype])
    info: dict[str, Any] = {
        "pretrain_epochs": int(pretrain_epochs),
        "hidden": hidden if model == "mlp" else None,
    }
    if pretrain_epochs > 0:
        config = TrainConfig(
            model=model,
            hidden=hidden,
            solver="none",
            epochs=int(pretrain_epochs),
            batch_size=128,
            lr=1e-2,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        result = train_arrays(X, Y, config, model=net)
        net = result.model
        info["pretrain_accuracy"] = result.history[-1]["train_accuracy"]
    net = net.to(device=device, dtype=DTYPES[dtype]).eval()
    for p in net.parameters():
        p.requires_grad_(True)
    x = torch.as_tensor(X, dtype=DTYPES[dtype], device=device)
    y = torch.as_tensor(Y, dtype=DTYPES[dtype], device=device)
    return BenchCase(model, net, x, y, info)


#: The solvers of a comparison each keep a few (n, d) tensors (iterate, gradient, autograd graph), more than the
#: structured TRS alone; their working set is taken as this many times the TRS estimate.
SOLVER_MEMORY_FACTOR = 2.0


def estimated_case_bytes(model: str, n: int, d: int, *, hidden: int = 16, dtype: str = "float64") -> float:
    """Rough peak memory of one case of :func:`make_case` and :func:`compare_solvers`, in bytes.

    The batch is drawn in float64 (numpy, 8·n·d bytes, plus a draw of the same size) and copied to a tensor
    (itemsize·n·d); the solvers' working set is :data:`SOLVER_MEMORY_FACTOR` times the structured TRS's, as
    :func:`fastfair.bench.scaling.estimated_bytes` estimates it. Only used to refuse plans that cannot fit.
    """
    check_setting("dtype", dtype)
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    trs = next(m for m in METHODS if m.model == model and m.kind == "trs" and not m.dense)
    batch = 2 * 8 * n * d + itemsize * n * d
    return batch + SOLVER_MEMORY_FACTOR * estimated_bytes(trs, n, d, hidden, itemsize)


def mean_loss(loss: torch.Tensor) -> float:
    """The objective: mean per-sample loss, accumulated in float64."""
    return float(loss.detach().double().mean().item())


def relative_gap(objective: float, reference: float) -> float:
    """(objective - reference) / |reference|: > 0 means above the reference. Pure."""
    if reference == 0:
        return 0.0 if objective == 0 else math.copysign(math.inf, objective)
    return (objective - reference) / abs(reference)


def pgd_matched(
    records: Iterable[dict[str, Any]], trs_objective: float, rtol: float = MATCH_RTOL
) -> dict[str, Any] | None:
    """The cheapest ``pgd`` record whose objective is at least ``trs_objective - rtol·|trs_objective|``.

    Pure function of the records (dicts with ``solver``, ``seconds``, ``objective``): only rows with
    ``solver == "pgd"`` and a finite ``seconds`` are candidates; ties on seconds go to the first. ``None``
    when none matched.
    """
    threshold = trs_objective - rtol * abs(trs_objective)
    best = None
    for rec in records:
        if rec.get("solver") != "pgd":
            continue
        seconds, objective = rec.get("seconds"), rec.get("objective")
        if seconds is None or objective is None or not math.isfinite(seconds) or not math.isfinite(objective):
            continue
        if objective >= threshold and (best is None or seconds < best["seconds"]):
            best = rec
    return best


def compare_solvers(
    case: BenchCase,
    radius: float,
    solvers: Sequence[SolverSpec],
    *,
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Time every solver on ``case`` at ``radius`` (interleaved) and return one record per solver, plus the
    ``pgd-matched`` record. TRS must be among ``solvers`` (it is the reference of the ratios)."""
    require(radius > 0 and math.isfinite(radius), f"radius must be positive and finite, got {radius!r}")
    labels = [s.label for s in solvers]
    require(len(set(labels)) == len(labels), "solver labels must be unique")
    require("trs" in labels, "the comparison needs the 'trs' solver as its reference")
    built = {s.label: s.build() for s in solvers}
    device = case.x.device

    def task(inner) -> Callable[[], Any]:
        return lambda: inner.perturb(case.model, case.x, case.y, radius)

    timings = interleaved(
        {label: task(inner) for label, inner in built.items()},
        repeats=repeats,
        warmup=warmup,
        budget_s=budget_s,
        device=device,
        progress=progress,
    )
    clean = mean_loss(logistic_loss(case.model(case.x).detach().reshape(-1), case.y))
    records = []
    for spec in solvers:
        t = timings[spec.label]
        res = t.result
        rec = {
            "model": case.model_name,
            "solver": spec.solver,
            "n": case.n,
            "d": case.d,
            "seconds": t.median,
            "objective": mean_loss(res.loss),
            "setting": spec.setting or None,
            "radius": float(radius),
            "dtype": str(case.x.dtype).replace("torch.", ""),
            "repeats": t.repeats,
            "warmup_counted": t.warmup_counted,
            "iterations": float(res.iterations.double().mean().item()),
            "clean_objective": clean,
        }
        if spec.solver == "trs":
            rec["path"] = res.extras.get("path")
            if res.certificate is not None:
                rec["max_kkt_violation"] = float(res.certificate.max_violation().max().item())
        records.append(rec)
    trs = next(r for r in records if r["solver"] == "trs" and r["setting"] is None)
    for rec in records:
        rec["ratio_to_trs"] = rec["seconds"] / trs["seconds"] if trs["seconds"] > 0 else math.nan
        rec["rel_gap_to_trs"] = relative_gap(rec["objective"], trs["objective"])
    others = [r for r in records if r["solver"] != "trs"]
    if others:
        best_other = max(others, key=lambda r: r["objective"])
        trs["best_other"] = record_label(best_other)
        trs["best_other_objective"] = best_other["objective"]
        trs["trs_is_best"] = trs["objective"] >= best_other["objective"] - BEST_RTOL * abs(trs["objective"])
        trs["trs_is_best_strict"] = trs["objective"] >= best_other["objective"]
    matched = pgd_matched(records, trs["objective"])
    best_pgd = max((r for r in records if r["solver"] == "pgd"), key=lambda r: r["objective"], default=None)
    row = {
        "model": case.model_name,
        "solver": "pgd-matched",
        "n": case.n,
        "d": case.d,
        "seconds": matched["seconds"] if matched else None,
        "objective": matched["objective"] if matched else None,
        "setting": matched["setting"] if matched else None,
        "radius": float(radius),
        "dtype": trs["dtype"],
        "ratio_to_trs": matched["ratio_to_trs"] if matched else None,
        "rel_gap_to_trs": matched["rel_gap_to_trs"] if matched else None,
        "match_rtol": MATCH_RTOL,
        "note": "cheapest tuned PGD within 1e-6 relative of TRS" if matched else "none matched",
    }
    if not matched and best_pgd is not None:
        row["best_pgd_setting"] = best_pgd["setting"]
        row["best_pgd_rel_gap"] = best_pgd["rel_gap_to_trs"]
    records.append(row)
    for rec in records:
        rec.update({k: v for k, v in case.info.items() if v is not None})
    return records


def record_label(rec: dict[str, Any]) -> str:
    """A record's solver with its setting, as in the tables: ``pgd[steps=10,rel_step=0.25]``, ``trs``."""
    return f"{rec['solver']}[{rec['setting']}]" if rec.get("setting") else rec["solver"]


@dataclass
class InnerBenchPlan:
    """What :func:`run_inner_bench` runs; :meth:`quick` and :meth:`full` give the two standard plans."""

    models: tuple[str, ...] = MODELS
    dims: tuple[int, ...] = (5, 100)
    n: int = 4096
    radii: tuple[float, ...] = (0.1,)
    repeats: int = 7
    warmup: int = 1
    budget_s: float | None = 20.0
    dtype: str = "float64"
    hidden: int = 16
    seed: int = 0
    pretrain_epochs: int = 2
    device: str = "cpu"
    quick: bool = False

    @classmethod
    def full(cls, **overrides: Any) -> InnerBenchPlan:
        return cls(**overrides)

    @classmethod
    def quick_plan(cls, **overrides: Any) -> InnerBenchPlan:
        base = {"n": 4096, "repeats": 3, "budget_s": 1.5, "quick": True, "pretrain_epochs": 1}
        base.update(overrides)
        return cls(**base)

    def solvers(self) -> list[SolverSpec]:
        return default_solvers(self.quick, self.seed)

    def runs(self) -> int:
        """Number of timed runs (warm-ups included) at most: the length of the progress bar."""
        cases = len(self.models) * len(self.dims) * len(self.radii)
        return cases * len(self.solvers()) * (self.warmup + self.repeats)

    def estimated_bytes(self) -> tuple[float, str]:
        """The largest :func:`estimated_case_bytes` over the plan's cases, and which case it is."""
        return max(
            (
                (estimated_case_bytes(m, self.n, d, hidden=self.hidden, dtype=self.dtype), f"{m}, n={self.n}, d={d}")
                for m in self.models
                for d in self.dims
            ),
            key=lambda pair: pair[0],
        )

    def validate(self) -> InnerBenchPlan:
        for m in self.models:
            check_setting("model", m)
        require(self.models and self.dims and self.radii, "give at least one model, dimension and radius")
        for d in self.dims:
            require(isinstance(d, int) and d >= 1, f"dimensions must be positive integers, got {d!r}")
        for r in self.radii:
            require(r > 0 and math.isfinite(r), f"radii must be positive and finite, got {r!r}")
        require(isinstance(self.n, int) and self.n >= 1, f"n must be a positive integer, got {self.n!r}")
        require(self.repeats >= 1, f"repeats must be a positive integer, got {self.repeats!r}")
        check_setting("dtype", self.dtype)
        if self.budget_s is not None:
            require(self.budget_s > 0, f"budget must be positive, got {self.budget_s!r}")
        return self


def run_inner_bench(plan: InnerBenchPlan, *, progress: Any = None) -> list[dict[str, Any]]:
    """Run every case of ``plan``; return all records (see :func:`compare_solvers`)."""
    plan.validate()
    solvers = plan.solvers()
    records: list[dict[str, Any]] = []
    for model in plan.models:
        for d in plan.dims:
            case = make_case(
                model,
                d,
                plan.n,
                hidden=plan.hidden,
                seed=plan.seed,
                dtype=plan.dtype,
                pretrain_epochs=plan.pretrain_epochs,
                device=plan.device,
            )
            for radius in plan.radii:
                if progress is not None and hasattr(progress, "set_description"):
                    progress.set_description(f"bench {model} d={d} r={radius:g}")
                records += compare_solvers(
                    case,
                    radius,
                    solvers,
                    repeats=plan.repeats,
                    warmup=plan.warmup,
                    budget_s=plan.budget_s,
                    progress=progress,
                )
    return records
