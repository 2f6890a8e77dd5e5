"""Models, batches and solver settings shared by the inner-maximiser tests (imported by name: pytest puts
``tests/`` on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn

from fastfair.inner import InnerResult
from fastfair.models import MLP, Affine
from helpers import TwoHidden, bce_reference

DT = torch.float64


def affine(w, b=0.0, dtype=DT) -> Affine:
    w = torch.as_tensor(w, dtype=dtype)
    m = Affine(w.numel()).to(dtype)
    with torch.no_grad():
        m.linear.weight.copy_(w.reshape(1, -1))
        m.linear.bias.fill_(b)
    return m


def model(kind: str, d: int, seed: int = 0, dtype=DT, hidden: int = 3, scale: float = 2.0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "affine":
        m = Affine(d)
    else:
        m = MLP(d, hidden=hidden) if kind == "mlp" else TwoHidden(d, widths=(6, 3), activations=(nn.Tanh, nn.Sigmoid))
    m = m.to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def batch(n: int, d: int, seed: int = 1, dtype=DT) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, 2, (n,), generator=g).to(dtype)


def true_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return bce_reference(m(x), y)


def norms(res: InnerResult, x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(res.x_adv - x, dim=1)


SPECS = [
    ("trs", {}),
    ("trs", {"structured": False}),
    ("pgd", {}),
    ("pgd", {"random_start": True, "seed": 0, "steps": 5, "tol": 1e-3}),
    ("pgd-paper", {"max_iter": 50}),
    ("random", {"seed": 0}),
    ("random", {"mode": "ball", "seed": 0}),
]
SPEC_IDS = [f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in SPECS]
