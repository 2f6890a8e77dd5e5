"""Scaling: time (and peak memory) of the TRS paths and the derivative backends against n and against d.

Methods (each timed as one call on a batch of n samples in d dimensions, model weights from a seed):

* ``trs affine closed-form`` -- ``make_inner("trs", certify=False)`` on the affine model: O(n·d);
* ``trs affine generic`` -- ``structured=False``: analytic (n, d, d) Hessian + :func:`~fastfair.trs.solve_trs_fast`
  (fixed-point products, O(n·d²) each; ``eigh``, O(n·d³), for the rows the fixed point cannot certify);
* ``trs mlp subspace`` -- the MLP (h=16) on its row-space path (used when d > h; below that the method is the
  generic path, and the record's ``path`` says so): O(n·h·d), the reduced Hessian kept factored;
* ``trs mlp generic`` -- ``structured=False`` on the MLP: as the affine generic path;
* ``derivatives analytic`` / ``derivatives torch.func`` -- :func:`fastfair.derivatives.loss_input_derivatives`
  of the MLP with ``hessian=True``: closed forms vs ``vmap(jacfwd(grad))``, both O(n·d²) memory.

Two sweeps: n from 1e2 to 1e6 at fixed d, and d from 2 to 1000 at fixed n. At every point all methods are
timed interleaved (warm-up, then round-robin repeats; median). A point is **skipped, with the reason
recorded**, when its estimated memory exceeds ``memory_budget_gb`` (an (n, d, d) float tensor is held several
times over by the generic paths) or when the time predicted from the previous point of the same series exceeds
``point_budget_s``. Peak memory is the rise of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) during the warm-up run, a coarse lower bound (memory the allocator already holds is
not counted); ``None`` where that is not available. ``est_mb`` is the estimate used for skipping.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import check_setting
from ..derivatives import dense_is_cheaper, loss_input_derivatives
from ..errors import require
from ..inner import make_inner
from ..models import build_model
from ..training import DTYPES
from .render import fmt_seconds, markdown_table, text_table
from .timing import interleaved


@dataclass(frozen=True)
class Method:
    """One scaling contender: its name, the model it runs on, and how its cost grows."""

    name: str
    model: str  # "affine" or "mlp"
    kind: str  # "trs" or "derivatives"
    options: tuple[tuple[str, Any], ...]
    memory_factor: float  # bytes ≈ factor · itemsize · (n·d² if dense else n·d)
    dense: bool  # holds (n, d, d) tensors
    d_exponent: float  # time ∝ d^exponent (for the skip prediction)

    def make(self, hidden: int) -> Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], Any]:
        opts = dict(self.options)
        if self.kind == "trs":
            inner = make_inner("trs", **opts)
            return lambda model, x, y: inner.perturb(model, x, y, 0.1)
        return lambda model, x, y: loss_input_derivatives(model, x, y, hessian=True, **opts)


METHODS: tuple[Method, ...] = (
    Method("trs affine closed-form", "affine", "trs", (("certify", False),), 6, False, 1),
    Method("trs affine generic", "affine", "trs", (("certify", False), ("structured", False)), 8, True, 3),
    Method("trs mlp subspace", "mlp", "trs", (("certify", False),), 8, False, 1),
    Method("trs mlp generic", "mlp", "trs", (("certify", False), ("structured", False)), 8, True, 3),
    Method("derivatives analytic", "mlp", "derivatives", (("backend", "analytic"),), 4, True, 2),
    Method("derivatives torch.func", "mlp", "derivatives", (("backend", "func"),), 8, True, 2),
)


@dataclass
class ScalingPlan:
    """The two sweeps and their limits; :meth:`quick_plan` is the one-minute version."""

    n_values: tuple[int, ...] = (100, 1_000, 10_000, 100_000, 1_000_000)
    n_sweep_d: int = 20
    d_values: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
    d_sweep_n: int = 1_000
    hidden: int = 16
    repeats: int = 3
    warmup: int = 1
    dtype: str = "float32"
    seed: int = 0
    memory_budget_gb: float = 2.0
    point_budget_s: float = 10.0
    methods: tuple[str, ...] = tuple(m.name for m in METHODS)

    @classmethod
    def quick_plan(cls, **overrides: Any) -> ScalingPlan:
        base = {
            "n_values": (100, 1_000, 10_000, 100_000),
            "d_values": (2, 10, 50, 200, 1000),
            "d_sweep_n": 500,
            "repeats": 1,
            "memory_budget_gb": 0.5,
            "point_budget_s": 1.0,
        }
        base.update(overrides)
        return cls(**base)

    def validate(self) -> ScalingPlan:
        names = {m.name for m in METHODS}
        for name in self.methods:
            require(name in names, f"unknown scaling method {name!r}; choose from {', '.join(sorted(names))}")
        check_setting("dtype", self.dtype)
        for v in (*self.n_values, *self.d_values, self.n_sweep_d, self.d_sweep_n):
            require(isinstance(v, int) and v >= 1, f"sizes must be positive integers, got {v!r}")
        require(self.repeats >= 1, "repeats must be a positive integer")
        require(self.memory_budget_gb > 0 and self.point_budget_s > 0, "budgets must be positive")
        return self

    def points(self) -> list[tuple[str, int, int]]:
        """(sweep, n, d) for every point, n-sweep first."""
        return [("n", n, self.n_sweep_d) for n in self.n_values] + [
            ("d", self.d_sweep_n, d) for d in self.d_values
        ]


def estimated_bytes(method: Method, n: int, d: int, hidden: int, itemsize: int) -> float:
    """Rough peak memory of one call: dense methods hold a few (n, d, d) tensors, structured ones (n, d) and
    either (n, k, k) reduced Hessians (small k) or (n, h) factors. Used only to decide what to skip."""
    if method.dense:
        return method.memory_factor * itemsize * n * d * d
    reduced = 0
    if method.model == "mlp":
        k = min(hidden, d)
        reduced = n * k * k if dense_is_cheaper(hidden, k) else n * hidden
    return method.memory_factor * itemsize * (n * d + reduced)


def predicted_seconds(
    previous: tuple[int, int, float] | None, n: int, d: int, d_exponent: float
) -> float | None:
    """Extrapolate the time at (n, d) from the last measured point (n₀, d₀, t₀) of the same series:
    t₀ · (n/n₀) · (d/d₀)^d_exponent. Pure."""
    if previous is None:
        return None
    n0, d0, t0 = previous
    return t0 * (n / n0) * (d / d0) ** d_exponent


class PeakMemory:
    """Peak-RSS rise during a block (Linux only; ``value`` is None elsewhere or when not permitted)."""

    def __init__(self) -> None:
        self.value: float | None = None
        self._base: int | None = None

    @staticmethod
    def _status(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._base = self._status("VmRSS")
        except OSError:
            self._base = None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = self._status("VmHWM")
        if self._base is not None and peak is not None:
            self.value = max(0.0, (peak - self._base) / 2**20)


def _inputs(model_name: str, n: int, d: int, hidden: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    y = (torch.rand(n, generator=gen) < 0.5).to(dtype)
    model = build_model(model_name, d, hidden=hidden, seed=seed, dtype=dtype)
    return model, x, y


def run_scaling(plan: ScalingPlan, *, progress: Any = None) -> list[dict[str, Any]]:
    """Both sweeps; one record per (sweep, method, point), skipped points included (``skipped``: why)."""
    plan.validate()
    methods = [m for m in METHODS if m.name in plan.methods]
    dtype = DTYPES[plan.dtype]
    itemsize = torch.empty((), dtype=dtype).element_size()
    budget = plan.memory_budget_gb * 2**30
    last: dict[tuple[str, str], tuple[int, int, float]] = {}
    records: list[dict[str, Any]] = []
    # one-time costs (torch.func's first transform takes seconds) must not be timed as the first point
    for m in methods:
        model, x, y = _inputs(m.model, 8, 3, plan.hidden, dtype, plan.seed)
        m.make(plan.hidden)(model, x, y)
    for sweep, n, d in plan.points():
        if progress is not None and hasattr(progress, "set_description"):
            progress.set_description(f"scaling {sweep}: n={n} d={d}")
        runnable, calls = [], {}
        inputs = {}
        for m in methods:
            rec: dict[str, Any] = {
                "sweep": sweep,
                "method": m.name,
                "model": m.model,
                "n": n,
                "d": d,
                "dtype": plan.dtype,
                "seconds": None,
                "per_sample_us": None,
                "peak_mb": None,
                "repeats": 0,
                "path": None,
                "skipped": None,
            }
            est = estimated_bytes(m, n, d, plan.hidden, itemsize)
            rec["est_mb"] = est / 2**20
            pred = predicted_seconds(last.get((sweep, m.name)), n, d, m.d_exponent if sweep == "d" else 0.0)
            if est > budget:
                rec["skipped"] = (
                    f"estimated memory {est / 2**30:.1f} GiB > budget {plan.memory_budget_gb:g} GiB"
                )
            elif pred is not None and pred > plan.point_budget_s:
                rec["skipped"] = f"predicted {pred:.3g} s > budget {plan.point_budget_s:g} s per call"
            elif (sweep, m.name) in {(k[0], k[1]) for k, r in _skipped_series(records)}:
                rec["skipped"] = "a smaller size of this series was already skipped"
            else:
                if m.model not in inputs:
                    inputs[m.model] = _inputs(m.model, n, d, plan.hidden, dtype, plan.seed)
                model, x, y = inputs[m.model]
                fn = m.make(plan.hidden)
                calls[m.name] = lambda fn=fn, model=model, x=x, y=y: fn(model, x, y)
                runnable.append(rec)
            records.append(rec)
            if progress is not None and rec["skipped"] is not None:
                progress.update(plan.warmup + plan.repeats)
        if not calls:
            continue
        peaks: dict[str, float | None] = {}

        def measured(name: str, call: Callable[[], Any], peaks: dict = peaks) -> Callable[[], Any]:
            def run() -> Any:
                if name in peaks:
                    return call()
                with PeakMemory() as mem:
                    value = call()
                peaks[name] = mem.value
                return value

            return run

        timings = interleaved(
            {name: measured(name, call) for name, call in calls.items()},
            repeats=plan.repeats,
            warmup=plan.warmup,
            budget_s=plan.point_budget_s * plan.repeats,
            progress=progress,
        )
        for rec in runnable:
            t = timings[rec["method"]]
            rec["seconds"] = t.median
            rec["per_sample_us"] = t.median / n * 1e6
            rec["peak_mb"] = peaks.get(rec["method"])
            rec["repeats"] = t.repeats
            value = t.result
            extras = getattr(value, "extras", None)
            rec["path"] = extras.get("path") if isinstance(extras, dict) else None
            last[(sweep, rec["method"])] = (n, d, t.median)
        del inputs, calls, timings
    return records


def _skipped_series(records: Sequence[dict[str, Any]]):
    for r in records:
        if r["skipped"] is not None:
            yield (r["sweep"], r["method"]), r


# ----------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------


def render_scaling(records: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """One table per sweep: methods as rows, sizes as columns, median time per call (``skip`` where skipped),
    then the skip reasons and peak memory of the largest measured point per method."""
    table = markdown_table if markdown else text_table
    out: list[str] = []
    for sweep, fixed in (("n", "d"), ("d", "n")):
        recs = [r for r in records if r["sweep"] == sweep]
        if not recs:
            continue
        sizes = sorted({r[sweep] for r in recs})
        fixed_value = recs[0][fixed]
        methods = list(dict.fromkeys(r["method"] for r in recs))
        rows = []
        for m in methods:
            by_size = {r[sweep]: r for r in recs if r["method"] == m}
            row = [m]
            for s in sizes:
                r = by_size.get(s)
                row.append("skip" if r is None or r["seconds"] is None else fmt_seconds(r["seconds"]))
            rows.append(row)
        header = ["method", *[f"{sweep}={_size(s)}" for s in sizes]]
        title = f"time per call vs {sweep} ({fixed}={fixed_value}, {recs[0]['dtype']})"
        out += [("### " if markdown else "") + title, "", table(header, rows), ""]
        notes = []
        for m in methods:
            mine = [r for r in recs if r["method"] == m]
            done = [r for r in mine if r["seconds"] is not None]
            skipped = [r for r in mine if r["skipped"]]
            paths = sorted({r["path"] for r in done if r["path"]})
            text = f"- {m}"
            if paths:
                text += f" (path: {', '.join(paths)})"
            if done:
                big = done[-1]
                if big["peak_mb"] is not None:
                    text += f"; peak memory at {sweep}={_size(big[sweep])}: {big['peak_mb']:.0f} MiB"
            if skipped:
                text += f"; skipped from {sweep}={_size(skipped[0][sweep])}: {skipped[0]['skipped']}"
            notes.append(text)
        out += [*notes, ""]
    return "\n".join(out).rstrip() + "\n"


def _size(v: int) -> str:
    if v >= 1000 and math.log10(v).is_integer():
        return f"1e{int(math.log10(v))}"
    return str(v)


def scaling_figure(records: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """A log-log PNG, time per call against n (left) and against d (right), one line per method."""
    import matplotlib  # here, not at the top: only the figure needs it, and it takes a while to load

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, sweep, fixed in ((axes[0], "n", "d"), (axes[1], "d", "n")):
        recs = [r for r in records if r["sweep"] == sweep and r["seconds"] is not None]
        for m in dict.fromkeys(r["method"] for r in records if r["sweep"] == sweep):
            pts = sorted((r[sweep], r["seconds"]) for r in recs if r["method"] == m)
            if pts:
                style = "--" if "generic" in m or "func" in m else "-"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3, label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(sweep)
        ax.set_ylabel("seconds per call (median)")
        fixed_values = {r[fixed] for r in records if r["sweep"] == sweep}
        ax.set_title(
            f"time vs {sweep}" + (f" ({fixed}={fixed_values.pop()})" if len(fixed_values) == 1 else "")
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def records_csv(records: Sequence[dict[str, Any]]) -> str:
    """Records as CSV text (columns: the union of the keys, in first-seen order)."""
    return pd.DataFrame(list(records)).to_csv(index=False)
