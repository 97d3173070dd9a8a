"""Checks 5-6 of digest §6: k-support norm, dual norm and prox of the squared norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from dropreg.linear import (
    ksupport_box_weights,
    ksupport_dual_norm,
    ksupport_norm,
    prox_squared_ksupport,
    prox_squared_spectral_ksupport,
    spectral_ksupport_dual_norm,
    spectral_ksupport_norm,
)

F64 = torch.float64


def _random_vector(rng, d):
    w = rng.normal(size=d) * rng.exponential(size=d)
    w[rng.random(d) < 0.2] = 0.0
    if rng.random() < 0.2 and d > 1:                       # ties
        w[1] = -w[0]
    return w


def test_worked_example():
    w = torch.tensor([3.0, 1.0, -4.0, 2.0, -5.0], dtype=F64)
    assert float(ksupport_norm(w, 3)) == pytest.approx(math.sqrt(75), rel=1e-15)


def test_check5_norm_sandwich_by_duality():
    """Upper bound: the closed-form box weights are feasible in min_t sum w^2/t. Lower bound:
    Holder with u = w / t and the dual norm (top-k l2, an independent definition)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        d = int(rng.integers(1, 12))
        k = int(rng.integers(1, 13))
        w = torch.tensor(_random_vector(rng, d), dtype=F64)
        if float(w.abs().sum()) == 0:
            continue
        n = float(ksupport_norm(w, k))
        t = ksupport_box_weights(w, k)
        nz = w != 0
        assert bool((t >= 0).all() and (t <= 1 + 1e-15).all())
        assert float(t.sum()) <= min(k, d) + 1e-12
        upper = float((w[nz] ** 2 / t[nz]).sum())
        u = torch.where(nz, w / torch.where(nz, t, torch.ones_like(t)), torch.zeros_like(w))
        lower = float(w @ u) / float(ksupport_dual_norm(u, k))
        assert lower <= n * (1 + 1e-12) and n**2 <= upper * (1 + 1e-12)
        assert upper == pytest.approx(n**2, rel=1e-12)
        assert lower == pytest.approx(n, rel=1e-12)


def test_check5_norm_against_slsqp_variational_form():
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(40):
        d = int(rng.integers(2, 8))
        k = int(rng.integers(1, d + 1))
        w = rng.normal(size=d)
        cons = [{"type": "ineq", "fun": lambda t, k=k: k - t.sum()}]
        res = minimize(lambda t, w=w: (w**2 / t).sum(), np.full(d, min(k, d) / d * 0.99),
                       bounds=[(1e-9, 1.0)] * d, constraints=cons, method="SLSQP",
                       options={"ftol": 1e-14, "maxiter": 500})
        t = np.clip(res.x, 1e-9, 1.0)
        t = t * min(1.0, k / t.sum())                 # exactly feasible
        f = float((w**2 / t).sum())
        n2 = float(ksupport_norm(torch.tensor(w), k)) ** 2
        assert f >= n2 * (1 - 1e-12)                  # closed form is the minimum ...
        worst = max(worst, (f - n2) / n2)
    assert worst <= 6e-4                              # ... SLSQP reaches it to its tolerance


def test_check5_limits_and_holder():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(7, 9, generator=g, dtype=F64)
    u = torch.randn(7, 9, generator=g, dtype=F64)
    torch.testing.assert_close(ksupport_norm(w, 1), w.abs().sum(-1), rtol=1e-14, atol=0)
    for k in (9, 12):
        torch.testing.assert_close(ksupport_norm(w, k), w.norm(dim=-1), rtol=1e-14, atol=0)
        torch.testing.assert_close(ksupport_dual_norm(u, k), u.norm(dim=-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(ksupport_dual_norm(u, 1), u.abs().amax(-1), rtol=0, atol=0)
    for k in range(1, 10):
        assert bool(((w * u).sum(-1) <= ksupport_norm(w, k) * ksupport_dual_norm(u, k)
                     * (1 + 1e-12)).all())
        # ||w||_el <= ||w||_(k) < sqrt(2) ||w||_el
        el = torch.maximum(w.norm(dim=-1), w.abs().sum(-1) / math.sqrt(k))
        n = ksupport_norm(w, k)
        assert bool((el <= n * (1 + 1e-12)).all() and (n < math.sqrt(2) * el).all())


def test_spectral_limits():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(3, 5, 4, generator=g, dtype=F64)
    torch.testing.assert_close(spectral_ksupport_norm(W, 1),
                               torch.linalg.matrix_norm(W, "nuc"), rtol=1e-12, atol=0)
    torch.testing.assert_close(spectral_ksupport_norm(W, 4),
                               torch.linalg.matrix_norm(W, "fro"), rtol=1e-12, atol=0)
    torch.testing.assert_close(spectral_ksupport_dual_norm(W, 1),
                               torch.linalg.matrix_norm(W, 2), rtol=1e-12, atol=0)


def _prox_argyriou(w: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Argyriou et al. 2012 Algorithm 1 ((q, l) search), an independent reference (§5.2)."""
    L = 1.0 / lam
    z = np.sort(np.abs(w))[::-1]
    d = z.size
    if (z > 0).sum() <= k:
        return w / (1 + lam)
    zz = np.concatenate([[np.inf], z, [-np.inf]])          # 1-based z_1..z_d, z_0, z_{d+1}
    for q in range(k):
        for l in range(k, d + 1):
            T = zz[k - q:l + 1].sum()
            tau = T / (l - k + (L + 1) * (q + 1))
            if (zz[k - q - 1] / (L + 1) > tau >= zz[k - q] / (L + 1)
                    and zz[l] > tau >= zz[l + 1]):
                x = np.zeros(d)
                x[:k - q - 1] = L / (L + 1) * z[:k - q - 1]
                x[k - q - 1:l] = z[k - q - 1:l] - tau
                out = np.zeros(d)
                order = np.argsort(-np.abs(w), kind="stable")
                out[order] = x
                return np.sign(w) * out
    raise AssertionError("no (q, l) found")


def test_check6_prox_matches_argyriou():
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(300):
        d = int(rng.integers(1, 15))
        k = int(rng.integers(1, 10))
        lam = float(rng.exponential())
        w = _random_vector(rng, d)
        x = prox_squared_ksupport(torch.tensor(w), k, lam).numpy()
        worst = max(worst, np.abs(x - _prox_argyriou(w, k, lam)).max())
    assert worst <= 1e-13


def test_check6_prox_is_a_minimum():
    rng = np.random.default_rng(6)
    for _ in range(12):
        d = int(rng.integers(2, 7))
        k = int(rng.integers(1, d + 1))
        lam = float(rng.exponential())
        w = _random_vector(rng, d)

        def obj(x, w=w, k=k, lam=lam):
            return 0.5 * ((x - w) ** 2).sum() + 0.5 * lam * float(
                ksupport_norm(torch.tensor(x), k)) ** 2

        x = prox_squared_ksupport(torch.tensor(w), k, lam).numpy()
        f0 = obj(x)
        res = minimize(obj, x, method="Nelder-Mead",
                       options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 1500})
        assert res.fun >= f0 - 1e-13
        for _ in range(20):
            assert obj(x + 1e-3 * rng.normal(size=d)) >= f0 - 1e-13


def test_prox_batched_dtypes_and_limits():
    g = torch.Generator().manual_seed(7)
    W = torch.randn(4, 3, 40, generator=g, dtype=F64)
    W[0, 0, :30] = 0.0
    X, T = prox_squared_ksupport(W, 5, 0.7, return_weights=True)
    for i in range(4):
        for j in range(3):
            xi = _prox_argyriou(W[i, j].numpy(), 5, 0.7)
            np.testing.assert_allclose(X[i, j].numpy(), xi, rtol=0, atol=1e-13)
    X32 = prox_squared_ksupport(W.float(), 5, 0.7)
    assert X32.dtype == torch.float32
    torch.testing.assert_close(X32, X.float(), rtol=1e-4, atol=1e-5)
    # sum of the box weights is k when more than k nonzeros
    assert torch.allclose(T[1:].sum(-1), torch.full((3, 3), 5.0, dtype=F64))
    # k = 1 is soft thresholding at tau = lam ||x||_1; k >= d is ridge shrinkage
    x1 = prox_squared_ksupport(W[1, 1], 1, 0.7)
    tau = 0.7 * float(x1.abs().sum())
    torch.testing.assert_close(x1, torch.sign(W[1, 1]) * (W[1, 1].abs() - tau).clamp_min(0),
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(prox_squared_ksupport(W, 40, 0.7), W / 1.7, rtol=1e-15, atol=0)
    torch.testing.assert_close(prox_squared_ksupport(W, 3, 0.0), W)


def test_spectral_prox_is_vector_prox_on_singular_values():
    g = torch.Generator().manual_seed(8)
    A = torch.randn(6, 4, generator=g, dtype=F64)
    P, s, Rh = torch.linalg.svd(A, full_matrices=False)
    X = prox_squared_spectral_ksupport(A, 2, 0.5)
    torch.testing.assert_close(torch.linalg.svdvals(X), prox_squared_ksupport(s, 2, 0.5))


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 30), k=st.integers(1, 35),
       lam=st.one_of(st.just(0.0), st.floats(1e-6, 10.0)),
       batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_property_prox_shapes_and_optimality_conditions(d, k, lam, batch, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, d, generator=g, dtype=F64)
    x, t = prox_squared_ksupport(w, k, lam, return_weights=True)
    assert x.shape == w.shape and t.shape == w.shape
    assert bool((x.abs() <= w.abs() + 1e-12).all())          # shrinkage
    assert bool((torch.sign(x) * torch.sign(w) >= 0).all())  # signs kept
    for i in range(batch):
        np.testing.assert_allclose(x[i].numpy(), _prox_argyriou(w[i].numpy(), k, lam)
                                   if lam > 0 else w[i].numpy(), rtol=0, atol=1e-11)


def test_prox_denormal_lam_is_identity():
    w = torch.tensor([0.3, -2.0, 1.0], dtype=F64)
    torch.testing.assert_close(prox_squared_ksupport(w, 1, 5e-324), w, rtol=0, atol=1e-15)


def test_bad_arguments():
    w = torch.ones(3)
    with pytest.raises(ValueError, match="k must"):
        ksupport_norm(w, 0)
    with pytest.raises(TypeError, match="k must"):
        ksupport_norm(w, 1.5)
    with pytest.raises(ValueError, match="lam"):
        prox_squared_ksupport(w, 1, -1.0)
    with pytest.raises(TypeError, match="floating"):
        ksupport_norm(torch.ones(3, dtype=torch.int64), 1)
