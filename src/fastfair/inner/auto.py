"""The automatic inner maximiser: pick TRS or PGD from the model's structure, then delegate to it.

    inner = make_inner("auto")
    solver, reason = inner.choose(model, d)       # e.g. ("pgd", "the model is piecewise linear (relu) ...")
    result = inner.perturb(model, x, y, radius)   # exactly the chosen solver's result; extras["auto"] names it

The rules, in order:

1. **Affine** (:class:`~fastfair.models.Affine`) -> ``"trs"``. ∇ₓL = ℓ′w and ∇²ₓL = ℓ″wwᵀ both lie along w, so
   the TRS step has the closed form δ = r·sign(σ - y)·w/‖w‖, which is also the exact maximiser of the true loss
   over the ball, for the price of one gradient.
2. **Piecewise linear** (relu, leaky_relu, ReLU6, hard tanh, max pooling, ...) -> ``"pgd"``. On each
   activation region f is linear, so ∇²f = 0 there and the input Hessian of the loss ℓ(f(x), y) is

       ∇²ₓL = ℓ″∇f∇fᵀ + ℓ′∇²f = ℓ″∇f∇fᵀ        (rank one, along ∇ₓL = ℓ′∇f).

   The quadratic model ℓ′∇fᵀp + ½ℓ″(∇fᵀp)² depends on p only through t = ∇fᵀp/‖∇f‖ and is convex in t
   (ℓ″ ≥ 0), so its maximiser over ‖p‖ ≤ r is an end point, p = r·∇ₓL/‖∇ₓL‖: the TRS step *is* one normalised
   gradient step of length r, and its curvature adds nothing. What a quadratic model cannot see are the kinks,
   where ∇f changes. PGD walks the same direction first (while no kink is crossed, its 10 steps of 0.25·r reach
   that very point on the boundary and stay there) and then re-reads ∇f after every step, so it follows the
   loss across the kinks; it returns the best of its iterates.
   With C ≥ 3 classes (``model.n_classes``) an affine model is softmax regression -> ``"trs"``: ∇²ₓL =
   Wᵀ(diag(p) - ppᵀ)W has rank ≤ C - 1 in the row space of W, and the TRS solves the quadratic model exactly
   in those k ≤ C dimensions (path ``"softmax-subspace"``). A piecewise-linear multiclass model still goes to
   ``"pgd"``: on each activation region ∇²ₓL = Jᵀ(diag(p) - ppᵀ)J with J the Jacobian of the C logits -- the
   softmax's curvature, not rank one -- but the kinks, where J changes, are what a quadratic model cannot see
   and PGD follows.
3. **Everything else** (smooth: tanh, sigmoid, softplus, gelu, ...) -> ``"trs"``: the exact maximiser of the
   second-order model over the ball, curvature included (closed form, factored, dense or Krylov, whichever
   path the TRS adversary takes for the model).

How a model is recognised as piecewise linear:

* fastfair's :class:`~fastfair.models.MLP` and :class:`~fastfair.models.DeepMLP`: by their ``activation``
  attribute (:data:`~fastfair.vocabulary.PIECEWISE_LINEAR_ACTIVATIONS`);
* any other ``nn.Module``: by walking ``model.modules()``. Piecewise-linear layers (:data:`PIECEWISE_LINEAR`:
  ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.ReLU6``, ``nn.Hardtanh``, max pooling, ...) with no smooth activation
  layer (:data:`SMOOTH`) make the model piecewise linear. A model mixing both is not (its Hessian is not rank
  one in general) and goes to TRS.
* A function called inside ``forward`` (``torch.relu(x)``, ``F.relu(x)``) is not a module and cannot be seen
  by the walk. When the walk finds no activation layer at all, a **probe** decides (``probe=True``, the
  default): the input gradient ∇f is taken at :data:`PROBE_ROWS` standard-normal rows and again after a move
  of length :data:`PROBE_STEP` along a random direction, with the model in evaluation mode (no dropout noise;
  its modes are restored afterwards). A piecewise-linear f has a piecewise-constant ∇f,
  computed from the same weights and the same activation pattern at both points, so it comes out bitwise the
  same unless a kink lies within the move (rare at this step length); a smooth f changes it by about
  PROBE_STEP·‖∇²f v‖, far above rounding. The probe reads the model as piecewise linear when at least half of
  the rows with a non-zero gradient show an unchanged gradient (and as linear, hence ``"trs"``, when ∇f is also
  the same at every row). It costs two gradient evaluations on 8 rows, once per model and input dimension
  (the answer is cached). A model it misreads (e.g. with all gradients zero at the probe rows) is treated as
  smooth; pass ``solver="pgd"`` (or ``"trs"``) to decide yourself.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ..errors import FastfairError
from ..models import MLP, Affine, DeepMLP
from ..validation import check_bool
from ..vocabulary import PIECEWISE_LINEAR_ACTIVATIONS
from .base import InnerMaximizer, InnerResult, detached_forward

#: Layers that compute a piecewise-linear function of their input (∇² = 0 away from their kinks).
PIECEWISE_LINEAR: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Threshold,
    nn.Hardshrink,
    nn.Softshrink,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
#: Activation layers with non-zero curvature: a model holding one is not piecewise linear.
SMOOTH: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Mish,
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Hardswish,
    nn.Softmax,
    nn.LogSoftmax,
)

#: Rows the probe evaluates ∇f at (standard normal, from a fixed seed: the probe never touches torch's RNG).
PROBE_ROWS = 8
#: Length of the probe's move. Short enough that a piecewise-linear network rarely crosses a kink (a unit of a
#: layer changes sign with probability about 0.4·PROBE_STEP/√d per row), long enough that a smooth one changes
#: its gradient by far more than one rounding unit, even in float32.
PROBE_STEP = 1e-3
#: Seed of the probe's rows and directions.
PROBE_SEED = 0

_REASONS = {
    "affine": (
        "the model is affine (logistic regression): the TRS step has the closed form r·sign(σ - y)·w/‖w‖, "
        "the exact maximiser of the loss over the ball, for the cost of one gradient."
    ),
    "softmax": (
        "the model is softmax regression with {evidence}: its input Hessian Wᵀ(diag(p) - ppᵀ)W has rank at most "
        "C - 1 in the row space of W, and the TRS maximises the loss's quadratic model exactly there, for the "
        "cost of one small eigendecomposition per row."
    ),
    "piecewise-linear-multiclass": (
        "the model is piecewise linear ({evidence}) with several outputs: on each activation region its input "
        "Hessian is Jᵀ(diag(p) - ppᵀ)J, the softmax's curvature through the constant logit Jacobian J; PGD "
        "re-reads the gradient after every step, following the loss across the kinks that a quadratic model "
        "cannot see."
    ),
    "linear": (
        "the model is linear in its input ({evidence}): the TRS step along its fixed gradient direction is the "
        "exact maximiser of the loss over the ball, for the cost of one gradient."
    ),
    "piecewise-linear": (
        "the model is piecewise linear ({evidence}): its input Hessian through the logistic loss is rank one, "
        "ℓ″∇f∇fᵀ, so one TRS step is just the normalised gradient step of length r; PGD walks that direction "
        "too and then re-reads the gradient after every step, following the loss across the kinks that a "
        "quadratic model cannot see."
    ),
    "mixed": (
        "the model mixes piecewise-linear and smooth layers ({evidence}): its input Hessian is not rank one "
        "in general, so the TRS uses curvature that gradient steps do not see."
    ),
    "smooth": (
        "the model is smooth ({evidence}): the TRS maximises the loss's second-order model exactly over the "
        "ball, using curvature that gradient steps do not see."
    ),
}


class AutoChoice(NamedTuple):
    """The solver :class:`AutoAdversary` picked for a model, and why (one full sentence)."""

    solver: str
    reason: str


class AutoAdversary(InnerMaximizer):
    """Choose ``"trs"`` or ``"pgd"`` per model (see the module docs) and delegate to it.

    Args:
        trs: options of the TRS candidate (as for ``make_inner("trs", ...)``), e.g. ``{"certify": False}``.
        pgd: options of the PGD candidate (as for ``make_inner("pgd", ...)``), e.g. ``{"steps": 20}``.
        probe: decide by a numerical probe when the model's modules show no activation layer (see module docs).

    :meth:`perturb` returns exactly what the chosen solver returns, with ``extras["auto"] = {"solver", "reason"}``
    added; :attr:`last_choice` holds the latest :class:`AutoChoice`.
    """

    name = "auto"

    def __init__(
        self,
        *,
        trs: Mapping[str, Any] | None = None,
        pgd: Mapping[str, Any] | None = None,
        probe: bool = True,
    ) -> None:
        from . import make_inner  # the registry in the package imports this module

        self.candidates: dict[str, InnerMaximizer] = {}
        for name, options in (("trs", trs), ("pgd", pgd)):
            if options is None:
                options = {}
            if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
                raise FastfairError(f"auto option {name} must be a mapping of {name} options, got {options!r}")
            try:
                self.candidates[name] = cast(InnerMaximizer, make_inner(name, **options))  # never None here
            except FastfairError as exc:
                raise FastfairError(f"auto option {name}: {exc}") from None
        self.probe = check_bool("probe", probe)
        self.last_choice: AutoChoice | None = None
        self._probed: weakref.WeakKeyDictionary[nn.Module, dict[int, tuple[str, str]]] = weakref.WeakKeyDictionary()
        self._options = {
            "trs": self.candidates["trs"].options(),
            "pgd": self.candidates["pgd"].options(),
            "probe": self.probe,
        }

    def choose(self, model: nn.Module, d: int) -> AutoChoice:
        """The solver for ``model`` on inputs of dimension ``d``, and the reason, as ``(solver, reason)``."""
        if not isinstance(model, nn.Module):
            raise FastfairError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        kind, evidence = self._classify(model, d)
        solver = "pgd" if kind.startswith("piecewise-linear") else "trs"
        return AutoChoice(solver, _REASONS[kind].format(evidence=evidence))

    def resolve(self, model: nn.Module, d: int) -> InnerMaximizer:
        """:meth:`choose`, recorded in :attr:`last_choice`; returns the chosen solver itself."""
        self.last_choice = choice = self.choose(model, d)
        return self.candidates[choice.solver]

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> Tensor:
        """The chosen solver's :meth:`~fastfair.inner.base.InnerMaximizer.attack`."""
        return self.resolve(model, x.shape[1]).attack(model, x, y, r)

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        self.last_choice = choice = self.choose(model, x.shape[1])
        res = self.candidates[choice.solver]._perturb(model, x, y, r)
        res.extras["auto"] = choice._asdict()
        return res

    # ---------------------------------------------------------------------------------------------------

    def _classify(self, model: nn.Module, d: int) -> tuple[str, str]:
        """(kind, evidence): kind one of the keys of ``_REASONS``, evidence a phrase saying how it was seen."""
        n_classes = getattr(model, "n_classes", 2)
        if isinstance(model, Affine):
            return ("softmax", f"{n_classes} classes") if n_classes > 2 else ("affine", "")
        if isinstance(model, MLP | DeepMLP):
            kind = "piecewise-linear" if model.activation in PIECEWISE_LINEAR_ACTIVATIONS else "smooth"
            if kind == "piecewise-linear" and n_classes > 2:
                kind = "piecewise-linear-multiclass"
            return kind, f"{model.activation} activations"
        linear, smooth = _activation_layers(model)
        if linear and smooth:
            return "mixed", f"found {_names(linear)} and {_names(smooth)}"
        if linear:
            return "piecewise-linear", f"found {_names(linear)}"
        if smooth:
            return "smooth", f"found {_names(smooth)}"
        if not self.probe:
            return "smooth", "no activation layer found, and the probe is off"
        cached = self._probed.setdefault(model, {})
        if d not in cached:
            cached[d] = _probe(model, d)
        return cached[d]


def _activation_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the piecewise-linear and of the smooth activation layers among ``model.modules()``, in order."""
    linear: list[str] = []
    smooth: list[str] = []
    for module in model.modules():
        if isinstance(module, MLP | DeepMLP):  # fastfair's own, nested in a user's module
            bucket = linear if module.activation in PIECEWISE_LINEAR_ACTIVATIONS else smooth
            bucket.append(f"{type(module).__name__}({module.activation})")
        elif isinstance(module, PIECEWISE_LINEAR):
            linear.append(f"nn.{type(module).__name__}")
        elif isinstance(module, SMOOTH):
            smooth.append(f"nn.{type(module).__name__}")
    return linear, smooth


def _names(found: list[str]) -> str:
    return ", ".join(dict.fromkeys(found))


def _probe(model: nn.Module, d: int) -> tuple[str, str]:
    """Classify a model whose modules show no activation layer by the change of ∇f (see the module docs)."""
    like = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), None)
    dtype = like.dtype if like is not None and like.dtype in (torch.float32, torch.float64) else torch.float32
    device = like.device if like is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.randn(PROBE_ROWS, d, generator=gen, dtype=torch.float64)
    v = torch.randn(PROBE_ROWS, d, generator=gen, dtype=torch.float64)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-300)
    x = x.to(device=device, dtype=dtype)
    moved = (x.double() + PROBE_STEP * v.to(device)).to(dtype)
    forward = detached_forward(model)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # the shape of f, not the noise of dropout or the batch coupling of batch norm in training
    try:
        g0, g1 = _logit_gradient(forward, x), _logit_gradient(forward, moved)
    finally:
        for module, training in modes:
            module.training = training
    live = (g0 != 0).any(dim=1) | (g1 != 0).any(dim=1)
    if not bool(live.any()):
        return "smooth", "no activation layer found, and the probe's input gradients were all zero"
    same = (g0 == g1).all(dim=1) & live
    if 2 * int(same.sum()) < int(live.sum()):
        return "smooth", "no activation layer found; the probe saw its input gradient change along a short move"
    if bool((g0 == g0[:1]).all()) and bool(live.all()):
        return "linear", "no activation layer found; the probe saw the same input gradient at every row"
    return "piecewise-linear", (
        "no activation layer found; the probe saw its input gradient stay exactly the same along a short move, "
        "as for a functional relu"
    )


def _logit_gradient(forward: Any, x: Tensor) -> Tensor:
    """∇f at every row of ``x`` (n, d): the gradient of Σᵢ f(xᵢ), rows assumed independent."""
    with torch.enable_grad():
        xv = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(forward(xv).sum(), xv)
    return grad
