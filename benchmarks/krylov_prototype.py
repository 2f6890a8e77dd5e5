"""Prototype benchmark of the Krylov (GLTR) TRS on a deep model, against normalised-gradient PGD.

Not wired into the CLI. On a 3-layer tanh MLP (widths 128, 64, 1) with random standardised inputs (d = 784 and
d = 100, n = 4096 by default), briefly fitted (non-robust) to a planted linear rule so that the points are
not all at the decision boundary, it measures in one process, alternating the methods, medians of
``--repeats`` runs:

* the two ways to get per-row Hessian-vector products (:mod:`fastfair.input_hvp`): building the operator
  (forward + backward) and one product, double backward against forward-over-reverse (``torch.func.jvp``);
* ``solve_trs_krylov`` on the loss's quadratic model (maximised: ``g = -∇L``, ``H = -∇²L``), including the
  operator build, for a few ``probe_iter`` values: seconds, products per row, attained objective (mean true
  loss at ``x + p``);
* optionally (``--generic-n N``) the existing generic TRS path, ``make_inner("trs").perturb`` (the full
  ``(n, d, d)`` input Hessian through ``torch.func`` and one dense eigendecomposition), on the first ``N`` rows
  only (it cannot run on the whole batch at d = 784), compared per row;
* PGD with ``k`` normalised-gradient steps of ``0.25 r`` and projection (from ``x``; the best iterate per row),
  for several ``k``: seconds and attained objective; "pgd-matched" is the cheapest ``k`` whose objective is
  within ``--match`` (relative) of the TRS objective, or at least it.

Same batch, same weights for every method. Usage::

    PYTHONPATH=src python benchmarks/krylov_prototype.py --threads 1 [--n 4096] [--dims 784 100] [--repeats 4]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch import Tensor, nn

from fastfair.derivatives import logistic_loss
from fastfair.input_hvp import input_hessian
from fastfair.krylov_trs import solve_trs_krylov


def build_problem(d: int, n: int, seed: int) -> tuple[nn.Module, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, generator=gen)
    flip = torch.rand(n, generator=gen) < 0.1
    y = ((x @ w > 0) ^ flip).float()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        logistic_loss(model(x).squeeze(-1), y).mean().backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x, y


def mean_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float(logistic_loss(model(x).squeeze(-1), y).mean())


def pgd(model: nn.Module, x: Tensor, y: Tensor, r: float, steps: int) -> Tensor:
    """``steps`` normalised-gradient ascent steps of ``0.25 r`` with projection; the best iterate per row."""
    delta = torch.zeros_like(x)
    best = delta.clone()
    with torch.no_grad():
        best_loss = logistic_loss(model(x).squeeze(-1), y)
    for _ in range(steps):
        xv = (x + delta).requires_grad_(True)
        loss = logistic_loss(model(xv).squeeze(-1), y)
        (g,) = torch.autograd.grad(loss.sum(), xv)
        with torch.no_grad():
            better = loss > best_loss
            best = torch.where(better.unsqueeze(-1), delta, best)
            best_loss = torch.where(better, loss, best_loss)
            gn = torch.linalg.vector_norm(g, dim=-1, keepdim=True)
            delta = delta + 0.25 * r * g / torch.where(gn > 0, gn, 1.0)
            dn = torch.linalg.vector_norm(delta, dim=-1, keepdim=True)
            delta = delta * torch.clamp(r / torch.where(dn > 0, dn, 1.0), max=1.0)
    with torch.no_grad():
        last = logistic_loss(model(x + delta).squeeze(-1), y)
        delta = torch.where((last > best_loss).unsqueeze(-1), delta, best)
    return x + delta


def trs(model: nn.Module, x: Tensor, y: Tensor, r: float, probe_iter: int, method: str) -> tuple[Tensor, dict]:
    op = input_hessian(model, x, y, method=method).neg()  # maximise the loss: minimise -L's model
    res = solve_trs_krylov(op.grad, op, r, probe_iter=probe_iter)
    info = {
        "products": float(res.iterations.float().mean()),
        "max_products": int(res.iterations.max()),
        "converged": float(res.converged.float().mean()),
        "hard": int(res.hard_case.sum()),
    }
    return x + res.step, info


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--dims", type=int, nargs="+", default=[784, 100])
    ap.add_argument("--radius", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--probes", type=int, nargs="+", default=[0, 1, 10])
    ap.add_argument("--pgd-steps", type=int, nargs="+", default=[3, 5, 10, 20, 40])
    ap.add_argument("--match", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generic-n", type=int, default=0, help="rows for the generic dense-Hessian path (0: skip)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = args.radius
    print(f"threads={args.threads} n={args.n} r={r} float32, medians of {args.repeats} interleaved runs")
    for d in args.dims:
        model, x, y = build_problem(d, args.n, args.seed)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\n== d = {d}: clean loss {mean_loss(model, x, y):.6f}")
        # per-row HVPs: the two methods
        V = torch.randn_like(x)
        hv_times: dict[str, list[float]] = {"double-backward": [], "jvp": []}
        for _ in range(args.repeats):
            for method in hv_times:
                t0 = time.perf_counter()
                op = input_hessian(model, x, y, method=method)
                t1 = time.perf_counter()
                op(V)
                t2 = time.perf_counter()
                hv_times[method].append((t1 - t0, t2 - t1))
        for method, ts in hv_times.items():
            build = statistics.median(t[0] for t in ts)
            prod = statistics.median(t[1] for t in ts)
            print(f"  hvp {method:16s} build {build * 1e3:7.1f} ms   one product {prod * 1e3:7.1f} ms")
        # TRS and PGD, interleaved
        runs: dict[str, list[float]] = {}
        objective: dict[str, float] = {}
        infos: dict[str, dict] = {}
        for _ in range(args.repeats):
            for p in args.probes:
                key = f"trs probe={p}"
                t, (xa, info) = timed(trs, model, x, y, r, p, "double-backward")
                runs.setdefault(key, []).append(t)
                objective[key] = mean_loss(model, xa, y)
                infos[key] = info
            for k in args.pgd_steps:
                key = f"pgd {k} steps"
                t, xa = timed(pgd, model, x, y, r, k)
                runs.setdefault(key, []).append(t)
                objective[key] = mean_loss(model, xa, y)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.generic_n:
            from fastfair.inner import make_inner

            k = args.generic_n
            t, out = timed(make_inner("trs").perturb, model, x[:k], y[:k], r)
            krylov = statistics.median(runs[f"trs probe={args.probes[0]}"]) / args.n
            print(
                f"  generic path, {k} rows: {t:.2f} s = {t / k * 1e3:.1f} ms/row "
                f"(path {out.extras['path']}); krylov probe={args.probes[0]}: {krylov * 1e3:.3f} ms/row, "
                f"ratio {t / k / krylov:.0f}x"
            )
        for key, ts in runs.items():
            extra = ""
            if key in infos:
                i = infos[key]
                extra = (
                    f"  products/row {i['products']:.2f} (max {i['max_products']}), converged {i['converged']:.3f}"
                    f", hard {i['hard']}"
                )
            print(f"  {key:16s} {statistics.median(ts) * 1e3:8.1f} ms   objective {objective[key]:.9f}{extra}")
        for p in args.probes:
            key = f"trs probe={p}"
            target = objective[key]
            match = [k for k in args.pgd_steps if objective[f"pgd {k} steps"] >= target * (1 - args.match)]
            if match:
                k = min(match)
                ratio = statistics.median(runs[f"pgd {k} steps"]) / statistics.median(runs[key])
                print(f"  {key}: pgd-matched = pgd {k} steps, pgd-matched / trs = {ratio:.2f}")
            else:
                print(f"  {key}: no PGD run among {args.pgd_steps} steps matches its objective")
        print(f"  peak RSS {rss0:.0f} MB before the runs, {rss1:.0f} MB after")


if __name__ == "__main__":
    main()
