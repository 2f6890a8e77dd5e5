"""The float64 oracle of ``trs_oracle`` checked on its own: brute force on the sphere, and the multiplier
against the generalized-eigenvalue characterisation of the TRS (Adachi, Iwata, Nakatsukasa & Takeda 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from trs_oracle import KINDS, make_instance, natural_scale, oracle_trs, q_of, vnorm

pytestmark = pytest.mark.usefixtures("single_threaded_linear_algebra")


def brute_force_min(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """min q over the ball for d = 2 or 3, by brute force: q on a dense set of points of the sphere, then
    zooming in around the best few (local grids in the tangent plane, 8x finer per round), plus the interior
    Newton point when H ≻ 0 (an interior minimum needs H ⪰ 0; a singular H attains it on the sphere too)."""
    d = g.shape[0]

    def q_many(x: np.ndarray) -> np.ndarray:
        return x @ g + 0.5 * np.einsum("ni,ij,nj->n", x, H, x)

    if d == 2:
        t = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], -1)
    else:  # Fibonacci sphere
        k = np.arange(40000) + 0.5
        z = 1 - 2 * k / k.size
        phi = np.pi * (1 + 5**0.5) * k
        pts = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
    vals = q_many(r * pts)
    best = float(vals.min())
    offsets = np.arange(-16, 17) / 16.0
    grid = offsets[:, None] if d == 2 else np.stack(np.meshgrid(offsets, offsets), -1).reshape(-1, 2)
    for i in np.argsort(vals)[:3]:
        x, h = pts[i], 0.02
        for _ in range(12):
            tangent = scipy.linalg.null_space(x[None])  # (d, d-1) orthonormal basis of the tangent plane
            cand = x + (h * grid) @ tangent.T
            cand /= np.linalg.norm(cand, axis=1, keepdims=True)
            cv = q_many(r * cand)
            x, h = cand[np.argmin(cv)], h / 8
            best = min(best, float(cv.min()))
    w, V = np.linalg.eigh(H)
    if w[0] > 0:
        p = -V @ ((V.T @ g) / w)
        if np.linalg.norm(p) <= r:
            best = min(best, q_of(g, H, p))
    return best


@pytest.mark.parametrize("d", [2, 3])
def test_oracle_matches_brute_force_on_the_sphere(d: int) -> None:
    rng = np.random.default_rng(20 + d)
    for kind in KINDS:
        for _ in range(3 if d == 2 else 2):
            g, H, r = make_instance(rng, kind, d)
            _, q_star, _ = oracle_trs(g, H, r)
            q_bf = brute_force_min(g, H, r)
            scale = max(abs(q_star), 1e-3 * natural_scale(g, H, r))
            # the oracle is never beaten by sampling, and sampling + refinement reaches it
            assert q_star <= q_bf + 1e-12 * scale, (kind, q_star, q_bf)
            assert q_bf - q_star <= 1e-9 * scale, (kind, q_star, q_bf)


def generalized_eig_multiplier(g: np.ndarray, H: np.ndarray, r: float) -> float:
    """Rightmost real root of det((H + λI)² - ggᵀ/r²) via the linear pencil M0 + λ M1 (Adachi et al. 2017),
    M0 = [[-I, H], [H, -ggᵀ/r²]], M1 = [[0, I], [I, 0]]; in the easy case it is the TRS multiplier."""
    d = g.shape[0]
    s = max(np.linalg.norm(H, 2), vnorm(g) / r)  # work with unit radius and unit-size data
    Hs, gs = H / s, g / (s * r)
    eye = np.eye(d)
    M0 = np.block([[-eye, Hs], [Hs, -np.outer(gs, gs)]])
    M1 = np.block([[np.zeros((d, d)), eye], [eye, np.zeros((d, d))]])
    lam = scipy.linalg.eigvals(-M1 @ M0)  # M0 v = -λ M1 v and M1⁻¹ = M1
    real = lam[np.abs(lam.imag) <= 1e-8 * (1 + np.abs(lam.real))].real
    return float(real.max()) * s


def test_oracle_multiplier_matches_generalized_eigenvalue_formulation() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for d in (1, 2, 3, 5, 10, 20):
        for kind in ("easy", "psd_boundary", "negdef", "repeated_min", "near_hard"):
            for _ in range(3):
                g, H, r = make_instance(rng, kind, d)
                _, _, lam = oracle_trs(g, H, r)
                lam_ge = generalized_eig_multiplier(g, H, r)
                scale = np.linalg.norm(H, 2) + vnorm(g) / r
                assert abs(lam - lam_ge) <= 1e-7 * scale, (d, kind, lam, lam_ge)
                checked += 1
    assert checked == 90
