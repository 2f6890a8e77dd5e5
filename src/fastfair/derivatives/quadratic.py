r"""The quadratic model of the loss in the input at a batch: one question, four answers, chosen in one place.

For a model f, a batch ``x`` (n, d) with labels ``y`` and the per-row loss ``L_i(x_i) = ℓ(f(x_i), y_i)``,
:func:`quadratic_model` returns the per-row second-order Taylor model

    L_i(x_i + p) ≈ L_i(x_i) + g_iᵀ p + ½ pᵀ H_i p,      g_i = ∇L_i(x_i),   H_i = ∇²L_i(x_i),

as an object of the :class:`QuadraticModel` protocol: ``g`` (n, k), Hessian products ``hvp(V)``, the dense
Hessian on demand ``hessian()`` (n, k, k), the loss at ``x``, ``neg()`` (the model of -L, which the TRS
minimises), and a ``basis`` U (d, k) with orthonormal columns where the model lives in a subspace: then ``g`` and
``H`` are the reduced ``Uᵀ∇L`` and ``Uᵀ∇²L U``, the full ones are ``U g`` and ``U H Uᵀ``, and ``lift(p) = U p``
maps a reduced step to the input space (``basis is None``: ``k = d`` and ``lift`` is the identity).

The rank-one, factored and dense models are also :class:`fastfair.trs.QuadraticBatch` es (``gradient(p) = g +
Hp``, ``curvature_bound()``, ``rows(index)``), so :func:`fastfair.trs.solve_trs_operator` solves them (or
their ``neg()``) directly; the Krylov model is known through products only and is solved by
:func:`fastfair.trs.solve_trs_krylov`.

The implementations (``path``):

``"affine-closed-form"`` -- :class:`RankOneModel`, f(x) = wᵀx + b: ``g = ℓ′w``, ``H = ℓ″wwᵀ`` (rank one). O(n·d),
    computed lazily (the lean TRS step of a hard label needs only w).
``"mlp-subspace"`` -- :class:`FactoredModel`, the one-hidden-layer MLP f(x) = vᵀφ(Wx + b) + c:
    ``H = ℓ″aaᵀ + Mᵀdiag(ℓ′v⊙φ″)M`` kept factored (:class:`~.factored.FactoredQuadratic`), in the row space of W
    (``basis`` U from the thin QR Wᵀ = UR, M = Rᵀ) when h < d, in the input space (M = W) when h ≥ d.
    O(n·h·d) to build, O(n·h·k) per product.
``"softmax-subspace"`` -- :class:`~.softmax.SoftmaxModel`, softmax regression f(x) = Wx + b with C ≥ 3 classes:
    ``g = Wᵀ(p - e_y)``, ``H = Wᵀ(diag(p) - ppᵀ)W`` (PSD, rank ≤ C - 1), kept as k×k (k ≤ min(C, d)) in the row
    space of W (``basis`` U from the thin QR Wᵀ = UR) (:mod:`.softmax`).
``"mlp-softmax-subspace"`` -- the same for the one-hidden-layer MLP with C ≥ 3 outputs, f(x) = Vφ(Wx + b) + c, where
    k = min(h, d) ≤ :data:`SOFTMAX_MLP_MAX_DIM` (above, its closed-form products are cheaper: ``"krylov"``):
    ``g = Jᵀ(p - e_y)``, ``H = Jᵀ(diag(p) - ppᵀ)J + Wᵀdiag((Vᵀ(p - e_y)) ⊙ φ″)W`` with J = V diag(φ′) W, as k×k
    (k ≤ min(h, d)) in the row space of W when h < d, in the input space otherwise (:mod:`.softmax`).
``"dense"`` -- :class:`DenseModel`: the full (n, d, d) Hessian (closed forms, or ``torch.func`` for any
    module); O(n·d²) memory, meant for tiny d or as the reference.
``"krylov"`` -- :class:`KrylovModel`: Hessian-vector products; O(n·d) memory, ``hessian()`` costs d products (for
    checks). For the built-in MLPs of any depth (``structured``) the products are closed-form R-operator passes
    over activations cached once per batch, in the row space of the first layer when h_1 < d (:mod:`.layered`);
    for any other row-wise module one double backward per product for the whole batch (:mod:`.hvp`).

Which one (:func:`choose_path`, the only place the choice is made):

1. ``structured`` and the model has closed forms (:func:`~.analytic.has_analytic_derivatives`): the affine
   model's rank-one form, the one-hidden-layer MLP's factored form; softmax regression (an affine model with C ≥ 3
   outputs, :func:`~.softmax.has_softmax_derivatives`) and the one-hidden-layer MLP with C ≥ 3 outputs
   (:func:`~.softmax.has_softmax_mlp_derivatives`, k = min(h, d) ≤ :data:`SOFTMAX_MLP_MAX_DIM`): their row-space
   forms;
2. ``structured``, backend ``"auto"`` or ``"hvp"``, and a built-in MLP of two or more hidden layers
   (:func:`~.layered.has_layered_derivatives`): krylov at every d, with closed-form products;
3. otherwise by ``backend``: ``"hvp"`` -> krylov; ``"analytic"`` / ``"func"``, or ``structured=False`` -> dense;
   ``"auto"`` -> dense for ``d ≤`` :data:`DENSE_MAX_DIM`, krylov above.

With C ≥ 3 classes the loss is the softmax cross-entropy (:func:`fastfair.losses.classification_loss`); the
one-logit closed forms (rank one, factored) do not apply: softmax regression and the one-hidden-layer MLP have
their own (rule 1); the built-in MLPs of two or more hidden layers keep rule 2 (closed-form products with the
C×C softmax Hessian, :mod:`.layered`), and any other module with C outputs takes rule 3. :func:`models_multiclass` says
whether a quadratic model is that of the softmax cross-entropy of C logits.

Everything is computed without an autograd graph through the model's parameters; outputs follow ``x``'s dtype
and device.
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor, nn

from ..losses import classification_loss, logistic_loss_derivatives
from ..models import Affine
from ..trs import DenseQuadratic, QuadraticBatch
from .analytic import (
    BACKENDS,
    affine_parameters,
    check_backend,
    check_inputs,
    has_analytic_derivatives,
    loss_input_derivatives,
    mlp_factored,
)
from .dense import DenseModel
from .factored import FactoredQuadratic
from .hvp import InputHessian, input_hessian
from .layered import LayeredInputHessian, has_layered_derivatives, layered_input_hessian
from .softmax import (
    SOFTMAX_MLP_PATH,
    SOFTMAX_PATH,
    SoftmaxModel,
    has_softmax_derivatives,
    has_softmax_mlp_derivatives,
    softmax_mlp_quadratic,
    softmax_quadratic,
)

__all__ = [
    "DENSE_MAX_DIM",
    "PATHS",
    "QUADRATIC_BACKENDS",
    "SOFTMAX_MLP_MAX_DIM",
    "DenseModel",
    "FactoredModel",
    "KrylovModel",
    "QuadraticModel",
    "RankOneModel",
    "SoftmaxModel",
    "choose_path",
    "models_multiclass",
    "quadratic_model",
]

#: The paths of :func:`quadratic_model`, i.e. the implementations of :class:`QuadraticModel`.
PATHS = ("affine-closed-form", "mlp-subspace", SOFTMAX_PATH, SOFTMAX_MLP_PATH, "dense", "krylov")
#: Backends of :func:`quadratic_model`: the dense ones of :func:`~.analytic.loss_input_derivatives` and ``"hvp"``
#: (Hessian-vector products only: the krylov path).
QUADRATIC_BACKENDS = (*BACKENDS, "hvp")
#: Under ``backend="auto"`` a model without closed forms gets the dense path up to this input dimension, the
#: krylov path above it. Measured on a two-hidden-layer tanh network (widths 64, 32; one thread; n = 256 and
#: 4096; float32 and float64; the certified and the lean step): the dense path (one vmapped ``jacfwd`` Hessian,
#: one batched eigh) is as fast or faster up to d = 16 (e.g. float32, n = 4096, d = 16: certified 0.25 s against
#: 0.48 s, lean 0.14 s against 0.14 s), the Krylov path (≤ d products, each a double backward of the batch) wins
#: from d = 32 on (float32, n = 4096, d = 32: certified 0.50 s against 0.81 s, lean 0.11 s against 0.50 s), and
#: its memory stays O(n·d) where the dense path's grows as n·d².
DENSE_MAX_DIM = 16


#: The one-hidden-layer MLP with C ≥ 3 outputs gets its k×k model (``"mlp-softmax-subspace"``) up to this k =
#: min(h, d), the closed-form products (``"krylov"``, :mod:`.layered`) above. Measured (one thread, float32, n = 1024,
#: r = 0.5, median of 3): the lean step took 4.0 ms against 9.8 ms at k = 8 (d = 64, C = 10), 13.8 ms against
#: 9.9 ms at k = 16, 19.3 ms against 8.3 ms at k = 24 (d = 192), as the (n, k, k) Hessian grows with k² while
#: each product stays O(n·h·k); the certified step 12.4 ms against 51.7 ms at k = 8, 31.6 against 117 at k = 16.
SOFTMAX_MLP_MAX_DIM = 12


class QuadraticModel(Protocol):
    """The per-row quadratic model of the loss (module docs); implemented by the four classes below."""

    path: str
    #: (d, k) orthonormal columns spanning the subspace the model lives in, or None (k = d)
    basis: Tensor | None

    @property
    def g(self) -> Tensor:
        """(n, k) the gradient ∇L (reduced: Uᵀ∇L)."""
        ...

    @property
    def loss(self) -> Tensor:
        """(n,) the loss at x (of L itself, also for :meth:`neg`)."""
        ...

    def hvp(self, V: Tensor) -> Tensor:
        """(n, k): row i is H_i v_i."""
        ...

    def hessian(self) -> Tensor:
        """(n, k, k) the Hessian, formed densely."""
        ...

    def lift(self, p: Tensor) -> Tensor:
        """(n, d) the input-space vectors of reduced vectors p (n, k): U p, or p itself."""
        ...

    def neg(self) -> QuadraticModel:
        """The model of -L (gradient -g, Hessian -H), the one a TRS solver minimises to maximise the loss."""
        ...


class RankOneModel:
    """``path = "affine-closed-form"``: g = ℓ′w, H = ℓ″wwᵀ for f(x) = wᵀx + b (``sign`` -1: the model of -L).

    Everything but ``w`` is computed on first use: ``logits`` z = xw + b, and ``(loss, d1, d2) = (ℓ, ℓ′, ℓ″)``.
    ``w`` is one vector (d,) with ``b`` a scalar, or one vector per row (n, d) with ``b`` (n,): the rows of a
    packed batch, each from its own affine model (row i: gᵢ = ℓ′ᵢwᵢ, Hᵢ = ℓ″ᵢwᵢwᵢᵀ).
    """

    path = "affine-closed-form"
    basis = None

    def __init__(self, w: Tensor, b: Tensor, x: Tensor, y: Tensor, sign: float = 1.0) -> None:
        self.w, self.b, self.x, self.y, self.sign = w, b, x, y, sign

    @property
    def per_row(self) -> bool:
        """True when ``w`` holds one vector per row (n, d)."""
        return self.w.ndim == 2

    @cached_property
    def logits(self) -> Tensor:
        if self.per_row:
            return torch.linalg.vecdot(self.x, self.w) + self.b
        return self.x @ self.w + self.b

    @cached_property
    def _derivatives(self) -> tuple[Tensor, Tensor, Tensor]:
        return logistic_loss_derivatives(self.logits, self.y)

    @property
    def loss(self) -> Tensor:
        return self._derivatives[0]

    @property
    def d1(self) -> Tensor:
        """(n,) ℓ′ = σ(z) - y (of L, whatever the sign)."""
        return self._derivatives[1]

    @property
    def d2(self) -> Tensor:
        """(n,) ℓ″ = σ(z)(1 - σ(z)) (of L, whatever the sign)."""
        return self._derivatives[2]

    @property
    def g(self) -> Tensor:
        return (self.sign * self.d1).unsqueeze(-1) * self.w

    def hvp(self, V: Tensor) -> Tensor:
        vw = torch.linalg.vecdot(V, self.w) if self.per_row else V @ self.w
        return (self.sign * self.d2 * vw).unsqueeze(-1) * self.w

    def hessian(self) -> Tensor:
        w = self.w
        outer = w[:, :, None] * w[:, None, :] if self.per_row else torch.outer(w, w)
        return (self.sign * self.d2)[:, None, None] * outer

    def lift(self, p: Tensor) -> Tensor:
        return p

    def neg(self) -> RankOneModel:
        return RankOneModel(self.w, self.b, self.x, self.y, -self.sign)

    # QuadraticBatch
    def gradient(self, p: Tensor) -> Tensor:
        return self.g + self.hvp(p)

    def curvature_bound(self) -> Tensor:
        """``max(0, -sign·ℓ″)‖w‖²`` = ``max(0, -λ_min(H))`` exactly (H is rank one)."""
        return (-self.sign * self.d2).clamp_min(0) * torch.linalg.vecdot(self.w, self.w)

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        g, H = self.g, self.hessian()
        return (g, H) if index is None else (g[index], H[index])


class FactoredModel:
    """``path = "mlp-subspace"``: the one-hidden-layer MLP's model kept factored (:class:`~.factored.FactoredQuadratic`
    ``quad``), in the row space of W (``basis`` U) or in the input space (``basis`` None)."""

    path = "mlp-subspace"
    multiclass = False

    def __init__(self, basis: Tensor | None, quad: FactoredQuadratic, logits: Tensor, y: Tensor) -> None:
        self.basis, self.quad, self.logits, self.y = basis, quad, logits, y

    @cached_property
    def loss(self) -> Tensor:
        return classification_loss(self.logits, self.y)

    @property
    def g(self) -> Tensor:
        return self.quad.g

    def hvp(self, V: Tensor) -> Tensor:
        return self.quad.product(V)

    def hessian(self) -> Tensor:
        return self.quad.hessian()

    def lift(self, p: Tensor) -> Tensor:
        return p if self.basis is None else p @ self.basis.T

    def neg(self) -> FactoredModel:
        out = FactoredModel(self.basis, self.quad.neg(), self.logits, self.y)
        if "loss" in self.__dict__:
            out.loss = self.loss
        return out

    def operator(self) -> QuadraticBatch:
        """The cheaper form of the model for :func:`fastfair.trs.solve_trs_operator`: factored, or dense (k×k)
        where about ten products are cheaper that way (:meth:`~.factored.FactoredQuadratic.prefers_dense`)."""
        quad = self.quad
        return DenseQuadratic(quad.g, quad.hessian()) if quad.prefers_dense() else quad

    # QuadraticBatch
    def gradient(self, p: Tensor) -> Tensor:
        return self.quad.gradient(p)

    def curvature_bound(self) -> Tensor:
        return self.quad.curvature_bound()

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.quad.rows(index)


class KrylovModel:
    """``path = "krylov"``: gradient and Hessian-vector products of any row-wise module (:class:`~.hvp.InputHessian`
    ``op``, autograd) or of a built-in MLP (:class:`~.layered.LayeredInputHessian` ``op``, closed-form products
    from cached activations, in the row space of the first layer when it is narrower than the input); ``op`` is
    what :func:`fastfair.trs.solve_trs_krylov` takes as its operator."""

    path = "krylov"

    def __init__(self, op: InputHessian | LayeredInputHessian) -> None:
        self.op = op
        self.basis: Tensor | None = getattr(op, "basis", None)
        self.multiclass = op.logits.ndim == 2

    @property
    def method(self) -> str:
        """How the products are computed: ``"analytic"`` (built-in MLP), ``"double-backward"`` or ``"jvp"``."""
        return self.op.method

    @property
    def g(self) -> Tensor:
        return self.op.grad

    @property
    def loss(self) -> Tensor:
        return self.op.loss

    def hvp(self, V: Tensor) -> Tensor:
        return self.op(V)

    def hessian(self) -> Tensor:
        """(n, d, d) from d products with the unit vectors (column j is H e_j); meant for checks."""
        n, d = self.g.shape
        eye = torch.eye(d, dtype=self.g.dtype, device=self.g.device)
        H = torch.stack([self.op(eye[j].expand(n, d).contiguous()) for j in range(d)], dim=-1)
        return 0.5 * (H + H.mT)

    def lift(self, p: Tensor) -> Tensor:
        return p if self.basis is None else p @ self.basis.T

    def neg(self) -> KrylovModel:
        return KrylovModel(self.op.neg())


def models_multiclass(quad: QuadraticModel) -> bool:
    """True when ``quad`` is the quadratic model of the softmax cross-entropy of C logits per row (a multiclass
    model), False for one logit per row."""
    return bool(getattr(quad, "multiclass", False))


def choose_path(model: nn.Module, d: int, *, structured: bool = True, backend: str = "auto") -> str:
    """The path :func:`quadratic_model` takes for ``model`` at input dimension ``d`` (module docs, "Which one")."""
    check_backend(backend, QUADRATIC_BACKENDS)
    if structured and getattr(model, "packed_kind", None) == "affine":  # a packed affine model: w per row
        return "affine-closed-form"
    if structured and has_softmax_derivatives(model):
        return SOFTMAX_PATH
    if structured and has_softmax_mlp_derivatives(model) and min(model.hidden.out_features, d) <= SOFTMAX_MLP_MAX_DIM:
        return SOFTMAX_MLP_PATH
    if structured and has_analytic_derivatives(model):
        return "affine-closed-form" if isinstance(model, Affine) else "mlp-subspace"
    if structured and backend in ("auto", "hvp") and has_layered_derivatives(model):
        return "krylov"  # closed-form products at any d (cheaper than the dense torch.func Hessian even at d = 2)
    if backend == "hvp":
        return "krylov"
    if not structured or backend != "auto" or d <= DENSE_MAX_DIM:
        return "dense"
    return "krylov"


def quadratic_model(
    model: nn.Module, x: Tensor, y: Tensor, *, structured: bool = True, backend: str = "auto"
) -> QuadraticModel:
    """The quadratic model of the loss of ``model`` in the input at the batch ``(x, y)`` (module docs).

    Args:
        model: an ``nn.Module`` mapping ``(n, d)`` inputs to ``n`` logits, or to ``(n, C)`` logits, rows independent.
        x: ``(n, d)`` floating-point inputs; ``y``: ``(n,)`` labels in [0, 1] (one logit), or class codes 0..C-1.
        structured: use the affine / one-hidden-layer closed forms where the model has them.
        backend: ``"auto"``, ``"analytic"``, ``"func"`` (dense derivatives) or ``"hvp"`` (products: krylov).

    Raises:
        FastfairError: a malformed batch, an unknown backend, ``"analytic"`` for a model without closed forms,
            a model that does not return one logit per row, or (krylov) BatchNorm/Dropout in training mode.
    """
    x, y = check_inputs(x, y)
    path = choose_path(model, x.shape[1], structured=structured, backend=backend)
    if path == "affine-closed-form":
        w, b = affine_parameters(model, x)  # type: ignore[arg-type]
        return RankOneModel(w, b, x, y)
    if path == "mlp-subspace":
        U, quad, logits = mlp_factored(model, x, y)  # type: ignore[arg-type]
        return FactoredModel(U, quad, logits, y)
    if path == SOFTMAX_PATH:
        return softmax_quadratic(model, x, y)  # type: ignore[arg-type]
    if path == SOFTMAX_MLP_PATH:
        return softmax_mlp_quadratic(model, x, y)  # type: ignore[arg-type]
    if path == "krylov":
        if structured and has_layered_derivatives(model):
            return KrylovModel(layered_input_hessian(model, x, y))
        return KrylovModel(input_hessian(model, x, y))
    der = loss_input_derivatives(model, x, y, hessian=True, backend=backend)
    return DenseModel(der.grad, der.hessian, der.loss, der.logits.ndim == 2)  # type: ignore[arg-type]
