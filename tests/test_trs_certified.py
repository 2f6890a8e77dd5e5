"""The certified solvers :func:`fastfair.trs.solve_trs` and :func:`fastfair.trs.solve_trs_eig` against the float64
oracle of ``trs_oracle``: every instance kind, d up to 100, r over 16 decades, float32 and float64, batching,
properties, and the certificate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastfair.trs import TRSCertificate, TRSResult, solve_trs, solve_trs_eig
from trs_oracle import (
    DIMS,
    instances_for,
    natural_scale,
    objective_close,
    oracle_trs,
    problems,
    q_of,
    rand_orth,
    solve_np,
    stack,
    t64,
    vnorm,
)

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


# ------------------------------------------------------------------------------------------------------------
# The solver against the oracle: hundreds of float64 instances, every kind, d up to 100, r over 16 decades
# ------------------------------------------------------------------------------------------------------------

ALWAYS_HARD = ("hard", "hard_repeated")  # c = 0 on the eigenspace of λ₁ < 0 and ‖p(-λ₁)‖ < r


@pytest.mark.parametrize("d", DIMS)
def test_solver_matches_oracle_float64(d: int) -> None:
    instances = instances_for(d, seed=1000 + d)
    G, HH, R = stack(instances)
    res = solve_np(G, HH, R)  # one batched call for all kinds at once
    assert res.step.shape == (len(instances), d) and res.step.dtype == torch.float64
    for t in (res.step, res.multiplier, res.objective):
        assert torch.isfinite(t).all()
    violation = res.certificate().max_violation().numpy()
    for j, (kind, g, H, r) in enumerate(instances):
        p = res.step[j].numpy()
        _, q_star, lam_star = oracle_trs(g, H, r)
        where = f"d={d} kind={kind} r={r:.3g}"
        assert vnorm(p) <= r * (1 + 1e-12), where
        assert objective_close(q_of(g, H, p), q_star, g, H, r), (where, q_of(g, H, p), q_star)
        assert objective_close(float(res.objective[j]), q_star, g, H, r), (
            where,
            float(res.objective[j]),
            q_star,
        )
        lam = float(res.multiplier[j])
        assert lam >= 0, where
        assert abs(lam - lam_star) <= 1e-9 * (np.linalg.norm(H, 2) + vnorm(g) / r), (
            where,
            lam,
            lam_star,
        )
        assert violation[j] <= 1e-12, (where, violation[j])
        if kind in ALWAYS_HARD:
            assert bool(res.hard_case[j]), where
        if kind == "interior":
            assert lam == 0 and vnorm(p) < r and not bool(res.hard_case[j]), where
        if kind in ("easy", "psd_boundary", "near_hard", "repeated_min", "zero_hess"):
            assert not bool(res.hard_case[j]), where


@pytest.mark.slow
def test_solver_matches_oracle_float64_many() -> None:
    for d in (1, 2, 4, 8, 16, 32, 64, 128, 200):
        for seed in range(8):
            instances = instances_for(d, seed=50_000 + 100 * d + seed)
            G, HH, R = stack(instances)
            res = solve_np(G, HH, R)
            assert bool(res.certificate().ok(1e-12).all())
            for j, (kind, g, H, r) in enumerate(instances):
                _, q_star, _ = oracle_trs(g, H, r)
                assert objective_close(float(res.objective[j]), q_star, g, H, r), (d, seed, kind)
                assert float(res.step[j].norm()) <= r


# ------------------------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ------------------------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**31 - 1))
def test_properties(problem: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int) -> None:
    G, HH, R = problem
    res = solve_np(G, HH, R)
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert torch.isfinite(res.multiplier).all() and bool((res.multiplier >= 0).all())
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R)).all())  # feasible, exactly
    assert bool(res.certificate().ok(1e-10).all())
    rng = np.random.default_rng(seed)
    for j in range(G.shape[0]):
        g, H, r = G[j], HH[j], float(R[j])
        p = res.step[j].numpy()
        N = natural_scale(g, H, r)
        q = q_of(g, H, p)
        assert abs(q - float(res.objective[j])) <= 1e-12 * N + 1e-300
        assert q <= 1e-13 * N  # q(0) = 0 is feasible
        d = g.shape[0]
        z = rng.standard_normal((64, d))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        z *= r * np.concatenate([np.ones(32), rng.uniform(0, 1, 32) ** (1 / d)])[:, None]  # sphere + ball
        z = np.concatenate([z, r * np.eye(d), -r * np.eye(d)])
        if vnorm(g) > 0:
            z = np.concatenate([z, -r * g[None] / vnorm(g)])
        qz = z @ g + 0.5 * np.einsum("ni,ij,nj->n", z, H, z)
        assert q <= qz.min() + 1e-12 * N


@settings(max_examples=40, deadline=None)
@given(problems())
def test_float32_properties(problem: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    G, HH, R = problem
    res = solve_np(G, HH, R, dtype=torch.float32)
    assert res.step.dtype == torch.float32
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R, dtype=torch.float32)).all())
    assert bool(res.certificate().ok().all())


# ------------------------------------------------------------------------------------------------------------
# float32, batching, the eigendecomposition entry point
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 10, 50])
def test_float32_close_to_float64_oracle(d: int) -> None:
    instances = instances_for(d, seed=300 + d)
    G, HH, R = stack(instances)
    G32, H32, R32 = G.astype(np.float32), HH.astype(np.float32), R.astype(np.float32)
    res = solve_np(G32, H32, R32, dtype=torch.float32)
    assert res.step.dtype == res.objective.dtype == res.multiplier.dtype == torch.float32
    assert torch.isfinite(res.step).all() and torch.isfinite(res.objective).all()
    assert bool((res.step.norm(dim=-1) <= torch.as_tensor(R32)).all())
    assert bool(res.certificate().ok().all())  # 1e4 eps = 1.2e-3 relative
    for j, (kind, *_) in enumerate(instances):
        g, H, r = G32[j].astype(np.float64), H32[j].astype(np.float64), float(R32[j])
        _, q_star, _ = oracle_trs(g, H, r)  # the oracle on the float32-rounded data
        scale = max(abs(q_star), 1e-2 * natural_scale(g, H, r))
        assert abs(float(res.objective[j]) - q_star) <= 1e-4 * scale, (kind, float(res.objective[j]), q_star)
        assert abs(q_of(g, H, res.step[j].double().numpy()) - q_star) <= 1e-4 * scale, kind


def test_batch_equals_one_by_one() -> None:
    instances = instances_for(5, seed=77)
    G, HH, R = stack(instances)
    batch = solve_np(G, HH, R)
    for j in range(len(instances)):
        single = solve_np(G[j], HH[j], R[j])
        r = float(R[j])
        torch.testing.assert_close(single.step[0], batch.step[j], rtol=1e-12, atol=1e-13 * r)
        torch.testing.assert_close(single.multiplier[0], batch.multiplier[j], rtol=1e-12, atol=1e-300)
        N = natural_scale(G[j], HH[j], r)
        assert abs(float(single.objective[0]) - float(batch.objective[j])) <= 1e-13 * N
        assert bool(single.hard_case[0]) == bool(batch.hard_case[j])


def test_scalar_radius_forms_agree() -> None:
    instances = instances_for(4, seed=8)
    G, HH, _ = stack(instances)
    g, H = t64(G), t64(HH)
    a = solve_trs(g, H, 0.25)
    for radius in (torch.tensor(0.25, dtype=torch.float64), torch.full((len(instances),), 0.25), 1 / 4):
        b = solve_trs(g, H, radius)
        assert torch.equal(a.step, b.step) and torch.equal(a.objective, b.objective)


def test_asymmetric_input_is_symmetrised() -> None:
    rng = np.random.default_rng(9)
    A = rng.standard_normal((6, 4, 4))
    G = rng.standard_normal((6, 4))
    sym = solve_np(G, 0.5 * (A + A.transpose(0, 2, 1)), 0.5)
    asym = solve_np(G, A, 0.5)
    torch.testing.assert_close(asym.objective, sym.objective, rtol=1e-14, atol=1e-15)


def test_solve_trs_eig_full_decomposition_equals_solve_trs() -> None:
    instances = instances_for(6, seed=12)
    G, HH, R = stack(instances)
    g, H, r = t64(G), t64(HH), t64(R)
    ref = solve_trs(g, H, r)
    evals, evecs = torch.linalg.eigh(H)
    c = (evecs.mT @ g[..., None])[..., 0]
    res = solve_trs_eig(c, evals, evecs, r)
    torch.testing.assert_close(res.step, ref.step, rtol=1e-12, atol=1e-12 * float(r.max()))
    torch.testing.assert_close(res.objective, ref.objective)
    assert torch.equal(res.hard_case, ref.hard_case)
    assert bool(res.certificate().ok(1e-12).all())
    # without eigenvectors the step comes back in eigen-coordinates
    diag = solve_trs_eig(c, evals, None, r)
    torch.testing.assert_close(
        (evecs @ diag.step[..., None])[..., 0], ref.step, rtol=1e-12, atol=1e-12 * r.max()
    )
    # the eigenvalues need not be sorted
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    shuffled = solve_trs_eig(c[:, perm], evals[:, perm], evecs[:, :, perm], r)
    torch.testing.assert_close(shuffled.objective, ref.objective)


@pytest.mark.parametrize("psd", [True, False])
def test_solve_trs_eig_on_a_subspace_equals_the_full_problem(psd: bool) -> None:
    # gradient and Hessian living in a k-dimensional subspace (the structured fast paths)
    rng = np.random.default_rng(13 + psd)
    n, d, k = 16, 12, 3
    V = np.stack([rand_orth(rng, d)[:, :k] for _ in range(n)])
    lam = rng.uniform(0.1, 2.0, (n, k)) if psd else rng.standard_normal((n, k))
    c = rng.standard_normal((n, k)) * 10.0 ** rng.uniform(-2, 2, (n, 1))
    H = np.einsum("nik,nk,njk->nij", V, lam, V)
    g = np.einsum("nik,nk->ni", V, c)
    R = 10.0 ** rng.uniform(-2, 2, n)
    full = solve_np(g, H, R)
    sub = solve_trs_eig(t64(c), t64(lam), t64(V), t64(R))
    assert sub.step.shape == (n, d)
    N = torch.as_tensor([natural_scale(g[j], H[j], R[j]) for j in range(n)])
    assert bool(((sub.objective - full.objective).abs() <= 1e-12 * N).all())
    torch.testing.assert_close(sub.multiplier, full.multiplier, rtol=1e-10, atol=1e-12)
    cert = sub.certificate()
    assert bool(cert.ok(1e-12).all())
    if psd:  # H is zero on the complement of span(V): λ_min(H + λI) = λ, not λ₁ + λ
        torch.testing.assert_close(cert.min_eigenvalue, sub.multiplier)


# ------------------------------------------------------------------------------------------------------------
# The certificate, the result, devices
# ------------------------------------------------------------------------------------------------------------


def test_certificate_detects_a_wrong_step() -> None:
    rng = np.random.default_rng(21)
    G, HH, R = stack(instances_for(4, seed=21))
    res = solve_np(G, HH, R)
    cert = res.certificate()
    assert isinstance(cert, TRSCertificate)
    assert cert.stationarity.shape == cert.min_eigenvalue.shape == (len(R),)
    assert bool(cert.ok(1e-12).all())
    assert bool((cert.feasibility == 0).all())
    assert bool((cert.min_eigenvalue >= -1e-12 * (cert.scale / cert.radius)).all())
    # perturb the steps: the certificate must notice
    noise = t64(rng.standard_normal(res.step.shape)) * t64(R)[:, None] * 1e-3
    bad = TRSResult(
        step=res.step + noise,
        multiplier=res.multiplier,
        hard_case=res.hard_case,
        objective=res.objective,
        _data=res._data,
    )
    assert not bool(bad.certificate().ok(1e-6).any())
    too_long = TRSResult(res.step * 2, res.multiplier, res.hard_case, res.objective, _data=res._data)
    assert bool((too_long.certificate().feasibility > 0).any())


def test_results_are_frozen_and_detached() -> None:
    g = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    H = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    res = solve_trs(g, H, 1.0)
    assert not res.step.requires_grad and not res.objective.requires_grad
    with pytest.raises(AttributeError):
        res.step = res.step  # type: ignore[misc]


def test_empty_batch() -> None:
    res = solve_trs(torch.zeros(0, 3), torch.zeros(0, 3, 3), 1.0)
    assert res.step.shape == (0, 3) and res.objective.shape == (0,)
    assert res.certificate().ok().shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    instances = instances_for(10, seed=99)
    G, HH, R = stack(instances)
    for dtype in (torch.float64, torch.float32):
        cpu = solve_np(G, HH, R, dtype=dtype)
        g, H, r = (torch.as_tensor(a, dtype=dtype, device="cuda") for a in (G, HH, R))
        gpu = solve_trs(g, H, r)
        assert gpu.step.device.type == "cuda" and gpu.step.dtype == dtype
        assert bool((gpu.step.norm(dim=-1) <= r).all())
        assert bool(gpu.certificate().ok().all())
        N = torch.as_tensor([natural_scale(g_, H_, r_) for _, g_, H_, r_ in instances], dtype=dtype)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert bool(((gpu.objective.cpu() - cpu.objective).abs() <= tol * N).all())
