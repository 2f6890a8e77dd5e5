r"""Input derivatives of the classification loss, and the quadratic model of the loss in the input.

For a model f and a sample (x, y) the loss is L(x) = ℓ(f(x), y) (:mod:`fastfair.losses`); by the chain rule

    ∇ₓL = ℓ′ ∇f,        ∇²ₓL = ℓ″ ∇f ∇fᵀ + ℓ′ ∇²f.

Which function to call
----------------------
* :func:`quadratic_model` -- "what is the quadratic model of the loss in the input at this batch?", for any
  model: an object with the gradient, Hessian products, the dense Hessian on demand, a reduced basis where there
  is one, and the ``path`` it took (rank-one closed form, factored one-hidden-layer form, dense, or
  Hessian-vector products). :func:`choose_path` says which path, without computing anything. This is what the
  TRS adversary asks.
* :func:`loss_input_derivatives` -- the per-sample loss, gradient (n, d) and dense Hessian (n, d, d): closed
  forms for the built-in models, ``torch.func`` otherwise.
* :func:`mlp_subspace_derivatives` / :func:`mlp_reduced_derivatives` -- the one-hidden-layer MLP's derivatives
  in the row space of its first layer (reduced, dense or factored).
* :func:`input_hessian` -- per-row gradient and Hessian-vector products of any row-wise module, without ever
  forming a Hessian (:class:`InputHessian`).

How the package is built
------------------------
* :mod:`.activations` -- φ, φ′, φ″ of the MLP's activations, in closed form.
* :mod:`.analytic` -- the closed forms of the affine model and the one-hidden-layer MLP, the ``torch.func``
  fallback, the row-space reduction.
* :mod:`.factored` -- :class:`FactoredQuadratic`, the MLP's Hessian as rank one plus a congruence.
* :mod:`.hvp` -- Hessian-vector products of a batch by double backward (which models qualify, and the check).
* :mod:`.layered` -- the built-in MLPs' (any depth) gradient and Hessian-vector products in closed form
  (R-operator over cached activations), in the row space of the first layer.
* :mod:`.softmax` -- softmax regression (C ≥ 3 classes): the cross-entropy's gradient Wᵀ(p - e_y) and Hessian
  Wᵀ(diag(p) - ppᵀ)W in the row space of W, and why the TRS there is exact in k ≤ C dimensions; the same
  reduction for the one-hidden-layer MLP with C outputs.
* :mod:`.quadratic` -- the quadratic-model protocol, its implementations and the one place the path is
  chosen.
"""

from __future__ import annotations

from .activations import ANALYTIC_ACTIVATIONS, activation_derivatives
from .analytic import (
    BACKENDS,
    InputDerivatives,
    SubspaceDerivatives,
    affine_parameters,
    check_backend,
    has_analytic_derivatives,
    loss_input_derivatives,
    mlp_factored,
    mlp_parameters,
    mlp_reduced_derivatives,
    mlp_subspace_derivatives,
    row_space_basis,
)
from .factored import FactoredQuadratic, dense_is_cheaper
from .hvp import METHODS, InputHessian, check_row_independent, input_hessian
from .layered import LayeredInputHessian, has_layered_derivatives, layered_input_hessian
from .quadratic import (
    DENSE_MAX_DIM,
    PATHS,
    QUADRATIC_BACKENDS,
    DenseModel,
    FactoredModel,
    KrylovModel,
    QuadraticModel,
    RankOneModel,
    SoftmaxModel,
    choose_path,
    models_multiclass,
    quadratic_model,
)
from .softmax import (
    SOFTMAX_MLP_PATH,
    SOFTMAX_PATH,
    has_softmax_derivatives,
    has_softmax_mlp_derivatives,
    softmax_mlp_quadratic,
    softmax_quadratic,
)

__all__ = [
    "ANALYTIC_ACTIVATIONS",
    "BACKENDS",
    "DENSE_MAX_DIM",
    "METHODS",
    "PATHS",
    "QUADRATIC_BACKENDS",
    "SOFTMAX_MLP_PATH",
    "SOFTMAX_PATH",
    "DenseModel",
    "FactoredModel",
    "FactoredQuadratic",
    "InputDerivatives",
    "InputHessian",
    "KrylovModel",
    "LayeredInputHessian",
    "QuadraticModel",
    "RankOneModel",
    "SoftmaxModel",
    "SubspaceDerivatives",
    "activation_derivatives",
    "affine_parameters",
    "check_backend",
    "check_row_independent",
    "choose_path",
    "dense_is_cheaper",
    "has_analytic_derivatives",
    "has_layered_derivatives",
    "has_softmax_derivatives",
    "has_softmax_mlp_derivatives",
    "input_hessian",
    "layered_input_hessian",
    "loss_input_derivatives",
    "mlp_factored",
    "mlp_parameters",
    "mlp_reduced_derivatives",
    "mlp_subspace_derivatives",
    "models_multiclass",
    "quadratic_model",
    "row_space_basis",
    "softmax_mlp_quadratic",
    "softmax_quadratic",
]
