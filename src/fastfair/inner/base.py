"""The one interface every inner maximiser shares, and the small tensor helpers they have in common.

An inner maximiser approximately solves, for every sample of a batch independently,

    max_{‖δ_i‖₂ ≤ r_i}  ℓ(f(x_i + δ_i), y_i)

and returns x + δ (detached) with the loss attained there. Solvers never loop over samples in Python, never
build an autograd graph through the model's parameters (they use detached parameters), never touch ``.grad``,
and follow the device and dtype of ``x``.

ℓ is :func:`fastfair.losses.classification_loss`: the logistic loss of one logit per row (labels in [0, 1]), or
the softmax cross-entropy of (n, C) logits (labels the class codes 0..C-1, carried in ``x``'s floating dtype like
binary labels).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..derivatives.analytic import model_logits
from ..errors import FastfairError
from ..losses import classification_loss
from ..trs import TRSCertificate, radius_tensor
from ..validation import check_seed_value


@dataclass
class InnerResult:
    """What an inner maximiser returns for a batch of n samples in d dimensions.

    ``iterations`` counts the derivative evaluations spent per sample: for TRS 1 (one gradient and Hessian) on
    its closed-form and k×k paths (the lean k×k path reports its fixed-point products instead) and the
    Hessian-vector products on its Krylov path; the number of gradient steps for PGD; 0 for random
    perturbations.
    """

    x_adv: Tensor  #: (n, d) detached; ‖x_adv - x‖ ≤ r per sample (to rounding)
    loss: Tensor  #: (n,) the true loss at x_adv, detached
    iterations: Tensor  #: (n,) int64
    certificate: TRSCertificate | None = None  #: KKT certificate of the quadratic model (TRS only)
    extras: dict[str, Any] = field(default_factory=dict)  #: solver-specific diagnostics, e.g. "path"


class InnerMaximizer(ABC):
    """Base class: validates the batch and radius, then calls the solver's :meth:`_perturb`."""

    name: ClassVar[str] = ""

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, radius: float | Tensor) -> InnerResult:
        """Perturb every sample of ``x`` (n, d) within its L2 ball of ``radius`` (float or (n,) tensor).

        Raises :class:`FastfairError` for malformed inputs or a radius that is not positive and finite.
        """
        x, y, r = check_batch(x, y, radius)
        return self._perturb(model, x, y, r)

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """Only the perturbed batch ``x + δ`` (detached): the training loop's call.

        The batch is trusted (``x`` detached (n, d) float, ``y`` (n,) in ``x``'s dtype and device, ``r`` an
        (n,) tensor of positive radii) and no diagnostics are computed. Solvers with a cheaper way to produce
        only the step override this; by default it is ``_perturb(...).x_adv``.
        """
        return self._perturb(model, x, y, r).x_adv

    @abstractmethod
    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        """Solver body. ``x`` detached (n, d); ``y`` (n,) in x's dtype; ``r`` (n,) positive, x's dtype."""

    def options(self) -> dict[str, Any]:
        """The options this maximiser was built with (as passed to :func:`fastfair.inner.make_inner`)."""
        return dict(getattr(self, "_options", {}))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


# --------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------


def check_batch(x: Tensor, y: Tensor, radius: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Validate a batch; return detached x, y cast to x's dtype/device, and the radius as an (n,) tensor."""
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise FastfairError(f"inputs must be a 2-d tensor (n, d), got {shape}")
    if x.dtype not in (torch.float32, torch.float64):
        raise FastfairError(f"inputs must be float32 or float64, got {x.dtype}")
    n = x.shape[0]
    if not isinstance(y, Tensor) or y.shape != (n,):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise FastfairError(f"labels must be a tensor of shape ({n},), got {shape}")
    x = x.detach()
    y = y.detach().to(device=x.device, dtype=x.dtype)
    return x, y, radius_tensor(radius, n, x)


# --------------------------------------------------------------------------------------------------------
# tensor helpers
# --------------------------------------------------------------------------------------------------------


def project_to_ball(delta: Tensor, r: Tensor) -> Tensor:
    """Projection onto the ball: δ · min(1, r/‖δ‖) over the last axis (δ = 0 stays 0; no NaN).

    ``delta`` (..., d) and ``r`` broadcastable to ``delta.shape[:-1]``.
    """
    norm = torch.linalg.vector_norm(delta, dim=-1)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    scale = torch.where(norm > r, r / safe, torch.ones_like(norm))
    return delta * scale.unsqueeze(-1)


def as_logits(out: Tensor, n: int) -> Tensor:
    """Model output as (n,) logits (one per sample: binary) or (n, C) logits (C ≥ 3 classes: softmax);
    FastfairError for any other shape (:func:`fastfair.derivatives.analytic.model_logits`)."""
    return model_logits(out, n)


def detached_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``x -> logits (n,) or (n, C)`` that calls ``model`` with detached parameters and buffers (``functional_call``).

    Gradients w.r.t. x flow through it; nothing reaches (or records) the model's parameters.
    """
    from torch.func import functional_call

    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def forward(x: Tensor) -> Tensor:
        return as_logits(functional_call(model, (params, buffers), (x,)), x.shape[0])

    return forward


def loss_at(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample loss ℓ(f(x), y), detached, computed without any autograd graph."""
    with torch.no_grad():
        return classification_loss(as_logits(model(x), x.shape[0]), y)


def loss_and_grad(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample loss (n,) and its input gradient (n, d) in one batched backward pass.

    The gradient of Σᵢ ℓᵢ w.r.t. x has ∇ₓᵢℓᵢ as its i-th row because samples are independent.
    """
    with torch.enable_grad():
        xv = x.detach().requires_grad_(True)
        loss = classification_loss(forward(xv), y)
        (grad,) = torch.autograd.grad(loss.sum(), xv)
    return loss.detach(), grad


def sample_perturbation(
    n: int,
    d: int,
    r: Tensor,
    mode: str,
    generator: torch.Generator | list[torch.Generator] | tuple[torch.Generator, ...] | None,
    like: Tensor,
) -> Tensor:
    """Random δ (n, d): ``"sphere"`` ‖δ‖ = r along a Gaussian direction; ``"ball"`` uniform in the ball
    (direction Gaussian, radius r·U^{1/d}). Drawn on the generator's device, returned on ``like``'s.

    ``generator`` may be a sequence of M generators, one per model of a pack whose batch holds M equal
    contiguous blocks of n/M rows: block m is then drawn from generator m exactly as a batch of n/M rows alone
    would draw it (its Gaussian directions, then its uniform lengths), so every model sees its own stream."""
    if isinstance(generator, list | tuple):
        if not generator or n % len(generator):
            raise FastfairError(f"{n} rows do not split into {len(generator)} equal blocks, one per model")
        k = n // len(generator)
        zs, us = [], []
        for gen in generator:  # one draw per model's generator: the only loop over the models of a pack
            zs.append(torch.randn(k, d, generator=gen, device=gen.device, dtype=like.dtype))
            if mode == "ball":
                us.append(torch.rand(k, generator=gen, device=gen.device, dtype=like.dtype))
        z = torch.cat(zs).to(like.device)
        if mode == "ball":
            u = torch.cat(us)
    else:
        device = generator.device if generator is not None else like.device
        z = torch.randn(n, d, generator=generator, device=device, dtype=like.dtype)
        if mode == "ball":
            u = torch.rand(n, generator=generator, device=device, dtype=like.dtype)
        z = z.to(like.device)
    norm = torch.linalg.vector_norm(z, dim=1)
    # a Gaussian draw of norm exactly 0 has probability 0; map it to the first axis rather than NaN
    if d > 0:
        e1 = torch.zeros_like(z)
        e1[:, 0] = 1
        z = torch.where((norm > 0)[:, None], z, e1)
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    length = r
    if mode == "ball":
        length = r * u.to(like.device).pow(1.0 / max(d, 1))
    return z * (length / norm)[:, None]


class SeededRandomness:
    """Randomness option shared by the solvers that draw: a ``seed`` (int) or a ``torch.Generator``.

    A seed is an integer ``0 ≤ seed < 2**63`` (:func:`fastfair.validation.check_seed_value`). With a seed, one
    generator per device is created on first use and then continues its stream, so two
    maximisers built with the same seed produce the same sequence of draws. With neither, torch's global RNG
    is used (so ``torch.manual_seed`` governs it).

    A packed run (several models trained as one batch, model m owning the m-th of M equal contiguous blocks of
    rows) passes a tuple of M seeds: :meth:`generator_for` then returns M generators, one per model, each seeded
    as that model's run alone would seed its one (:func:`sample_perturbation` draws block m from generator m).
    """

    def __init__(self, seed: int | tuple[int, ...] | None, generator: torch.Generator | None) -> None:
        if seed is not None and generator is not None:
            raise FastfairError("give either seed or generator, not both")
        if isinstance(seed, list | tuple):
            if not seed:
                raise FastfairError("seed: a packed run needs one seed per model, got none")
            seeds = tuple(check_seed_value("seed", s) for s in seed)
            self.seed = tuple(int(s) for s in seeds)
            self._generator = None
            self._per_device: dict = {}
            return
        if seed is not None:
            seed = check_seed_value("seed", seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise FastfairError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.seed = None if seed is None else int(seed)
        self._generator = generator
        self._per_device: dict[torch.device, torch.Generator] = {}

    def generator_for(self, device: torch.device) -> torch.Generator | list[torch.Generator] | None:
        if self._generator is not None:
            return self._generator
        if self.seed is None:
            return None
        gen = self._per_device.get(device)
        if gen is None:
            if isinstance(self.seed, tuple):
                gen = [torch.Generator(device=device).manual_seed(s) for s in self.seed]
            else:
                gen = torch.Generator(device=device)
                gen.manual_seed(self.seed)
            self._per_device[device] = gen
        return gen
