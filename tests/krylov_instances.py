"""Instances and measures shared by the Krylov TRS tests (imported by name: pytest puts ``tests/`` on
``sys.path``).

Objective tolerance: ``|q - q*| <= tol max(|q*|, 1e-3 N)`` with ``N = ‖g‖r + ‖H‖₂r²`` the natural size of the
problem (relative to the optimal value, with a floor for instances whose optimum is far below their data).
"""

from __future__ import annotations

import numpy as np
import torch

from fastfair.trs import KrylovTRSResult

KINDS = (
    "easy",
    "psd_boundary",
    "interior",
    "negdef",
    "hard",
    "hard_repeated",
    "near_hard",
    "repeated_min",
    "psd_singular_hard",
    "rank_one",
    "zero_grad",
    "zero_hess",
    "wild",
)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10 ** rng.uniform(lo, hi))


def make_instance(rng: np.random.Generator, kind: str, d: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(g, H, r)`` of the given kind: ``H = Q diag(w) Qᵀ``, ``g = Q c`` with a random orthogonal ``Q``, sizes of
    ``H`` from 1e-3 to 1e3 and radii from 1e-8 to 1e8."""
    q, rr = np.linalg.qr(rng.standard_normal((d, d)))
    Q = q * np.sign(np.diag(rr))
    hs = log_uniform(rng, -3, 3)
    r = log_uniform(rng, -8, 8)
    w = rng.standard_normal(d) * hs
    c = rng.standard_normal(d)
    if kind == "easy":  # indefinite, ‖g‖/r comparable to ‖H‖
        c *= hs * r * log_uniform(rng, -1, 1)
    elif kind == "psd_boundary":  # H ≻ 0, Newton step too long
        w = np.abs(w) + 0.1 * hs
        c *= hs * r
        r = float(np.linalg.norm(c / w)) * rng.uniform(0.05, 0.95)
    elif kind == "interior":
        w = np.abs(w) + 0.1 * hs
        c *= hs * r
        r = float(np.linalg.norm(c / w)) * rng.uniform(1.05, 10.0)
    elif kind == "negdef":
        w = -np.abs(w) - 0.01 * hs
        c *= hs * r * log_uniform(rng, -3, 3)
    elif kind in ("hard", "hard_repeated", "near_hard", "psd_singular_hard"):
        m = 1 if kind != "hard_repeated" else min(3, max(1, d - 1))
        w = np.sort(w)
        lam1 = 0.0 if kind == "psd_singular_hard" else -abs(w[0]) - 0.1 * hs
        w[:m] = lam1
        w[m:] = np.maximum(w[m:], lam1 + 0.05 * hs)
        c[:m] = 0.0  # g ⟂ eigenspace of λ₁
        if d > m:  # ‖p(-λ₁)‖ = ρ r with ρ < 1: the hard case proper
            c *= r * rng.uniform(0.1, 0.95) / np.linalg.norm(c[m:] / (w[m:] - lam1))
        if kind == "near_hard":  # tiny, non-zero weight on q₁
            c[0] = rng.choice([-1.0, 1.0]) * max(np.linalg.norm(c), hs * r) * log_uniform(rng, -9, -4)
    elif kind == "repeated_min":
        m = min(3, d)
        w = np.sort(w)
        w[:m] = w[0]
        c *= hs * r
    elif kind == "rank_one":
        a = rng.standard_normal(d)
        H = rng.choice([-1.0, 1.0]) * hs * np.outer(a, a)
        g = rng.standard_normal(d) * hs * r * log_uniform(rng, -2, 2)
        if rng.uniform() < 0.3:
            g = a * rng.standard_normal() * hs * r
        return g, H, r
    elif kind == "zero_grad":
        if rng.uniform() < 0.5:
            w = np.abs(w)
        c[:] = 0.0
    elif kind == "zero_hess":
        w[:] = 0.0
        c *= log_uniform(rng, -6, 6)
    elif kind == "wild":  # unrelated scales of g, H and r
        w *= log_uniform(rng, -12, 12) / hs
        c *= log_uniform(rng, -12, 12)
    else:  # pragma: no cover
        raise ValueError(kind)
    H = (Q * w) @ Q.T
    return Q @ c, 0.5 * (H + H.T), r


def batch(d: int, seed: int, per_kind: int, kinds: tuple[str, ...] = KINDS):
    rng = np.random.default_rng(seed)
    inst = [(kind, *make_instance(rng, kind, d)) for kind in kinds for _ in range(per_kind)]
    g = torch.tensor(np.stack([i[1] for i in inst]))
    H = torch.tensor(np.stack([i[2] for i in inst]))
    r = torch.tensor([i[3] for i in inst])
    return [i[0] for i in inst], g, H, r


def dense_hvp(H: torch.Tensor):
    return lambda V: (H @ V.unsqueeze(-1)).squeeze(-1)


def natural_scale(g: torch.Tensor, H: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(g, dim=-1) * r + torch.linalg.matrix_norm(H, ord=2) * r * r


def objective_error(q: torch.Tensor, q_star: torch.Tensor, g, H, r) -> torch.Tensor:
    """``|q - q*| / max(|q*|, 1e-3 N)`` (0 where both are 0: g = 0 and H ⪰ 0 or H = 0)."""
    floor = torch.maximum(q_star.abs(), 1e-3 * natural_scale(g, H, r))
    diff = (q - q_star).abs()
    return torch.where(diff == 0, torch.zeros_like(diff), diff / floor)


def q_of(g: torch.Tensor, H: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """gᵀp + ½pᵀHp per row, in float64."""
    g, H, p = g.double(), H.double(), p.double()
    return (g * p).sum(-1) + 0.5 * (p * (H @ p.unsqueeze(-1)).squeeze(-1)).sum(-1)


def assert_sound(res: KrylovTRSResult, r: torch.Tensor) -> None:
    """Never NaN, never outside the ball (in the result's own dtype)."""
    assert torch.isfinite(res.step).all()
    assert torch.isfinite(res.multiplier).all()
    assert (torch.linalg.vector_norm(res.step, dim=-1) <= r.to(res.step.dtype)).all()
    assert (res.multiplier >= 0).all()
