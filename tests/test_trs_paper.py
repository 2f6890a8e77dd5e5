"""``trs-paper``: the reference code's TRS step, defect included, against the reference's own results.

Reference constants: computed once by running the authors' ``TrustRegionSubproblem`` (fast-n-fair at commit
91f6713, ``fastNfair/optimizers/tmp_optimizer.py``, with ``max_iter=100, per_sample=True`` as its training loop
builds it; torch 2.13.0 CPU). The subproblem instances were passed as a function returning the given g and H
(float64); the model instances through its ``ObjectiveFunctionMaximize(ObjectiveFunctionLogisticRegression(net),
y)`` on a hessQuik network with the weights below (float32, the batch of 5 rows below, so its derivatives carry
the 1/5 of the batch mean), one row at a time so that a row on which it raises does not hide the others.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastfair.errors import FastfairError
from fastfair.inner import SOLVERS, PaperTrustRegionAdversary, make_inner, solver_options
from fastfair.inner.trs_paper import BRANCHES, solve_trs_paper
from fastfair.losses import logistic_loss
from fastfair.models import MLP, Affine
from fastfair.trs import solve_trs

F64 = torch.float64
F32 = torch.float32

# ---- subproblem instances: min gᵀp + ½pᵀHp, ‖p‖ ≤ r, and the reference's step ---------------------------------
SUBPROBLEMS = {
    # indefinite H whose Newton step fits: the reference takes it (a saddle of q, not its minimiser)
    "indefinite-interior": ([0.1, 0.2], [[-1.0, 0.0], [0.0, 2.0]], 1.0, [0.1, -0.1], "interior-newton"),
    "definite-boundary": (
        [1.0, -2.0, 0.5],
        [[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 3.0]],
        0.3,
        [-0.12494443835680608, 0.2672202176788453, -0.05460991915683441],
        "boundary",
    ),
    "indefinite-boundary": (
        [0.5, 0.4],
        [[-0.2, 0.1], [0.1, 0.3]],
        0.5,
        [-0.44586572032211075, -0.22628247952450325],
        "boundary",
    ),
    # the affine model's shape: rank one, negative semidefinite; the Newton step on its range fits
    "rank-one-interior": (
        [-0.03, -0.04],
        [[-0.09, -0.12], [-0.12, -0.16]],
        1.0,
        [-0.12000000000000002, -0.16000000000000003],
        "interior-newton",
    ),
}


@pytest.mark.parametrize("name", list(SUBPROBLEMS))
@pytest.mark.parametrize("eigensolver", ["eigh", "eig"])
def test_subproblems_match_the_reference(name, eigensolver):
    g, H, r, expected, branch = SUBPROBLEMS[name]
    g, H, r = torch.tensor([g], dtype=F64), torch.tensor([H], dtype=F64), torch.tensor([r], dtype=F64)
    res = solve_trs_paper(g, H, r, eigensolver=eigensolver)
    torch.testing.assert_close(res.step, torch.tensor([expected], dtype=F64), rtol=0, atol=1e-12)
    assert BRANCHES[int(res.branch[0])] == branch


# ---- model instances ---------------------------------------------------------------------------------------------
X5 = [
    [0.49625658988952637, 0.7682217955589294],
    [0.08847743272781372, 0.13203048706054688],
    [0.30742281675338745, 0.6340786814689636],
    [0.4900934100151062, 0.8964447379112244],
    [0.455627977848053, 0.6323062777519226],
]
Y5 = [1.0, 0.0, 1.0, 0.0, 1.0]
RAISES = None  # the reference raised "BisectionMethod: g(a) and g(b) must be different signs" on this row
REFERENCE = {
    ("mlp", 0.05): [
        [0.4582727253437042, 0.8007367849349976],
        [0.13202448189258575, 0.10746109485626221],
        [0.2674959599971771, 0.6641759276390076],
        [0.5278355479240417, 0.8636494874954224],
        [0.4173939824104309, 0.6645268201828003],
    ],
    ("mlp", 0.3): [
        RAISES,
        [0.34955012798309326, -0.015756756067276],
        [0.05802510678768158, 0.8008143901824951],
        [0.5174348950386047, 1.1282567977905273],
        [0.47726351022720337, 0.4537351131439209],
    ],
    ("affine", 0.05): [
        [0.4685215651988983, 0.8098242878913879],
        [0.11621244251728058, 0.09042796492576599],
        [0.2796877920627594, 0.6756811738014221],
        [0.5178284049034119, 0.8548422455787659],
        [0.4278929531574249, 0.6739087700843811],
    ],
    ("affine", 0.3): [
        [0.32984650135040283, 1.0178369283676147],
        RAISES,  # a rounding-level second eigenvalue of the rank-one Hessian was kept there: noise-dependent
        [0.14101272821426392, 0.8836938142776489],
        [0.409014493227005, 1.0180630683898926],
        [0.28921788930892944, 0.8819214105606079],
    ],
}


def reference_models(dtype=F32):
    """The networks the reference constants were computed with (hessQuik stores the weight as (in, out))."""
    mlp = MLP(2, 3, "tanh").to(dtype)
    aff = Affine(2).to(dtype)
    with torch.no_grad():
        mlp.hidden.weight.copy_(torch.tensor([[2.0, -3.0, 1.5], [1.0, 2.5, -2.0]]).T)
        mlp.hidden.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        mlp.out.weight.copy_(torch.tensor([[1.5, -2.0, 1.0]]))
        mlp.out.bias.copy_(torch.tensor([0.2]))
        aff.linear.weight.copy_(torch.tensor([[4.0, -6.0]]))
        aff.linear.bias.copy_(torch.tensor([0.5]))
    return {"mlp": mlp, "affine": aff}


@pytest.mark.parametrize("key", list(REFERENCE))
def test_model_steps_match_the_reference(key):
    name, r = key
    m = reference_models()[name]
    x, y = torch.tensor(X5, dtype=F32), torch.tensor(Y5, dtype=F32)
    res = make_inner("trs-paper").perturb(m, x, y, r)
    exact = make_inner("trs").perturb(m, x, y, r)
    for i, expected in enumerate(REFERENCE[key]):
        if expected is RAISES:
            if name == "mlp":  # a genuine no-bracket row (eigenvalues far from the threshold)
                assert BRANCHES[int(res.extras["branch"][i])] == "no-bracket"
                torch.testing.assert_close(res.x_adv[i], exact.x_adv[i], rtol=0, atol=1e-6)
            continue
        torch.testing.assert_close(res.x_adv[i], torch.tensor(expected, dtype=F32), rtol=0, atol=2e-6)
    assert torch.isfinite(res.x_adv).all() and torch.isfinite(res.loss).all()


def test_the_defect_on_the_reference_mlp_lowers_the_loss_where_trs_raises_it():
    m = reference_models()["mlp"]
    x, y = torch.tensor(X5, dtype=F32), torch.tensor(Y5, dtype=F32)
    res = make_inner("trs-paper").perturb(m, x, y, 0.3)
    exact = make_inner("trs").perturb(m, x, y, 0.3)
    interior = res.extras["branch"] == BRANCHES.index("interior-newton")
    assert interior.tolist() == [False, False, False, True, True]
    clean = res.extras["clean_loss"]
    assert (res.loss[interior] < clean[interior]).all()
    assert (exact.loss >= clean).all()
    assert not res.extras["certified"][interior].any()


# ---- the constructed instance: an indefinite input Hessian whose Newton step fits --------------------------------


def _mlp64():
    m = MLP(2, 3, "tanh").to(F64)
    with torch.no_grad():
        m.hidden.weight.copy_(torch.tensor([[2.0, 1.0], [-3.0, 2.5], [1.5, -2.0]], dtype=F64))
        m.hidden.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=F64))
        m.out.weight.copy_(torch.tensor([[1.5, -2.0, 1.0]], dtype=F64))
        m.out.bias.copy_(torch.tensor([0.2], dtype=F64))
    return m


def test_constructed_indefinite_instance_newton_step_lowers_the_loss():
    m = _mlp64()
    x = torch.tensor([[0.4900934100151062, 0.8964447379112244]], dtype=F64)
    y = torch.tensor([0.0], dtype=F64)
    r = 0.3

    # independent oracle: autograd gradient and Hessian of the loss in x, in float64
    def loss(v):
        return logistic_loss(m(v.unsqueeze(0)).reshape(1), y)[0]

    grad = torch.autograd.functional.jacobian(loss, x[0])
    hess = torch.autograd.functional.hessian(loss, x[0])
    eig = torch.linalg.eigvalsh(hess)
    assert eig[0] < 0 < eig[1]  # indefinite
    newton = -torch.linalg.solve(hess, grad)  # the stationary point of the model: -(∇²ℓ)⁻¹∇ℓ
    assert newton.norm() <= r  # fits in the ball

    paper = make_inner("trs-paper").perturb(m, x, y, r)
    exact = make_inner("trs").perturb(m, x, y, r)
    assert BRANCHES[int(paper.extras["branch"][0])] == "interior-newton"
    torch.testing.assert_close(paper.x_adv[0] - x[0], newton, rtol=0, atol=1e-10)
    clean = loss(x[0])
    assert paper.loss[0] < clean  # the defect: the "worst case" lowers the loss
    assert exact.loss[0] > clean  # the certified maximiser raises it
    assert paper.extras["predicted_increase"][0] < 0
    assert not bool(paper.certificate.ok()[0]) and paper.certificate.min_eigenvalue[0] < 0
    assert bool(exact.certificate.ok()[0])


# ---- equal to trs where the defect cannot bite -------------------------------------------------------------------


def test_boundary_easy_case_rows_equal_trs_on_an_mlp():
    torch.manual_seed(3)
    m = MLP(4, 6, "tanh").to(F64)
    x = torch.randn(200, 4, dtype=F64)
    y = (torch.rand(200, dtype=F64) > 0.5).to(F64)
    r = 0.05  # small: the Newton step leaves the ball almost everywhere
    paper = make_inner("trs-paper").perturb(m, x, y, r)
    exact = make_inner("trs").perturb(m, x, y, r)
    boundary = paper.extras["branch"] == BRANCHES.index("boundary")
    easy = boundary & ~exact.extras["hard_case"] & paper.extras["certified"]
    assert easy.sum() > 150
    torch.testing.assert_close(paper.x_adv[easy], exact.x_adv[easy], rtol=0, atol=1e-7)
    # bisection to 1e-8 relative in λ: the multiplier agrees with the certified one to about that
    torch.testing.assert_close(paper.extras["multiplier"][easy], exact.extras["multiplier"][easy], rtol=1e-6, atol=0)


def test_affine_model_with_a_boundary_newton_step_equals_the_closed_form():
    # ‖w‖ small: the Newton step |σ - y|/(σ(1-σ)‖w‖) never fits in r, so every row is a boundary solve
    torch.manual_seed(4)
    m = Affine(3).to(F64)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[0.3, -0.2, 0.1]], dtype=F64))
    x = torch.randn(100, 3, dtype=F64)
    y = (torch.rand(100, dtype=F64) > 0.5).to(F64)
    r = 0.2
    paper = make_inner("trs-paper").perturb(m, x, y, r)
    exact = make_inner("trs").perturb(m, x, y, r)
    assert (paper.extras["branch"] == BRANCHES.index("boundary")).all()
    torch.testing.assert_close(paper.x_adv, exact.x_adv, rtol=0, atol=1e-9)
    assert paper.extras["certified"].all()


def test_affine_confident_rows_take_the_interior_step_towards_the_label():
    # ‖w‖ large: on confidently classified points -(σ - y)w/(σ(1-σ)‖w‖²) fits and lowers the loss
    m = Affine(2).to(F64)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[8.0, -6.0]], dtype=F64))
        m.linear.bias.zero_()
    x = torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=F64)  # z = 4, -4
    y = torch.tensor([1.0, 0.0], dtype=F64)
    r = 0.2
    paper = make_inner("trs-paper", batch_size=1).perturb(m, x, y, r)
    w = torch.tensor([8.0, -6.0], dtype=F64)
    z = torch.tensor([4.0, -4.0], dtype=F64)
    sig = torch.sigmoid(z)
    expected = -((sig - y) / (sig * (1 - sig) * w.dot(w)))[:, None] * w
    assert (paper.extras["branch"] == BRANCHES.index("interior-newton")).all()
    torch.testing.assert_close(paper.x_adv - x, expected, rtol=1e-12, atol=1e-14)
    assert (paper.loss < paper.extras["clean_loss"]).all()


# ---- degenerate input: never NaN -----------------------------------------------------------------------------------


def test_all_eigenvalues_dropped_gives_the_exact_step_not_a_crash():
    g = torch.tensor([[3e-3, -4e-3], [0.0, 0.0]], dtype=F64)
    H = torch.tensor([[[1e-12, 0.0], [0.0, -2e-12]], [[0.0, 0.0], [0.0, 0.0]]], dtype=F64)
    r = torch.tensor([0.5, 0.5], dtype=F64)
    res = solve_trs_paper(g, H, r)
    assert [BRANCHES[int(b)] for b in res.branch] == ["degenerate", "degenerate"]
    torch.testing.assert_close(res.step, solve_trs(g, H, r).step, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.step[0], torch.tensor([-0.3, 0.4], dtype=F64), rtol=1e-6, atol=0)
    assert torch.isfinite(res.step).all() and torch.isfinite(res.multiplier).all()


def test_no_bracket_gives_the_exact_step_not_an_error():
    # bracket [0, 2‖g‖/r + 0.001] = [0, 0.006657]: s₁ + hi ≈ 6e-5 leaves ‖p(hi)‖ > r, φ > 0 at both ends
    g = torch.tensor([[1e-3, 1e-3]], dtype=F64)
    H = torch.tensor([[[-0.0066, 0.0], [0.0, 0.001]]], dtype=F64)
    r = torch.tensor([0.5], dtype=F64)
    res = solve_trs_paper(g, H, r)
    assert BRANCHES[int(res.branch[0])] == "no-bracket"
    exact = solve_trs(g, H, r)
    torch.testing.assert_close(res.step, exact.step, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.multiplier, exact.multiplier, rtol=0, atol=1e-12)


def test_zero_weights_give_a_zero_step_and_no_nan():
    m = Affine(3).to(F64)
    with torch.no_grad():
        m.linear.weight.zero_()
    x = torch.randn(4, 3, dtype=F64)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64)
    res = make_inner("trs-paper").perturb(m, x, y, 0.1)
    assert (res.extras["branch"] == BRANCHES.index("degenerate")).all()
    torch.testing.assert_close(res.x_adv, x, rtol=0, atol=0)
    for value in (res.loss, res.certificate.stationarity, res.certificate.max_violation()):
        assert torch.isfinite(value).all()


def test_non_finite_derivatives_are_refused():
    g = torch.tensor([[math.nan, 0.0]], dtype=F64)
    H = torch.eye(2, dtype=F64)[None]
    with pytest.raises(FastfairError, match="not finite"):
        solve_trs_paper(g, H, torch.tensor([1.0], dtype=F64))


# ---- registry, options, limits -----------------------------------------------------------------------------------


def test_registered_right_after_trs():
    assert SOLVERS[SOLVERS.index("trs") + 1] == "trs-paper"
    assert isinstance(make_inner("trs-paper"), PaperTrustRegionAdversary)
    opts = solver_options("trs-paper")
    assert opts["max_iter"] == 100 and opts["tol"] == 1e-8 and opts["batch_size"] is None


@pytest.mark.parametrize(
    ("options", "match"),
    [({"eigensolver": "svd"}, "eigensolver"), ({"batch_size": 0}, "batch_size"), ({"tol": -1.0}, "tol")],
)
def test_bad_options_are_one_line_errors(options, match):
    with pytest.raises(FastfairError, match=match):
        make_inner("trs-paper", **options)


def test_a_huge_dense_hessian_is_refused():
    m = Affine(600)
    x, y = torch.zeros(2, 600), torch.zeros(2)
    with pytest.raises(FastfairError, match="trs-paper decomposes a dense 600x600 Hessian"):
        make_inner("trs-paper").perturb(m, x, y, 0.1)


def test_batch_size_only_moves_the_eigenvalue_threshold():
    # the reference's 1/b scaling: same step whenever no eigenvalue sits between the two thresholds
    m = reference_models(F64)["mlp"]
    x, y = torch.tensor(X5, dtype=F64), torch.tensor(Y5, dtype=F64)
    a = make_inner("trs-paper").perturb(m, x, y, 0.05)
    b = make_inner("trs-paper", batch_size=1).perturb(m, x, y, 0.05)
    torch.testing.assert_close(a.x_adv, b.x_adv, rtol=0, atol=1e-9)
    torch.testing.assert_close(a.extras["multiplier"], b.extras["multiplier"], rtol=1e-7, atol=0)


def test_training_with_trs_paper_runs_and_stays_in_the_ball():
    from fastfair.config import TrainConfig
    from fastfair.training import train_arrays

    gen = torch.Generator().manual_seed(0)
    X = torch.rand(60, 2, generator=gen, dtype=F64).numpy()
    y = (X[:, 0] > 0.5).astype(float)
    cfg = TrainConfig(solver="trs-paper", radius=0.1, epochs=2, batch_size=10, model="mlp", hidden=4)
    result = train_arrays(X, y, cfg)
    x = torch.tensor(X, dtype=torch.float32)
    res = make_inner("trs-paper").perturb(result.model, x, torch.tensor(y, dtype=torch.float32), 0.1)
    assert (torch.linalg.vector_norm(res.x_adv - x, dim=1) <= 0.1 * (1 + 1e-6)).all()


# ---- the paper protocol's trs-paper cells --------------------------------------------------------------------------


def test_paper_protocol_runs_trs_paper_beside_trs():
    from fastfair.experiments.paper_protocol import DEFECT_MODEL, PAPER_SOLVERS, paper_grid

    assert PAPER_SOLVERS.index("trs-paper") == PAPER_SOLVERS.index("trs") + 1
    full = paper_grid()[0].cells()
    for dataset in ("unfair2d", "adult", "lsat"):
        for model in ("affine", DEFECT_MODEL):
            mine = [c for c in full if c.dataset == dataset and c.model == model]
            trs = {(c.radius, c.seed) for c in mine if c.solver == "trs"}
            assert trs and {(c.radius, c.seed) for c in mine if c.solver == "trs-paper"} == trs
    assert {c.solver for c in full if c.model == DEFECT_MODEL} == {"none", "trs", "trs-paper"}

    quick = paper_grid(quick=True)[0].cells()
    paper = {(c.dataset, c.model, c.radius) for c in quick if c.solver == "trs-paper"}
    assert paper == {("unfair2d", "affine", 0.18), ("unfair2d", DEFECT_MODEL, 0.1)}
    mlp = {(c.solver, c.radius) for c in quick if c.model == DEFECT_MODEL}
    assert mlp == {("none", 0.0), ("trs", 0.1), ("trs-paper", 0.1)}


def test_the_earlier_paper_cells_keep_their_ids_so_stored_results_are_reused():
    """Pinned oracle: the ids of the paper grid before trs-paper was added (count and sha256 of the id sequence),
    which the grid without its trs-paper and MLP cells must still give, in the same order."""
    import hashlib

    from fastfair.experiments.paper_protocol import paper_grid

    for quick, count, digest in (
        (True, 39, "ff9975cc5a1ff84a80c1b76e2494fa62a943862c69b29d870c09e18ff9518c31"),
        (False, 575, "958e642ae1d5178c7aea191a7956ac0dce72ea6d99c990e8ff90c547097342a6"),
    ):
        cells = paper_grid(quick=quick)[0].cells()
        ids = [c.cell_id for c in cells if c.solver != "trs-paper" and c.model == "affine"]
        assert (len(ids), hashlib.sha256(",".join(ids).encode()).hexdigest()) == (count, digest)
    grid, _ = paper_grid(seeds=3, pgd_paper_seeds=1)
    # affine: 3 seeds x (a none cell per dataset + 5 robust solvers x (11 + 6 + 11) radii), less pgd-paper's
    # seeds 1 and 2; MLP: 3 seeds x (a none cell per dataset + trs and trs-paper x 28 radii)
    assert grid.count() == len(grid.cells()) == (3 * (3 + 5 * 28) - 2 * 28) + 3 * (3 + 2 * 28)
