"""Batches and measures shared by the Krylov TRS tests (imported by name: pytest puts ``tests/`` on
``sys.path``). The instances are :func:`trs_oracle.make_instance`'s, of every kind in :data:`trs_oracle.KINDS`.

Objective tolerance: ``|q - q*| <= tol max(|q*|, 1e-3 N)`` with ``N = ‖g‖r + ‖H‖₂r²`` the natural size of the
problem (relative to the optimal value, with a floor for instances whose optimum is far below their data).
"""

from __future__ import annotations

import numpy as np
import torch

from fastfair.trs import KrylovTRSResult
from trs_oracle import KINDS, make_instance


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
