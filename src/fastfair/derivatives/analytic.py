"""Per-sample input gradient and Hessian of the loss: closed forms for the built-in models, ``torch.func`` otherwise.

For one sample (x, y) with logit z = f(x) the loss is L(x) = ℓ(f(x), y) (:mod:`fastfair.losses`), and by the chain
rule

    ∇ₓL  = ℓ′ ∇f,           ∇²ₓL = ℓ″ ∇f ∇fᵀ + ℓ′ ∇²f.

Closed forms (no autograd at all):

* :class:`~fastfair.models.Affine`, f(x) = wᵀx + b:  ∇f = w, ∇²f = 0, so

      ∇ₓL = ℓ′ w,      ∇²ₓL = ℓ″ w wᵀ      (rank one).

* :class:`~fastfair.models.MLP`, f(x) = vᵀφ(Wx + b) + c with pre-activation z = Wx + b (h values):

      ∇f  = Wᵀ (v ⊙ φ′(z)),      ∇²f = Wᵀ diag(v ⊙ φ″(z)) W,

  with φ′, φ″ of :mod:`.activations`.

Everything the MLP contributes lies in the row space of W (dimension k ≤ h). :func:`mlp_subspace_derivatives`
exploits this: with one thin QR factorisation Wᵀ = U R per batch (U: d×k with orthonormal columns, R: k×h),

      ∇f = U (R a),                 a = v ⊙ φ′(z),
      ∇²f = U (R diag(m) Rᵀ) Uᵀ,    m = v ⊙ φ″(z),

so the reduced gradient g̃ = Uᵀ∇ₓL (n×k) and reduced Hessian H̃ = Uᵀ∇²ₓL U (n×k×k) cost O(n·h·d + n·h³)
and the n×d×d Hessian is never formed; ∇ₓL = U g̃ and ∇²ₓL = U H̃ Uᵀ exactly. Every MLP function here builds one
:class:`~.factored.FactoredQuadratic` (H̃ = ℓ″ g̃_f g̃_fᵀ + Mᵀ diag(ℓ′ m) M with M = W or Rᵀ);
:func:`mlp_reduced_derivatives` keeps it factored, so that a product with H̃ costs O(n·h·k).

Any other ``nn.Module`` mapping (n, d) to (n,) logits -- or to (n, C) logits of C classes, whose loss is the
softmax cross-entropy -- is differentiated per sample with ``torch.func`` (``vmap`` of ``grad`` for the gradient,
of ``jacfwd(grad)`` for the Hessian), called with detached parameters. The closed forms above are those of one
logit: an :class:`Affine` or :class:`MLP` built with C ≥ 3 classes takes the ``torch.func`` path here (softmax
regression has its own structured quadratic model, :mod:`.softmax`).

All functions are pure: they never leave ``.grad`` on parameters, never change ``requires_grad``, and never
build an autograd graph through the model's parameters. Results follow the dtype and device of ``x``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import FastfairError
from ..losses import classification_loss, logistic_logit_derivatives, logistic_loss, logistic_loss_derivatives
from ..models import MLP, Affine
from .activations import ANALYTIC_ACTIVATIONS, activation_derivatives
from .factored import FactoredQuadratic

#: How the dense derivatives are computed: closed forms (``"analytic"``), ``torch.func`` (``"func"``), or the
#: closed forms where the model has them (``"auto"``).
BACKENDS = ("auto", "analytic", "func")


@dataclass(frozen=True)
class InputDerivatives:
    """Per-sample loss and its input derivatives for a batch of n samples in d dimensions."""

    loss: Tensor  #: (n,) ℓ(f(x), y)
    logits: Tensor  #: (n,) f(x)
    grad: Tensor  #: (n, d) ∇ₓL
    hessian: Tensor | None  #: (n, d, d) ∇²ₓL, or None when not requested


@dataclass(frozen=True)
class SubspaceDerivatives:
    """Loss derivatives of a one-hidden-layer MLP expressed in the row space of W.

    ``basis`` U (d, k) has orthonormal columns spanning (at least) the row space of W; ``grad`` g̃ = Uᵀ∇ₓL and
    ``hessian`` H̃ = Uᵀ∇²ₓL U are the reduced quantities, so that ∇ₓL = U g̃ and ∇²ₓL = U H̃ Uᵀ exactly.
    """

    basis: Tensor  #: (d, k) U, shared by all samples
    loss: Tensor  #: (n,)
    logits: Tensor  #: (n,)
    grad: Tensor  #: (n, k) g̃
    hessian: Tensor  #: (n, k, k) H̃

    def lift(self, p: Tensor) -> Tensor:
        """Map reduced vectors p̃ (n, k) to the input space: U p̃ (n, d)."""
        return p @ self.basis.T

    def full_grad(self) -> Tensor:
        """∇ₓL = U g̃, shape (n, d)."""
        return self.lift(self.grad)

    def full_hessian(self) -> Tensor:
        """∇²ₓL = U H̃ Uᵀ, shape (n, d, d). Materialises O(n·d²) memory; meant for checks."""
        return self.basis @ self.hessian @ self.basis.T


def model_logits(out: object, n: int) -> Tensor:
    """A model's output as (n,) logits (one per row, binary) or (n, C) logits (C ≥ 3 classes; two classes are one
    logit per row); FastfairError (one line) for anything else."""
    if isinstance(out, Tensor):
        if out.numel() == n:
            return out.reshape(n)
        if out.ndim == 2 and out.shape[0] == n and out.shape[1] >= 3:
            return out
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    raise FastfairError(
        f"model must map (n, d) inputs to (n,) logits, or (n, C) logits for C >= 3 classes; got output of shape {shape}"
    )


def is_multiclass(model: nn.Module) -> bool:
    """True for a built-in model with C ≥ 3 outputs (``model.n_classes`` ≥ 3)."""
    return getattr(model, "n_classes", 2) > 2


def has_analytic_derivatives(model: nn.Module) -> bool:
    """True for binary :class:`Affine` and :class:`MLP` (and subclasses that keep their ``forward``/``act``) whose
    activation has closed-form derivatives (one logit; a multiclass model has none of these closed forms)."""
    if is_multiclass(model):
        return False
    cls = type(model)
    if getattr(model, "packed_kind", None) == "affine":  # a packed affine model: closed forms per row
        return True
    if isinstance(model, Affine):
        return cls.forward is Affine.forward
    if isinstance(model, MLP):
        known = getattr(model, "activation", None) in ANALYTIC_ACTIVATIONS
        return known and cls.forward is MLP.forward and cls.act is MLP.act
    return False


def check_inputs(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """A batch for the derivatives: ``x`` a floating-point ``(n, d)`` tensor, ``y`` ``(n,)``; returns them detached,
    ``y`` in ``x``'s dtype and device (FastfairError otherwise)."""
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise FastfairError(f"inputs must be a 2-d tensor (n, d), got shape {shape}")
    if not x.is_floating_point():
        raise FastfairError(f"inputs must be a floating-point tensor, got {x.dtype}")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise FastfairError(f"labels must have shape ({x.shape[0]},), got {shape}")
    x = x.detach()
    return x, y.detach().to(device=x.device, dtype=x.dtype)


def check_backend(backend: object, allowed: tuple[str, ...] = BACKENDS) -> str:
    """``backend`` if it is one of ``allowed`` (FastfairError otherwise)."""
    if backend not in allowed:
        raise FastfairError(f"unknown derivative backend {backend!r}; choose one of {', '.join(allowed)}")
    return backend  # type: ignore[return-value]


def loss_input_derivatives(
    model: nn.Module, x: Tensor, y: Tensor, *, hessian: bool = True, backend: str = "auto"
) -> InputDerivatives:
    """Per-sample loss, input gradient ∇ₓL (n, d) and, if asked, input Hessian ∇²ₓL (n, d, d).

    ``backend``: ``"analytic"`` uses the closed forms for :class:`Affine` / :class:`MLP` (FastfairError for
    any other model), ``"func"`` uses ``torch.func`` (any module mapping (n, d) to (n,) logits whose samples
    are independent), ``"auto"`` picks the analytic path when the model has one.
    """
    check_backend(backend)
    x, y = check_inputs(x, y)
    analytic = has_analytic_derivatives(model)
    if backend == "analytic" and not analytic:
        what = type(model).__name__ + (" with C >= 3 outputs" if is_multiclass(model) else "")
        raise FastfairError(f"no analytic derivatives for {what}; use backend 'func' or 'auto'")
    if backend == "func" or not analytic:
        return _func_derivatives(model, x, y, hessian)
    with torch.no_grad():
        if isinstance(model, Affine):
            return _affine_derivatives(model, x, y, hessian)
        return _mlp_derivatives(model, x, y, hessian)


def affine_parameters(model: Affine, like: Tensor) -> tuple[Tensor, Tensor]:
    """Detached (w (d,), b scalar tensor) of an :class:`Affine` model, cast to ``like``'s dtype and device.

    A packed affine model (several affine models trained as one batch, ``packed_kind == "affine"``) has one
    model per row of the batch ``like`` (n, d): its weights come per row, w (n, d) and b (n,) (row i those of
    the model that owns row i), from its ``row_affine(like)``."""
    if getattr(model, "packed_kind", None) == "affine":
        w, b = model.row_affine(like)  # type: ignore[attr-defined]
        return w.detach().to(like), b.detach().to(like)
    lin = model.linear
    w = lin.weight.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
    b = lin.bias.detach().to(like).reshape(()) if lin.bias is not None else like.new_zeros(())
    return w, b


def mlp_parameters(model: MLP, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Detached (W (h, d), b (h,), v (h,), c scalar tensor) of an :class:`MLP`, cast like ``like``."""
    W = model.hidden.weight.detach().to(device=like.device, dtype=like.dtype)
    h = W.shape[0]
    b = model.hidden.bias.detach().to(like) if model.hidden.bias is not None else like.new_zeros(h)
    v = model.out.weight.detach().to(like).reshape(-1)
    c = model.out.bias.detach().to(like).reshape(()) if model.out.bias is not None else like.new_zeros(())
    return W, b, v, c


def _affine_derivatives(model: Affine, x: Tensor, y: Tensor, hessian: bool) -> InputDerivatives:
    """∇ₓL = ℓ′ w, ∇²ₓL = ℓ″ w wᵀ (w one vector (d,), or one per row (n, d) for a packed model)."""
    w, b = affine_parameters(model, x)
    logits = x @ w + b if w.ndim == 1 else torch.linalg.vecdot(x, w) + b
    loss, d1, d2 = logistic_loss_derivatives(logits, y)
    grad = d1[:, None] * w
    outer = torch.outer(w, w) if w.ndim == 1 else w[:, :, None] * w[:, None, :]
    hess = d2[:, None, None] * outer if hessian else None
    return InputDerivatives(loss=loss, logits=logits, grad=grad, hessian=hess)


def row_space_basis(W: Tensor) -> tuple[Tensor, Tensor]:
    """Thin QR Wᵀ = U R: U (d, k), orthonormal columns spanning the row space of W (k = min(d, h))."""
    U, R = torch.linalg.qr(W.T, mode="reduced")
    return U, R


@torch.no_grad()
def mlp_factored(
    model: MLP, x: Tensor, y: Tensor, *, basis: str = "auto"
) -> tuple[Tensor | None, FactoredQuadratic, Tensor]:
    """``(U, quadratic model of L, logits)`` of an :class:`MLP` in few tensor operations, no validation.

    With M = Rᵀ from the thin QR Wᵀ = U R, or M = W and ``U = None`` (the input space's own coordinates), the
    returned :class:`~.factored.FactoredQuadratic` has ``g = g̃`` and ``H = H̃``:

        g̃_f = Mᵀ a,   g̃ = ℓ′ g̃_f,   H̃ = ℓ″ g̃_f g̃_fᵀ + Mᵀ diag(ℓ′ m) M,    a = v ⊙ φ′(z), m = v ⊙ φ″(z),

    and ``∇ₓL = U g̃``, ``∇²ₓL = U H̃ Uᵀ``. ``basis``: ``"auto"`` takes the row space when h < d (it is smaller),
    ``"qr"`` always, ``"none"`` never. ``y`` must already be in ``x``'s dtype and device.
    """
    W, b, v, c = mlp_parameters(model, x)
    phi, p1, p2 = activation_derivatives(model.activation, torch.addmm(b, x, W.T))
    logits = torch.addmv(c, phi, v)
    d1, d2 = logistic_logit_derivatives(logits, y)
    U, M = None, W
    if basis == "qr" or (basis == "auto" and W.shape[0] < W.shape[1]):
        U, R = row_space_basis(W)
        M = R.T
    quad = FactoredQuadratic(a=(p1 * v) @ M, b=d1, c=d2, e=(p2 * v) * d1.unsqueeze(-1), M=M)
    return U, quad, logits


def _mlp_derivatives(model: MLP, x: Tensor, y: Tensor, hessian: bool) -> InputDerivatives:
    """∇f = Wᵀ(v⊙φ′), ∇²f = Wᵀ diag(v⊙φ″) W; ∇ₓL = ℓ′∇f, ∇²ₓL = ℓ″∇f∇fᵀ + ℓ′∇²f."""
    _, quad, logits = mlp_factored(model, x, y, basis="none")
    hess = quad.hessian() if hessian else None
    return InputDerivatives(loss=logistic_loss(logits, y), logits=logits, grad=quad.g, hessian=hess)


def mlp_subspace_derivatives(model: MLP, x: Tensor, y: Tensor) -> SubspaceDerivatives:
    """Reduced gradient and Hessian of an :class:`MLP`'s loss in the row space of W, never forming (n, d, d).

    With Wᵀ = U R (one QR per batch), a = v ⊙ φ′(z) and m = v ⊙ φ″(z):

        g̃_f = R a,                 H̃_f = R diag(m) Rᵀ,
        g̃   = ℓ′ g̃_f,              H̃   = ℓ″ g̃_f g̃_fᵀ + ℓ′ H̃_f,

    and ∇ₓL = U g̃, ∇²ₓL = U H̃ Uᵀ. Cost O(n·h·d + n·h³) time, O(n·h²) memory.
    """
    if not (isinstance(model, MLP) and has_analytic_derivatives(model)):
        what = type(model).__name__ + (" with C >= 3 outputs" if is_multiclass(model) else "")
        raise FastfairError(f"subspace derivatives need a one-logit MLP model, got {what}")
    x, y = check_inputs(x, y)
    U, quad, logits = mlp_factored(model, x, y, basis="qr")
    loss = logistic_loss(logits, y)
    return SubspaceDerivatives(basis=U, loss=loss, logits=logits, grad=quad.g, hessian=quad.hessian())


def mlp_reduced_derivatives(model: MLP, x: Tensor, y: Tensor) -> tuple[Tensor | None, FactoredQuadratic]:
    """The MLP's ``U`` and factored quadratic model (:func:`mlp_factored` with the row space when h < d, the input
    space itself when h ≥ d). No validation: ``y`` must already be in ``x``'s dtype and device."""
    U, quad, _ = mlp_factored(model, x, y)
    return U, quad


def _func_derivatives(model: nn.Module, x: Tensor, y: Tensor, hessian: bool) -> InputDerivatives:
    """Per-sample derivatives through ``torch.func``: vmap over samples of grad (and jacfwd of grad)."""
    from torch.func import functional_call, grad_and_value, jacfwd, vmap

    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: t.detach() for k, t in model.named_buffers()}

    def sample_loss(xi: Tensor, yi: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        if out.numel() == 1:
            z = out.reshape(())
            return logistic_loss(z, yi), z
        if out.ndim == 2 and out.shape[0] == 1 and out.shape[1] >= 3:  # C logits: softmax cross-entropy
            return classification_loss(out, yi.reshape(1)).reshape(()), out.reshape(-1)
        raise FastfairError(
            "model must map (n, d) inputs to (n,) logits, or (n, C) logits for C >= 3 classes; "
            f"got {tuple(out.shape)} for one sample"
        )

    grad_fn = grad_and_value(sample_loss, has_aux=True)  # -> (g, (loss, z))
    if not hessian:
        grad, (loss, logits) = vmap(grad_fn)(x, y)
        return InputDerivatives(loss=loss, logits=logits, grad=grad, hessian=None)

    def grad_with_aux(xi: Tensor, yi: Tensor):
        g, (val, z) = grad_fn(xi, yi)
        return g, (g, val, z)

    with warnings.catch_warnings():
        # torch's first forward-mode AD call loads decompositions through the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        hess, (grad, loss, logits) = vmap(jacfwd(grad_with_aux, has_aux=True))(x, y)
    return InputDerivatives(loss=loss, logits=logits, grad=grad, hessian=hess)
