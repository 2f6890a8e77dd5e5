"""Inner-maximiser comparison: every solver on the same batch, the same model weights, the same radius.

For each case (a model -- :func:`bench_model`: ``affine``, ``mlp`` with one hidden layer, or a deeper
``mlp-128-64-tanh`` -- an input dimension d, a batch size n and a radius r):

* one synthetic, standardised batch x ~ N(0, I) with labels from a planted logistic teacher (seeded);
* one model, built once from a seed and then, for realism, trained non-robustly for ``pretrain_epochs``
  epochs of Adam (batch 128, lr 1e-2, :func:`fastfair.training.train_arrays` with ``solver="none"``) on that
  batch, so that the weights are not at their initialisation (confident and misclassified points both occur);
* every solver (:func:`default_solvers`: ``trs``, a ladder of tuned ``pgd`` settings, ``pgd-paper``,
  ``random``, and ``auto``) is timed with :func:`fastfair.bench.timing.interleaved` -- a warm-up run each,
  then round-robin repeats -- and its **objective**, the mean over the batch of the true loss at x + δ, is
  recorded.

``pgd-matched`` (:func:`pgd_matched`) is the cheapest tuned-PGD setting whose objective is within ``rtol``
(1e-6) relative of TRS's -- what PGD must spend to do as well as TRS -- or "none matched".

``auto`` is timed as training runs it (``attack``: the step only); its record names the solver it chose and
why, and compares it with the alternative it did not choose (:func:`auto_comparison`): for a choice of ``trs``
the cheapest PGD that does as well (``pgd-matched``; the best PGD when none does), for a choice of ``pgd`` the
trust-region step. The evidence that the choice is right is an objective at least the alternative's at no more
time; where that fails, the record says which of the two was lost.

For the affine model TRS's closed form is the exact maximiser of the true loss, so no solver can beat it. For
the MLPs, TRS maximises the *quadratic model* of the loss exactly; PGD works on the true loss and may end up a
little higher (or lower: it is a local method). The records say which happened (``rel_gap_to_trs``). For a
piecewise-linear network (ReLU) the quadratic model is ℓ′∇fᵀp + ½ℓ″(∇fᵀp)² (∇²f = 0 almost everywhere): its
maximiser is the single normalised gradient step r·g/‖g‖, and PGD's further steps find more of the true loss.

Deeper models (two or more hidden layers; by default at d = 100 and 784, r = 0.5, float32) add two measurements
(:mod:`fastfair.bench.deep`): TRS through the dense path (the full (n, d, d) input Hessian, what any model
other than the two built-in ones took before the Krylov solver) on the first few rows, compared per row; and the
peak-RSS growth of one Krylov TRS solve, in a fresh process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import check_setting
from ..errors import require
from ..inner.base import loss_at
from ..losses import logistic_loss
from ..vocabulary import MODELS, PIECEWISE_LINEAR_ACTIVATIONS
from .inner_cases import (
    DEEP_MODELS,
    BenchCase,
    BenchModel,
    SolverSpec,
    bench_model,
    default_solvers,
    estimated_case_bytes,
    make_case,
    mean_loss,
    relative_gap,
)
from .timing import interleaved

#: Record keys every row of :func:`run_inner_bench` has (the ``--json`` contract).
RECORD_KEYS = ("model", "solver", "n", "d", "seconds", "objective")
#: Relative objective tolerance of ``pgd-matched``.
MATCH_RTOL = 1e-6
#: Relative tolerance within which TRS counts as attaining the best objective (rounding ties).
BEST_RTOL = 1e-7


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
    radii = torch.full((case.n,), float(radius), dtype=case.x.dtype, device=device)

    def task(spec: SolverSpec, inner) -> Callable[[], Any]:
        if spec.solver == "auto":  # as training calls it: the step only
            return lambda: inner.attack(case.model, case.x, case.y, radii)
        return lambda: inner.perturb(case.model, case.x, case.y, radius)

    timings = interleaved(
        {spec.label: task(spec, built[spec.label]) for spec in solvers},
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
        auto = spec.solver == "auto"
        rec = {
            "model": case.model_name,
            "solver": spec.solver,
            "n": case.n,
            "d": case.d,
            "seconds": t.median,
            "objective": mean_loss(loss_at(case.model, res, case.y) if auto else res.loss),
            "setting": spec.setting or None,
            "radius": float(radius),
            "dtype": str(case.x.dtype).replace("torch.", ""),
            "repeats": t.repeats,
            "warmup_counted": t.warmup_counted,
            "iterations": None if auto else float(res.iterations.double().mean().item()),
            "clean_objective": clean,
        }
        if auto:
            choice, reason = built[spec.label].choose(case.model, case.d)
            rec.update(choice=choice, reason=reason)
        if spec.solver == "trs":
            rec["path"] = res.extras.get("path")
            if res.certificate is not None:
                rec["max_kkt_violation"] = float(res.certificate.max_violation().max().item())
        records.append(rec)
    trs = next(r for r in records if r["solver"] == "trs" and r["setting"] is None)
    for rec in records:
        rec["ratio_to_trs"] = rec["seconds"] / trs["seconds"] if trs["seconds"] > 0 else math.nan
        rec["rel_gap_to_trs"] = relative_gap(rec["objective"], trs["objective"])
    others = [r for r in records if r["solver"] not in ("trs", "auto")]  # auto runs one of the others
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
        if rec["solver"] == "auto":
            rec.update(auto_comparison(rec, records))
    for rec in records:
        rec.update({k: v for k, v in case.info.items() if v is not None})
    return records


def auto_comparison(auto: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How ``auto``'s record compares with the alternative it did not choose, from the records of its case.

    The alternative of a ``trs`` choice is the ``pgd-matched`` setting (the cheapest tuned PGD within
    :data:`MATCH_RTOL` of TRS's objective) or, when none matched, the tuned PGD with the highest objective; the
    alternative of a ``pgd`` choice is the trust-region step (the lean ``trs`` row). Returns ``alternative``
    (its label), ``alternative_seconds``, ``alternative_objective``, ``objective_at_least`` (auto's objective
    is at least the alternative's, to ``MATCH_RTOL`` relative), ``time_at_most`` (auto's median time is at
    most the alternative's) and ``verdict``: ``"yes"`` when both hold, ``"dominated"`` when the alternative is
    better on both counts, ``"trade-off"`` otherwise. Pure function of the records.
    """
    choice = auto.get("choice")
    if choice == "pgd":
        alt = next((r for r in records if r["solver"] == "trs" and not r.get("setting")), None)
    else:
        pgd = [r for r in records if r["solver"] == "pgd" and r.get("seconds") is not None]
        trs = next((r for r in records if r["solver"] == "trs" and not r.get("setting")), None)
        alt = pgd_matched(pgd, trs["objective"]) if trs is not None else None
        if alt is None and pgd:
            alt = max(pgd, key=lambda r: r["objective"])
    if alt is None:
        return {"alternative": None, "verdict": "no alternative measured"}
    at_least = auto["objective"] >= alt["objective"] - MATCH_RTOL * abs(alt["objective"])
    at_most = auto["seconds"] <= alt["seconds"]
    verdict = "yes" if at_least and at_most else "dominated" if not at_least and not at_most else "trade-off"
    return {
        "alternative": record_label(alt),
        "alternative_seconds": alt["seconds"],
        "alternative_objective": alt["objective"],
        "objective_at_least": at_least,
        "time_at_most": at_most,
        "verdict": verdict,
    }


def record_label(rec: dict[str, Any]) -> str:
    """A record's solver with its setting, as in the tables: ``pgd[steps=10,rel_step=0.25]``, ``trs``."""
    return f"{rec['solver']}[{rec['setting']}]" if rec.get("setting") else rec["solver"]


@dataclass
class InnerBenchPlan:
    """What :func:`run_inner_bench` runs; :meth:`quick` and :meth:`full` give the two standard plans.

    ``models`` are names of :func:`bench_model`. ``dims``, ``radii`` and ``dtype``, when None, are each model's
    defaults (:data:`SHALLOW_DEFAULTS` for affine and one hidden layer, :data:`DEEP_DEFAULTS` for deeper
    models); given, they apply to every model. For deeper models with a smooth activation, ``dense_rows`` rows
    are also solved through the dense path at each dimension (:func:`fastfair.bench.deep.dense_per_row`; 0: not
    measured), and with ``memory`` the Krylov solve's peak-RSS growth is measured at the largest dimension
    (:func:`fastfair.bench.deep.krylov_peak_rss`). ``deep_n``, when set, is the batch size of the deeper models'
    cases instead of ``n`` (the quick plan's, to stay within a couple of minutes on a small machine).
    """

    models: tuple[str, ...] = (*MODELS, *DEEP_MODELS)
    dims: tuple[int, ...] | None = None
    n: int = 4096
    radii: tuple[float, ...] | None = None
    repeats: int = 7
    warmup: int = 1
    budget_s: float | None = 20.0
    dtype: str | None = None
    hidden: int = 16
    seed: int = 0
    pretrain_epochs: int = 2
    device: str = "cpu"
    quick: bool = False
    dense_rows: int = 64
    memory: bool = True
    deep_n: int | None = None

    @classmethod
    def full(cls, **overrides: Any) -> InnerBenchPlan:
        return cls(**overrides)

    @classmethod
    def quick_plan(cls, **overrides: Any) -> InnerBenchPlan:
        base = {
            "n": 4096,
            "deep_n": 1024,
            "repeats": 3,
            "budget_s": 1.5,
            "quick": True,
            "pretrain_epochs": 1,
            "dense_rows": 8,
        }
        base.update(overrides)
        return cls(**base)

    def n_of(self, spec: BenchModel) -> int:
        """The batch size of ``spec``'s cases."""
        return self.deep_n if spec.deep and self.deep_n is not None else self.n

    def cases(self) -> list[tuple[BenchModel, int, str, tuple[float, ...]]]:
        """(model, d, dtype, radii) of every case, in run order."""
        out = []
        for name in self.models:
            spec = bench_model(name, self.hidden)
            defaults = spec.defaults()
            dtype = self.dtype or defaults["dtype"]
            radii = tuple(self.radii or defaults["radii"])
            out += [(spec, d, dtype, radii) for d in (self.dims or defaults["dims"])]
        return out

    def solvers(self, spec: BenchModel | None = None) -> list[SolverSpec]:
        return default_solvers(self.quick, self.seed, deep=spec is not None and spec.deep)

    def measures_dense(self, spec: BenchModel) -> bool:
        """Whether the dense per-row comparison runs for ``spec`` (deeper models with a smooth activation)."""
        return self.dense_rows > 0 and spec.deep and spec.activation not in PIECEWISE_LINEAR_ACTIVATIONS

    def runs(self) -> int:
        """Number of timed runs (warm-ups included) at most: the length of the progress bar."""
        per_run = self.warmup + self.repeats
        total = 0
        for spec, _, _, radii in self.cases():
            total += len(radii) * (len(self.solvers(spec)) + 2 * self.measures_dense(spec)) * per_run
        return total

    def estimated_bytes(self) -> tuple[float, str]:
        """The largest :func:`estimated_case_bytes` over the plan's cases, and which case it is."""
        return max(
            (
                (
                    estimated_case_bytes(
                        spec.name,
                        self.n_of(spec),
                        d,
                        hidden=self.hidden,
                        dtype=dtype,
                        dense_rows=self.dense_rows if self.measures_dense(spec) else 0,
                    ),
                    f"{spec.name}, n={self.n_of(spec)}, d={d}",
                )
                for spec, d, dtype, _ in self.cases()
            ),
            key=lambda pair: pair[0],
        )

    def validate(self) -> InnerBenchPlan:
        require(
            isinstance(self.models, (list, tuple)) and len(self.models) > 0, "give at least one model"
        )
        if self.dtype is not None:
            check_setting("dtype", self.dtype)
        for m in self.models:
            bench_model(m, self.hidden)
        require(self.dims is None or len(self.dims) > 0, "give at least one dimension")
        require(self.radii is None or len(self.radii) > 0, "give at least one radius")
        for d in self.dims or ():
            require(isinstance(d, int) and d >= 1, f"dimensions must be positive integers, got {d!r}")
        for r in self.radii or ():
            require(r > 0 and math.isfinite(r), f"radii must be positive and finite, got {r!r}")
        for n in (self.n, self.deep_n if self.deep_n is not None else self.n):
            require(isinstance(n, int) and n >= 1, f"n must be a positive integer, got {n!r}")
        require(self.repeats >= 1, f"repeats must be a positive integer, got {self.repeats!r}")
        require(
            isinstance(self.dense_rows, int) and self.dense_rows >= 0,
            f"dense rows must be a non-negative integer, got {self.dense_rows!r}",
        )
        if self.budget_s is not None:
            require(self.budget_s > 0, f"budget must be positive, got {self.budget_s!r}")
        return self


def run_inner_bench(plan: InnerBenchPlan, *, progress: Any = None) -> list[dict[str, Any]]:
    """Run every case of ``plan``; return all records (:func:`compare_solvers`, and for deeper models the
    records of :mod:`fastfair.bench.deep`)."""
    from . import deep  # it builds on this module

    plan.validate()
    records: list[dict[str, Any]] = []
    largest = {}
    for spec, d, _, _ in plan.cases():
        largest[spec.name] = max(largest.get(spec.name, d), d)
    for spec, d, dtype, radii in plan.cases():
        case_args = {
            "model": spec.name,
            "d": d,
            "n": plan.n_of(spec),
            "hidden": plan.hidden,
            "seed": plan.seed,
            "dtype": dtype,
            "pretrain_epochs": plan.pretrain_epochs,
            "device": plan.device,
        }
        case = make_case(**case_args)
        solvers = plan.solvers(spec)
        for radius in radii:
            if progress is not None and hasattr(progress, "set_description"):
                progress.set_description(f"bench {spec.name} d={d} r={radius:g}")
            found = compare_solvers(
                case,
                radius,
                solvers,
                repeats=plan.repeats,
                warmup=plan.warmup,
                budget_s=plan.budget_s,
                progress=progress,
            )
            if plan.measures_dense(spec):
                if progress is not None and hasattr(progress, "set_description"):
                    progress.set_description(f"bench {spec.name} d={d}: dense path, {plan.dense_rows} rows")
                dense = deep.dense_per_row(
                    case,
                    radius,
                    plan.dense_rows,
                    found,
                    repeats=plan.repeats,
                    warmup=plan.warmup,
                    budget_s=plan.budget_s,
                    progress=progress,
                )
                found.append({**dense, **{k: v for k, v in case.info.items() if v is not None}})
            if plan.memory and spec.deep and d == largest[spec.name] and plan.device == "cpu":
                if progress is not None and hasattr(progress, "set_description"):
                    progress.set_description(f"bench {spec.name} d={d}: peak memory of one solve")
                memory = deep.krylov_peak_rss(case_args, radius, threads=torch.get_num_threads())
                found.append({**memory, **{k: v for k, v in case.info.items() if v is not None}})
            records += found
    return records
