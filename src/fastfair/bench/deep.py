"""The deeper models' extra measurements: the dense path per row, and the memory of one Krylov solve.

A model with no structured quadratic model of its own (any network other than the affine and one-hidden-layer
built-ins) has its trust-region subproblem solved by the Krylov (GLTR) solver from per-row Hessian-vector
products. Before that solver existed such a model took the dense path: the full (n, d, d) input Hessian through
``torch.func`` and a batched eigendecomposition, O(n·d²) memory and O(n·d³) time. Two measurements put numbers
on the difference:

* :func:`dense_per_row` -- ``make_inner("trs", structured=False).perturb`` (the dense path, certified, the call
  a user made) on the first ``rows`` rows of the case, against the Krylov path: seconds per row of each (the
  Krylov figure from the whole batch, where its per-row cost is what training pays), their ratio, and the
  objective both reach on the same rows (both maximise the same quadratic model exactly, so the two agree to the
  solvers' tolerances).
* :func:`krylov_peak_rss` -- the growth of the resident set (peak minus the level before) of one
  ``make_inner("trs", certify=False).perturb`` call on the whole batch, measured in a fresh Python process that
  rebuilds the same case (:func:`fastfair.bench.inner.make_case` is deterministic), so that memory the allocator
  kept from earlier cases cannot hide part of it. The first call of the process is measured: one-time set-up is
  counted, which can only overstate the growth. The peak is read from Linux's ``VmHWM`` (reset through
  ``/proc/self/clear_refs``) and from a thread sampling the resident set every millisecond (``psutil`` where it
  is installed, else ``/proc/self/statm``); the larger is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import FastfairError
from ..inner import make_inner
from .inner_cases import BenchCase, make_case, mean_loss, relative_gap
from .scaling import PeakMemory
from .timing import interleaved

#: Seconds between two samples of the resident set while a solve runs.
SAMPLE_INTERVAL_S = 1e-3
#: The child process of :func:`krylov_peak_rss` gives up after this long (the case is rebuilt there).
CHILD_TIMEOUT_S = 1800.0


def dense_per_row(
    case: BenchCase,
    radius: float,
    rows: int,
    records: list[dict[str, Any]],
    *,
    repeats: int = 3,
    warmup: int = 1,
    budget_s: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """The dense path on the first ``rows`` rows of ``case``, per row against the Krylov path; one record.

    ``records`` are the case's records from :func:`fastfair.bench.inner.compare_solvers`: the lean ``trs`` row
    and ``trs[certified]`` give the Krylov seconds per row on the whole batch. Both paths are also run on the
    same ``rows`` rows (interleaved, ``repeats`` times within ``budget_s``), for the objectives compared.
    """
    rows = min(rows, case.n)
    x, y = case.x[:rows], case.y[:rows]
    dense, krylov = make_inner("trs", structured=False), make_inner("trs", certify=False)
    timings = interleaved(
        {
            "dense": lambda: dense.perturb(case.model, x, y, radius),
            "krylov": lambda: krylov.perturb(case.model, x, y, radius),
        },
        repeats=repeats,
        warmup=warmup,
        budget_s=budget_s,
        device=case.x.device,
        progress=progress,
    )
    res, same_rows = timings["dense"].result, timings["krylov"].result
    lean = next(r for r in records if r["solver"] == "trs" and not r.get("setting"))
    certified = next((r for r in records if r["solver"] == "trs" and r.get("setting") == "certified"), None)
    per_row = timings["dense"].median / rows
    lean_per_row = lean["seconds"] / lean["n"]
    rec: dict[str, Any] = {
        "model": case.model_name,
        "solver": "trs-dense",
        "setting": f"structured=False, first {rows} rows",
        "n": rows,
        "d": case.d,
        "case_n": case.n,
        "radius": float(radius),
        "dtype": str(case.x.dtype).replace("torch.", ""),
        "seconds": timings["dense"].median,
        "repeats": timings["dense"].repeats,
        "warmup_counted": timings["dense"].warmup_counted,
        "objective": mean_loss(res.loss),
        "path": res.extras.get("path"),
        "krylov_path": same_rows.extras.get("path"),
        "krylov_objective_same_rows": mean_loss(same_rows.loss),
        "krylov_seconds_same_rows": timings["krylov"].median,
        "objective_rel_gap": relative_gap(mean_loss(res.loss), mean_loss(same_rows.loss)),
        "seconds_per_row": per_row,
        "trs_seconds_per_row": lean_per_row,
        "per_row_speedup": per_row / lean_per_row if lean_per_row > 0 else None,
    }
    if certified is not None:
        certified_per_row = certified["seconds"] / certified["n"]
        rec["trs_certified_seconds_per_row"] = certified_per_row
        rec["per_row_speedup_certified"] = per_row / certified_per_row if certified_per_row > 0 else None
    if res.certificate is not None:
        rec["max_kkt_violation"] = float(res.certificate.max_violation().max().item())
    return rec


def krylov_peak_rss(case_args: dict[str, Any], radius: float, *, threads: int | None = None) -> dict[str, Any]:
    """Peak-RSS growth of one lean TRS solve of the case ``case_args`` (the keyword arguments of
    :func:`fastfair.bench.inner.make_case`, with ``model``, ``d`` and ``n``), in a fresh process; one record.

    Raises :class:`FastfairError` when the child process fails (its last line of error output is quoted).
    """
    request = {"case": case_args, "radius": float(radius), "threads": threads or torch.get_num_threads()}
    package_root = str(Path(__file__).resolve().parents[2])  # the fastfair this process runs, not another
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", "from fastfair.bench.deep import _child_main; _child_main()"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise FastfairError(f"the memory measurement's process failed (exit {proc.returncode}): {last}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    args = case_args
    return {
        "model": args["model"],
        "solver": "trs-memory",
        "setting": "one lean solve, fresh process",
        "n": args["n"],
        "d": args["d"],
        "radius": float(radius),
        "dtype": args.get("dtype"),
        "threads": request["threads"],
        **measured,
    }


def _child_main() -> None:
    """The child of :func:`krylov_peak_rss`: read the request (JSON) on stdin, print the measurement (JSON)."""
    request = json.loads(sys.stdin.read())
    torch.set_num_threads(int(request["threads"]))
    case = make_case(**request["case"])
    inner = make_inner("trs", certify=False)
    sampler = _RSSSampler()
    with PeakMemory() as hwm, sampler:
        start = time.perf_counter()
        res = inner.perturb(case.model, case.x, case.y, request["radius"])
        seconds = time.perf_counter() - start
    growth = [g for g in (hwm.value, sampler.growth_mb) if g is not None]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "objective": mean_loss(res.loss),
                "path": res.extras.get("path"),
                "rss_before_mb": sampler.base_mb,
                "rss_growth_mb": max(growth) if growth else None,
                "rss_growth_vmhwm_mb": hwm.value,
                "rss_growth_sampled_mb": sampler.growth_mb,
            }
        )
    )


class _RSSSampler:
    """Highest resident set seen by a thread sampling every :data:`SAMPLE_INTERVAL_S` inside the block, minus
    the level at its start, in MiB (``growth_mb``; None where the resident set cannot be read)."""

    def __init__(self) -> None:
        self.base_mb: float | None = None
        self.growth_mb: float | None = None
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_bytes() -> int | None:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            pass
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.rss_bytes() or 0)
            time.sleep(SAMPLE_INTERVAL_S)

    def __enter__(self) -> _RSSSampler:
        base = self.rss_bytes()
        if base is not None:
            self.base_mb = base / 2**20
            self._peak = base
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.base_mb is None:
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.rss_bytes() or 0)
        self.growth_mb = max(0.0, self._peak / 2**20 - self.base_mb)
