"""Per-sample input derivatives of the logistic loss: analytic fast paths and a ``torch.func`` fallback.

For one sample (x, y) with logit z = f(x) the loss is

    L(x) = ℓ(f(x), y),      ℓ(z, y) = softplus(z) - y·z        (binary cross-entropy with logits)
    ℓ′(z) = σ(z) - y,       ℓ″(z) = σ(z)(1 - σ(z)),

and by the chain rule

    ∇ₓL  = ℓ′ ∇f,           ∇²ₓL = ℓ″ ∇f ∇fᵀ + ℓ′ ∇²f.

Fast paths (no autograd at all):

* :class:`~fastfair.models.Affine`, f(x) = wᵀx + b:  ∇f = w, ∇²f = 0, so

      ∇ₓL = (σ - y) w,      ∇²ₓL = σ(1 - σ) w wᵀ      (rank one).

* :class:`~fastfair.models.MLP`, f(x) = vᵀφ(Wx + b) + c with pre-activation z = Wx + b (h values):

      ∇f  = Wᵀ (v ⊙ φ′(z)),      ∇²f = Wᵀ diag(v ⊙ φ″(z)) W,

  with  tanh:     φ′ = 1 - tanh²,   φ″ = -2 tanh (1 - tanh²);
        sigmoid:  φ′ = s(1 - s),    φ″ = s(1 - s)(1 - 2s)            (s = σ(z));
        softplus: φ′ = σ(z),        φ″ = σ(z)(1 - σ(z))
        (softplus as ``torch.nn.functional.softplus``: linear above z = 20, where φ′ = 1 and φ″ = 0).

Everything the MLP contributes lies in the row space of W (dimension k ≤ h). :func:`mlp_subspace_derivatives`
exploits this: with one thin QR factorisation Wᵀ = U R per batch (U: d×k with orthonormal columns, R: k×h),

      ∇f = U (R a),                 a = v ⊙ φ′(z),
      ∇²f = U (R diag(m) Rᵀ) Uᵀ,    m = v ⊙ φ″(z),

so the reduced gradient g̃ = Uᵀ∇ₓL (n×k) and reduced Hessian H̃ = Uᵀ∇²ₓL U (n×k×k) cost O(n·h·d + n·h³)
and the n×d×d Hessian is never formed; ∇ₓL = U g̃ and ∇²ₓL = U H̃ Uᵀ exactly. All three MLP paths build one
:class:`FactoredQuadratic` (H̃ = ℓ″ g̃_f g̃_fᵀ + Mᵀ diag(ℓ′ m) M with M = W or Rᵀ); the training path
(:func:`mlp_reduced_derivatives`) keeps it factored, so that a product with H̃ costs O(n·h·k) and H̃ itself
need not be formed at all.

Any other ``nn.Module`` mapping (n, d) to (n,) logits is differentiated per sample with ``torch.func``
(``vmap`` of ``grad`` for the gradient, of ``jacfwd(grad)`` for the Hessian), called with detached parameters.

All functions are pure: they never leave ``.grad`` on parameters, never change ``requires_grad``, and never
build an autograd graph through the model's parameters. Results follow the dtype and device of ``x``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import FastfairError
from .models import MLP, Affine

BACKENDS = ("auto", "analytic", "func")

#: ``torch.nn.functional.softplus`` switches to the identity above this input (default ``threshold=20``).
SOFTPLUS_THRESHOLD = 20.0


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


@dataclass(frozen=True)
class FactoredQuadratic:
    r"""A batch of quadratic models kept in the factored form of a one-hidden-layer network's loss derivatives.

    Per row i (``n`` rows, ``k`` variables), with ``a`` (n, k), ``b``, ``c`` (n,), ``e`` (n, h) and one shared
    ``M`` (h, k) whose rows are ``M_l``:

        q(p) = b·aᵀp + ½ c·(aᵀp)² + ½ Σ_l e_l (M_l p)²,     i.e.   g = b a,   H = c a aᵀ + Mᵀ diag(e) M.

    For the MLP's loss (:func:`mlp_reduced_derivatives`) ``a = Mᵀ(v ⊙ φ′)`` is ∇f, ``b = ℓ′``, ``c = ℓ″`` and
    ``e = ℓ′ v ⊙ φ″``. It is a :class:`fastfair.trs.QuadraticBatch`:

    * :meth:`gradient` ``∇q(p) = (b + c aᵀp) a + Mᵀ(e ⊙ Mp)`` -- two ``(n, h)×(h, k)`` products, O(n·h·k);
    * :meth:`curvature_bound` ``B ≥ -λ_min(H)``. ``-H = (-c) aaᵀ + Mᵀ diag(-e) M ⪯ (-c)₊ aaᵀ + Mᵀ diag((-e)₊) M``,
      and the PSD second term has ``λ_max ≤ min(‖M‖₂² maxₗ (-eₗ)₊, trace = Σₗ (-eₗ)₊ ‖M_l‖²)``, so

          B = (-c)₊ ‖a‖² + min(‖M‖₂² maxₗ (-eₗ)₊,  Σₗ (-eₗ)₊ ‖M_l‖²);

    * :meth:`hessian` / :meth:`rows` form ``H`` densely (``(n, k, k)``) when it is needed.

    :meth:`neg` is the model ``-q`` (to *maximise* the loss model, minimise ``-q``).
    """

    a: Tensor  #: (n, k)
    b: Tensor  #: (n,)
    c: Tensor  #: (n,)
    e: Tensor  #: (n, h)
    M: Tensor  #: (h, k), shared by the rows

    @property
    def g(self) -> Tensor:
        """``(n, k)`` the gradient at ``p = 0``: ``b a``."""
        return self.b.unsqueeze(-1) * self.a

    def gradient(self, p: Tensor) -> Tensor:
        """``(n, k)`` ``∇q(p) = g + Hp`` without forming ``H``."""
        curv = ((p @ self.M.T) * self.e) @ self.M
        return torch.addcmul(curv, (self.b + self.c * torch.linalg.vecdot(self.a, p)).unsqueeze(-1), self.a)

    def curvature_bound(self) -> Tensor:
        """``(n,)`` an upper bound on ``max(0, -λ_min(H))`` (class docs)."""
        neg_e = self.e.neg().clamp_min(0)
        spectral = torch.linalg.matrix_norm(self.M, ord=2).square() * neg_e.amax(-1)
        trace = neg_e @ self.M.square().sum(-1)
        rank_one = self.c.neg().clamp_min(0) * torch.linalg.vecdot(self.a, self.a)
        return rank_one + torch.minimum(spectral, trace)

    def hessian(self, index: Tensor | None = None) -> Tensor:
        """Dense ``H`` (``(n, k, k)``), or of the rows ``index`` only."""
        a, c, e = (self.a, self.c, self.e) if index is None else (self.a[index], self.c[index], self.e[index])
        k = self.M.shape[1]
        outer = (self.M.unsqueeze(-1) * self.M.unsqueeze(-2)).reshape(-1, k * k)  # row l: M_l M_lᵀ
        hess = (e @ outer).view(-1, k, k)
        return hess.add_((c.unsqueeze(-1) * a).unsqueeze(-1) * a.unsqueeze(-2))

    def rows(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(g, H)`` of the rows ``index`` (``None``: all rows), dense."""
        g = self.g if index is None else self.b[index].unsqueeze(-1) * self.a[index]
        return g, self.hessian(index)

    def neg(self) -> FactoredQuadratic:
        """The model ``-q``: ``b``, ``c`` and ``e`` change sign."""
        return FactoredQuadratic(self.a, self.b.neg(), self.c.neg(), self.e.neg(), self.M)

    def prefers_dense(self, count: int = 10) -> bool:
        """Whether about ``count`` products with ``H`` are cheaper through the dense ``(n, k, k)`` Hessian.

        Per row, ``count`` factored products cost about ``2·count·h·k`` multiply-adds; forming ``H`` costs
        ``h·k²`` and then ``count·k²`` (:func:`dense_is_cheaper`) -- e.g. dense for ``k ≤ 12`` at ``h = 16``: the
        input dimension of Adult (k = d = 5) but not the row space of a ``d = 100`` input (k = h = 16). Fewer,
        larger tensor operations also suit small batches.
        """
        h, k = self.M.shape
        return dense_is_cheaper(h, k, count)


def dense_is_cheaper(h: int, k: int, count: int = 10) -> bool:
    """``k(h + count) < 2·count·h``: forming the k×k Hessian of :class:`FactoredQuadratic` (``h·k²``) and then
    ``count`` dense products (``k²`` each) costs fewer multiply-adds than ``count`` factored ones (``2hk``)."""
    return k * (h + count) < 2 * count * h


def logistic_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample ℓ(z, y) = softplus(z) - y·z, evaluated as y·softplus(-z) + (1 - y)·softplus(z).

    Both terms are non-negative, so there is no cancellation: ℓ keeps full relative accuracy even for
    confidently classified points (``binary_cross_entropy_with_logits`` returns 0 for ℓ(-40, 0) = 4.2e-18 in
    float64), and so does its autograd derivative (1 - y)σ(z) - yσ(-z) -- no kink at z = 0 either. It is also
    built from plain element-wise kernels: on CPU, ``log_sigmoid`` inside the library call opens an OpenMP
    parallel region even for tiny batches, which costs milliseconds per call on a loaded machine -- too much
    for a solver evaluating the loss thousands of times. softplus is used with threshold 40 (identity above),
    where its relative error e^-40/40 is below float64 precision.
    """
    y = y.to(logits.dtype)
    return y * F.softplus(-logits, threshold=40.0) + (1 - y) * F.softplus(logits, threshold=40.0)


def logistic_loss_derivatives(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ℓ(z, y) = softplus(z) - y·z and its logit derivatives ℓ′ = σ(z) - y, ℓ″ = σ(z)(1 - σ(z)).

    Evaluated as ℓ′ = (1 - y)σ(z) - yσ(-z) and ℓ″ = σ(z)σ(-z) (equal in exact arithmetic), which keep full
    relative accuracy for large |z|: a confidently classified point still gets its tiny, correctly signed
    gradient instead of the 0 that 1 - σ(z) rounds to.
    """
    y = y.to(logits.dtype)
    return (logistic_loss(logits, y), *logistic_logit_derivatives(logits, y))


def logistic_logit_derivatives(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """ℓ′ = (1 - y)σ(z) - yσ(-z) and ℓ″ = σ(z)σ(-z), without the loss (see :func:`logistic_loss_derivatives`)."""
    s_pos, s_neg = torch.sigmoid(logits), torch.sigmoid(-logits)
    return (1 - y) * s_pos - y * s_neg, s_pos * s_neg


def activation_derivatives(name: str, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """φ(z), φ′(z), φ″(z) for φ in {tanh, sigmoid, softplus} (see the module docstring for the formulas)."""
    if name == "tanh":
        t = torch.tanh(z)
        d1 = 1.0 - t * t
        return t, d1, -2.0 * t * d1
    if name == "sigmoid":
        s = torch.sigmoid(z)
        d1 = s * torch.sigmoid(-z)
        return s, d1, d1 * (1.0 - 2.0 * s)
    if name == "softplus":
        s = torch.sigmoid(z)
        linear = z > SOFTPLUS_THRESHOLD
        d1 = torch.where(linear, torch.ones_like(z), s)
        d2 = torch.where(linear, torch.zeros_like(z), s * torch.sigmoid(-z))
        return F.softplus(z), d1, d2
    raise FastfairError(f"unknown activation {name!r}; choose one of tanh, sigmoid, softplus")


def has_analytic_derivatives(model: nn.Module) -> bool:
    """True for :class:`Affine` and :class:`MLP` (and subclasses that keep their ``forward``/``act``)."""
    cls = type(model)
    if isinstance(model, Affine):
        return cls.forward is Affine.forward
    if isinstance(model, MLP):
        return cls.forward is MLP.forward and cls.act is MLP.act
    return False


def loss_input_derivatives(
    model: nn.Module, x: Tensor, y: Tensor, *, hessian: bool = True, backend: str = "auto"
) -> InputDerivatives:
    """Per-sample loss, input gradient ∇ₓL (n, d) and, if asked, input Hessian ∇²ₓL (n, d, d).

    ``backend``: ``"analytic"`` uses the closed forms for :class:`Affine` / :class:`MLP` (FastfairError for
    any other model), ``"func"`` uses ``torch.func`` (any module mapping (n, d) to (n,) logits whose samples
    are independent), ``"auto"`` picks the analytic path when the model has one.
    """
    if backend not in BACKENDS:
        raise FastfairError(f"unknown derivative backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    _check_batch(x, y)
    analytic = has_analytic_derivatives(model)
    if backend == "analytic" and not analytic:
        raise FastfairError(
            f"no analytic derivatives for {type(model).__name__}; use backend 'func' or 'auto'"
        )
    x = x.detach()
    y = y.detach().to(device=x.device, dtype=x.dtype)
    if backend == "func" or not analytic:
        return _func_derivatives(model, x, y, hessian)
    with torch.no_grad():
        if isinstance(model, Affine):
            return _affine_derivatives(model, x, y, hessian)
        return _mlp_derivatives(model, x, y, hessian)


def affine_parameters(model: Affine, like: Tensor) -> tuple[Tensor, Tensor]:
    """Detached (w (d,), b scalar tensor) of an :class:`Affine` model, cast to ``like``'s dtype and device."""
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
    """∇ₓL = (σ - y) w, ∇²ₓL = σ(1 - σ) w wᵀ."""
    w, b = affine_parameters(model, x)
    logits = x @ w + b
    loss, d1, d2 = logistic_loss_derivatives(logits, y)
    grad = d1[:, None] * w
    hess = d2[:, None, None] * torch.outer(w, w) if hessian else None
    return InputDerivatives(loss=loss, logits=logits, grad=grad, hessian=hess)


def _mlp_forward_parts(model: MLP, x: Tensor, y: Tensor):
    W, b, v, c = mlp_parameters(model, x)
    phi, p1, p2 = activation_derivatives(model.activation, x @ W.T + b)
    logits = phi @ v + c
    loss, d1, d2 = logistic_loss_derivatives(logits, y)
    return W, v, p1, p2, logits, loss, d1, d2


def _mlp_quadratic(v: Tensor, p1: Tensor, p2: Tensor, d1: Tensor, d2: Tensor, M: Tensor) -> FactoredQuadratic:
    """The loss's quadratic model in coordinates ``p`` that move the pre-activation by ``M p`` (``M = W`` for the
    input space itself, ``Rᵀ`` for the row space): ``a = Mᵀ(v ⊙ φ′)``, ``b = ℓ′``, ``c = ℓ″``, ``e = ℓ′ v ⊙ φ″``."""
    return FactoredQuadratic(a=(p1 * v) @ M, b=d1, c=d2, e=(p2 * v) * d1.unsqueeze(-1), M=M)


def _mlp_derivatives(model: MLP, x: Tensor, y: Tensor, hessian: bool) -> InputDerivatives:
    """∇f = Wᵀ(v⊙φ′), ∇²f = Wᵀ diag(v⊙φ″) W; ∇ₓL = ℓ′∇f, ∇²ₓL = ℓ″∇f∇fᵀ + ℓ′∇²f."""
    W, v, p1, p2, logits, loss, d1, d2 = _mlp_forward_parts(model, x, y)
    quad = _mlp_quadratic(v, p1, p2, d1, d2, W)
    hess = quad.hessian() if hessian else None
    return InputDerivatives(loss=loss, logits=logits, grad=quad.g, hessian=hess)


def row_space_basis(W: Tensor) -> tuple[Tensor, Tensor]:
    """Thin QR Wᵀ = U R: U (d, k), orthonormal columns spanning the row space of W (k = min(d, h))."""
    U, R = torch.linalg.qr(W.T, mode="reduced")
    return U, R


def mlp_subspace_derivatives(model: MLP, x: Tensor, y: Tensor) -> SubspaceDerivatives:
    """Reduced gradient and Hessian of an :class:`MLP`'s loss in the row space of W, never forming (n, d, d).

    With Wᵀ = U R (one QR per batch), a = v ⊙ φ′(z) and m = v ⊙ φ″(z):

        g̃_f = R a,                 H̃_f = R diag(m) Rᵀ,
        g̃   = ℓ′ g̃_f,              H̃   = ℓ″ g̃_f g̃_fᵀ + ℓ′ H̃_f,

    and ∇ₓL = U g̃, ∇²ₓL = U H̃ Uᵀ. Cost O(n·h·d + n·h³) time, O(n·h²) memory.
    """
    if not (isinstance(model, MLP) and has_analytic_derivatives(model)):
        raise FastfairError(f"subspace derivatives need an MLP model, got {type(model).__name__}")
    _check_batch(x, y)
    x = x.detach()
    y = y.detach().to(device=x.device, dtype=x.dtype)
    with torch.no_grad():
        W, v, p1, p2, logits, loss, d1, d2 = _mlp_forward_parts(model, x, y)
        U, R = row_space_basis(W)
        quad = _mlp_quadratic(v, p1, p2, d1, d2, R.T)
    return SubspaceDerivatives(basis=U, loss=loss, logits=logits, grad=quad.g, hessian=quad.hessian())


def _func_derivatives(model: nn.Module, x: Tensor, y: Tensor, hessian: bool) -> InputDerivatives:
    """Per-sample derivatives through ``torch.func``: vmap over samples of grad (and jacfwd of grad)."""
    from torch.func import functional_call, grad_and_value, jacfwd, vmap

    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: t.detach() for k, t in model.named_buffers()}

    def sample_loss(xi: Tensor, yi: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        if out.numel() != 1:
            raise FastfairError(
                f"model must map (n, d) inputs to (n,) logits; got {tuple(out.shape)} for one sample"
            )
        z = out.reshape(())
        return logistic_loss(z, yi), z

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


@torch.no_grad()
def mlp_reduced_derivatives(model: MLP, x: Tensor, y: Tensor) -> tuple[Tensor | None, FactoredQuadratic]:
    """The training fast path of the MLP: ``U`` and the loss's quadratic model, factored, in few tensor operations.

    With M = Rᵀ from the thin QR Wᵀ = U R when h < d (as in :func:`mlp_subspace_derivatives`), or M = W and
    ``U = None`` when h ≥ d (coordinates of the input space itself), the returned :class:`FactoredQuadratic`
    has ``g = g̃`` and ``H = H̃``:

        g̃_f = Mᵀ a,   g̃ = ℓ′ g̃_f,   H̃ = ℓ″ g̃_f g̃_fᵀ + Mᵀ diag(ℓ′ m) M,    a = v ⊙ φ′(z), m = v ⊙ φ″(z),

    and ``∇ₓL = U g̃``, ``∇²ₓL = U H̃ Uᵀ``. No validation and no loss: the caller (the TRS maximiser in training
    mode) passes a checked batch with ``y`` already in ``x``'s dtype.
    """
    W, b, v, c = mlp_parameters(model, x)
    phi, p1, p2 = activation_derivatives(model.activation, torch.addmm(b, x, W.T))
    d1, d2 = logistic_logit_derivatives(torch.addmv(c, phi, v), y)
    U = None
    M = W
    if W.shape[0] < W.shape[1]:
        U, R = row_space_basis(W)
        M = R.T
    return U, _mlp_quadratic(v, p1, p2, d1, d2, M)


def _check_batch(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2:
        raise FastfairError(f"inputs must be a 2-d tensor (n, d), got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise FastfairError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if not x.is_floating_point():
        raise FastfairError(f"inputs must be floating point, got {x.dtype}")
