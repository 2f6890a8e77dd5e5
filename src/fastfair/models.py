"""Classifier models: torch modules mapping features (n, d) to one logit per sample (n,).

Two built-in families, both with analytic input-derivative fast paths (see :mod:`fastfair.derivatives`):

* :class:`Affine` -- logistic regression, f(x) = wᵀx + b.
* :class:`MLP` -- one hidden layer, f(x) = vᵀφ(Wx + b) + c with φ in {tanh, sigmoid, softplus}.

Any other ``nn.Module`` that maps (n, d) to (n,) logits is accepted everywhere; it is served by the generic
``torch.func`` derivative path.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import FastfairError

ACTIVATIONS = ("tanh", "sigmoid", "softplus")
MODELS = ("affine", "mlp")


class Affine(nn.Module):
    """Logistic regression: logit f(x) = wᵀx + b."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    """One hidden layer: logit f(x) = vᵀφ(Wx + b) + c, with W of shape (hidden, d)."""

    def __init__(self, d: int, hidden: int = 16, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise FastfairError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.hidden = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, 1)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        """φ(z) for the configured activation."""
        if self.activation == "tanh":
            return torch.tanh(z)
        if self.activation == "sigmoid":
            return torch.sigmoid(z)
        return nn.functional.softplus(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x))).squeeze(-1)


def build_model(
    name: str,
    d: int,
    *,
    hidden: int = 16,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Build a named model with deterministic initial weights drawn from ``seed``."""
    if name not in MODELS:
        raise FastfairError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if hidden < 1:
        raise FastfairError(f"hidden width must be a positive integer, got {hidden!r}")
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model: nn.Module = Affine(d) if name == "affine" else MLP(d, hidden=hidden, activation=activation)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)
