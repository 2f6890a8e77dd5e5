r"""Quadratic models of the softmax cross-entropy in the input, in the row space of the first layer: softmax
regression and the one-hidden-layer MLP with C ≥ 3 outputs.

For f(x) = Wx + b with W of shape (C, d) (:class:`~fastfair.models.Affine` built with C ≥ 3 classes), p =
softmax(f(x)) and the loss L(x) = ℓ(f(x), y) = logsumexp(f(x)) - f(x)_y (:func:`fastfair.losses.softmax_cross_entropy`),
the chain rule with ∇ₓf = W and ∇²ₓf = 0 gives

    ∇ₓL = Wᵀ(p - e_y),          ∇²ₓL = Wᵀ(diag(p) - ppᵀ)W.

S = diag(p) - ppᵀ is positive semi-definite (vᵀSv is the variance of v under p) of rank ≤ C - 1 (S·1 = 0), so
∇²ₓL is PSD of rank ≤ C - 1, and both derivatives lie in the row space of W, of dimension k ≤ min(C, d). With one
thin QR factorisation per batch, Wᵀ = U R (U: d×k with orthonormal columns, R: k×C, k = min(C, d); range(U)
contains the row space of W also when W is rank deficient, or zero),

    ∇ₓL = U g̃,   g̃ = R(p - e_y);        ∇²ₓL = U H̃ Uᵀ,   H̃ = R S Rᵀ        (k×k per row),

so the n×d×d Hessian is never formed: O(n·C·d + n·C²·k) to build.

The TRS in the row space. Write a step δ = U p̃ + p⊥ with p⊥ ⟂ range(U). Then ∇ₓLᵀp⊥ = 0 and ∇²ₓL p⊥ = 0, so the
model m(δ) = ∇ₓLᵀδ + ½δᵀ∇²ₓLδ = g̃ᵀp̃ + ½p̃ᵀH̃p̃ depends on p̃ only, while ‖δ‖² = ‖p̃‖² + ‖p⊥‖²: p⊥ only spends
radius. The k-dimensional problem max_{‖p̃‖≤r} g̃ᵀp̃ + ½p̃ᵀH̃p̃ thus has the optimal value of the d-dimensional one,
and δ* = U p̃* is a global maximiser of the full model (the true loss is unchanged by p⊥ too: softmax regression
sees x only through Wx). H̃ ⪰ 0, so the model is convex and its maximum over the ball is attained on the sphere
‖p̃‖ = r (a convex function on a compact convex set peaks at an extreme point): the minimisation the solver does,
min -g̃ᵀp̃ - ½p̃ᵀH̃p̃, has Hessian -H̃ ⪯ 0; optimality needs -H̃ + λI ⪰ 0, i.e. a multiplier λ ≥ λ_max(H̃) ≥ 0,
and complementarity λ(r - ‖p̃‖) = 0 then puts the step on the boundary whenever λ > 0. λ = 0 needs λ_max(H̃) = 0,
i.e. H̃ = 0, and then stationarity g̃ = 0: a flat model (W = 0, or p = e_y to rounding), where every feasible step
is optimal.

The one-hidden-layer MLP with C outputs, f(x) = Vφ(Wx + b) + c (V: C×h, W: h×d), pre-activation z = Wx + b,
a = φ′(z), φ″(z) (:mod:`.activations`) and u = p - e_y: the logits' Jacobian is J = V diag(a) W, the Hessian of
f_c is Wᵀ diag(V_c ⊙ φ″(z)) W, and

    ∇ₓL = Jᵀu,          ∇²ₓL = JᵀSJ + Σ_c u_c ∇²f_c = JᵀSJ + Wᵀ diag((Vᵀu) ⊙ φ″(z)) W,

again in the row space of W (k ≤ min(h, d)). With W = M Uᵀ (M = Rᵀ from Wᵀ = UR when h < d; U = I, M = W
otherwise), J̃ = V diag(a) M (C×k), g̃ = J̃ᵀu and H̃ = J̃ᵀSJ̃ + Mᵀ diag((Vᵀu) ⊙ φ″(z)) M (path
``"mlp-softmax-subspace"``; O(n·C·h·k + n·h·k²)). The p⊥ argument is that of softmax regression (the MLP sees x
only through Wx) and the certificate the one below; H̃ is indefinite in general here (the second term), so the
step may be interior or a hard case, which the certified k×k solve handles.

Certificate in both coordinate systems: stationarity ‖(-H̃ + λI)p̃ - g̃‖ is the same number as ‖(-∇²ₓL + λI)δ -
∇ₓL‖ (U has orthonormal columns), as are complementarity λ(r - ‖p̃‖) = λ(r - ‖δ‖) and feasibility; the full
matrix -∇²ₓL + λI has the reduced spectrum shifted by λ on range(U) and the eigenvalue λ on its complement, so its
smallest eigenvalue is min(λ_min(-H̃ + λI), λ) when k < d (what :meth:`fastfair.inner.TrustRegionAdversary`
reports).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..losses import softmax_logit_derivatives
from ..models import MLP, Affine
from .activations import ANALYTIC_ACTIVATIONS, activation_derivatives
from .dense import DenseModel

__all__ = [
    "SOFTMAX_MLP_PATH",
    "SOFTMAX_PATH",
    "SoftmaxModel",
    "has_softmax_derivatives",
    "has_softmax_mlp_derivatives",
    "softmax_mlp_quadratic",
    "softmax_parameters",
    "softmax_quadratic",
]

#: The path name of softmax regression's quadratic model.
SOFTMAX_PATH = "softmax-subspace"
#: The path name of the one-hidden-layer multiclass MLP's quadratic model.
SOFTMAX_MLP_PATH = "mlp-softmax-subspace"


def has_softmax_derivatives(model: nn.Module) -> bool:
    """True for an :class:`Affine` model with C ≥ 3 outputs that keeps :meth:`Affine.forward` (softmax regression)."""
    return (
        isinstance(model, Affine)
        and type(model).forward is Affine.forward
        and getattr(model, "n_classes", 2) > 2
        and type(model.linear) is nn.Linear
    )


def has_softmax_mlp_derivatives(model: nn.Module) -> bool:
    """True for an :class:`MLP` with C ≥ 3 outputs that keeps :meth:`MLP.forward` and :meth:`MLP.act`, whose
    activation has closed-form derivatives."""
    return (
        isinstance(model, MLP)
        and getattr(model, "n_classes", 2) > 2
        and type(model).forward is MLP.forward
        and type(model).act is MLP.act
        and getattr(model, "activation", None) in ANALYTIC_ACTIVATIONS
        and type(model.hidden) is nn.Linear
        and type(model.out) is nn.Linear
    )


def softmax_parameters(model: Affine, like: Tensor) -> tuple[Tensor, Tensor]:
    """Detached (W (C, d), b (C,)) of a softmax-regression :class:`Affine`, cast to ``like``'s dtype and device."""
    lin = model.linear
    W = lin.weight.detach().to(device=like.device, dtype=like.dtype)
    b = lin.bias.detach().to(like) if lin.bias is not None else like.new_zeros(W.shape[0])
    return W, b


class SoftmaxModel(DenseModel):
    """``path`` ``"softmax-subspace"`` (softmax regression) or ``"mlp-softmax-subspace"`` (one-hidden-layer MLP with
    C outputs): the dense model g̃ (n, k), H̃ (n, k, k) in the row-space basis U (d, k), or in the input space
    (``basis`` None) (module docs), with the logits it was taken at.

    :meth:`neg` is the model of -L. Implements :class:`fastfair.derivatives.QuadraticModel` and
    :class:`fastfair.trs.QuadraticBatch` (through its dense k×k form).
    """

    multiclass = True

    def __init__(
        self, basis: Tensor | None, g: Tensor, H: Tensor, loss: Tensor, logits: Tensor, path: str = SOFTMAX_PATH
    ) -> None:
        super().__init__(g, H, loss, multiclass=True)
        self.basis, self.logits, self.path = basis, logits, path

    def lift(self, p: Tensor) -> Tensor:
        return p if self.basis is None else p @ self.basis.T

    def neg(self) -> SoftmaxModel:
        return SoftmaxModel(self.basis, self._g.neg(), self.H.neg(), self._loss, self.logits, self.path)


@torch.no_grad()
def softmax_quadratic(model: Affine, x: Tensor, y: Tensor) -> SoftmaxModel:
    """The quadratic model of softmax regression's cross-entropy at the batch (module docs): one thin QR of Wᵀ,
    then g̃ = R(p - e_y) and H̃ = R(diag(p) - ppᵀ)Rᵀ per row. ``x`` detached (n, d); ``y`` (n,) class codes."""
    W, b = softmax_parameters(model, x)
    U, R = torch.linalg.qr(W.T, mode="reduced")  # W^T = U R: U (d, k), R (k, C), k = min(d, C)
    logits = torch.addmm(b, x, W.T)
    loss, dz, S = softmax_logit_derivatives(logits, y)
    g = dz @ R.T
    H = torch.einsum("kc,ncj,lj->nkl", R, S, R)
    H = 0.5 * (H + H.mT)
    return SoftmaxModel(U, g, H, loss, logits)


@torch.no_grad()
def softmax_mlp_quadratic(model: MLP, x: Tensor, y: Tensor) -> SoftmaxModel:
    """The quadratic model of a one-hidden-layer MLP's cross-entropy over C outputs (module docs): in the row space
    of W (one thin QR of Wᵀ) when h < d, in the input space otherwise. ``x`` detached (n, d); ``y`` (n,) codes."""
    W = model.hidden.weight.detach().to(device=x.device, dtype=x.dtype)
    h = W.shape[0]
    b = model.hidden.bias.detach().to(x) if model.hidden.bias is not None else x.new_zeros(h)
    V = model.out.weight.detach().to(x)  # (C, h)
    c = model.out.bias.detach().to(x) if model.out.bias is not None else x.new_zeros(V.shape[0])
    phi, p1, p2 = activation_derivatives(model.activation, torch.addmm(b, x, W.T))
    logits = torch.addmm(c, phi, V.T)
    loss, u, S = softmax_logit_derivatives(logits, y)
    U, M = None, W
    if h < W.shape[1]:
        U, R = torch.linalg.qr(W.T, mode="reduced")
        M = R.T  # W = M Uᵀ
    J = (V.unsqueeze(0) * p1.unsqueeze(1)) @ M  # (n, C, k): V diag(φ′) M per row
    g = torch.bmm(u.unsqueeze(1), J).squeeze(1)  # J̃ᵀu
    H = J.mT @ S @ J  # J̃ᵀ S J̃
    curv = (u @ V) * p2  # (n, h): (Vᵀu) ⊙ φ″
    H = H + torch.einsum("hk,nh,hl->nkl", M, curv, M)
    H = 0.5 * (H + H.mT)
    return SoftmaxModel(U, g, H, loss, logits, SOFTMAX_MLP_PATH)
