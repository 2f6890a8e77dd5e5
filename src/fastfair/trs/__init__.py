r"""Batched exact solvers for the trust-region subproblem (TRS).

For every sample ``i`` of a batch,

.. math::

    \min_{p \in \mathbb{R}^d} \; q(p) = g^\top p + \tfrac12 p^\top H p
    \quad \text{s.t.} \quad \|p\|_2 \le r ,

with ``H`` symmetric but possibly indefinite. (To *maximise* a loss with gradient ``∇L`` and Hessian ``∇²L``,
pass ``g = -∇L`` and ``H = -∇²L``.) Every solver returns the global minimiser (interior, easy and hard case,
``g = 0``; see :mod:`fastfair.trs.spectral` for the optimality conditions and the numerics).

Which function to call
----------------------
* :func:`solve_trs` -- you have ``g`` (n, d) and a dense ``H`` (n, d, d) and want the answer *with its
  proof*: step, multiplier, hard-case flag, objective and, on demand, the KKT certificate
  (:meth:`TRSResult.certificate`). Input is validated. One batched ``eigh``. The reference the others are
  tested against.
* :func:`solve_trs_eig` -- the same, when you already have an eigendecomposition, possibly of a subspace
  (``g`` and ``H`` living in the span of ``V`` (n, d, k), as for the structured fast paths).
* :func:`solve_trs_fast` -- the step only, as fast as possible, from a dense ``H``: the training path. Same
  minimiser to working precision; no certificate, and ``g``/``H`` are not validated.
* :func:`solve_trs_operator` -- the step only, when ``H`` is known through products *and* can be formed
  for the few rows that need it (a :class:`QuadraticBatch`, e.g. :class:`fastfair.derivatives.FactoredQuadratic`
  or :class:`DenseQuadratic`): small ``k`` (up to a few dozen). :func:`solve_trs_fast` is this solver on
  :class:`DenseQuadratic`.
* :func:`solve_trs_krylov` -- ``H`` known *only* through per-row products ``hvp(V)`` (e.g. the input Hessian
  of a deep network, :class:`fastfair.derivatives.InputHessian`) at any ``d``: batched Lanczos / GLTR, never an
  ``(n, d, d)`` tensor; step, multiplier, hard-case flag and a certificate computed from products
  (:class:`KrylovTRSResult`). Its curvature probe (``probe_iter``, default 10 products per row) is what finds the
  hard case; ``probe_iter=0`` costs the probe nothing and is exact whenever ``g`` has weight on the leftmost
  eigenvector (the generic case) -- the choice of the training path.

How the package is built
------------------------
* :mod:`~fastfair.trs.spectral` -- the one spectral core: scaling, the secular-equation root finder, the hard
  case, the stable objective, the placement of the step in the ball.
* :mod:`~fastfair.trs.certified` -- :func:`solve_trs`, :func:`solve_trs_eig`, :class:`TRSResult`,
  :class:`TRSCertificate`: ``eigh`` + the spectral core + the certificate.
* :mod:`~fastfair.trs.operator` -- :func:`solve_trs_fast`, :func:`solve_trs_operator`: a certified boundary
  fixed point (products with ``H`` only) for the rows it can certify, ``eigh`` + the spectral core for the
  rest.
* :mod:`~fastfair.trs.krylov` -- :func:`solve_trs_krylov`, :class:`KrylovTRSResult` and the math of GLTR with
  its curvature probe; :mod:`~fastfair.trs.gltr` the batched iteration (per-row state, Lanczos and probe
  steps); :mod:`~fastfair.trs.lanczos` the column-list linear algebra (reorthogonalisation, breakdown).
* ``_checks`` -- input validation with one-line :class:`~fastfair.errors.FastfairError` messages, and
  :func:`radius_bounds`: the radii a dtype can be solved for (float32 about ``[9.9e-32, 4.1e31]``, float64
  ``[1.0e-292, 4.0e292]``); :func:`radius_tensor` turns a user's radius into a checked ``(n,)`` tensor.

The solvers run under :func:`torch.no_grad`: their outputs carry no autograd graph. Device and dtype follow
the inputs (float32 or float64, CPU or CUDA).
"""

from __future__ import annotations

from ._checks import radius_bounds, radius_tensor
from .certified import TRSCertificate, TRSResult, solve_trs, solve_trs_eig
from .krylov import KrylovTRSResult, solve_trs_krylov
from .operator import DenseQuadratic, QuadraticBatch, solve_trs_fast, solve_trs_operator

__all__ = [
    "DenseQuadratic",
    "KrylovTRSResult",
    "QuadraticBatch",
    "TRSCertificate",
    "TRSResult",
    "radius_bounds",
    "radius_tensor",
    "solve_trs",
    "solve_trs_eig",
    "solve_trs_fast",
    "solve_trs_krylov",
    "solve_trs_operator",
]
