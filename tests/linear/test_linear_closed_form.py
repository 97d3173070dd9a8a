"""Checks 7, 8, 10, 11, 12 and 14 of digest §6: closed forms against L-BFGS on the factorized
objective (an independent autograd implementation), equal block norms, few-block failure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from dropreg.linear import (
    DropBlockRegressor,
    block_norm_spread,
    block_norms,
    cross_covariance,
    factorized_objective,
    ksupport_norm,
    last_layer_singular_values,
    numerical_rank,
    solve_dropblock,
    solve_dropout,
    spectral_ksupport_norm,
    whiten,
)

F64 = torch.float64


def _fdb(U, V, M, lam, k):
    """Independent reference: ||M - UV^T||^2 + lam sum_g ||U_g V_g^T||^2 by an explicit loop."""
    r = U.shape[1]
    reg = sum(((U[:, g:g + k] @ V[:, g:g + k].T) ** 2).sum() for g in range(0, r, k))
    return ((M - U @ V.T) ** 2).sum() + lam * reg


def _lbfgs_global(M, r, k, lam, starts=5, seed=0, scale=0.1):
    D, d = M.shape
    rng = np.random.default_rng(seed)
    best = math.inf

    def fg(x):
        t = torch.tensor(x, dtype=F64, requires_grad=True)
        f = _fdb(t[: D * r].reshape(D, r), t[D * r:].reshape(d, r), M, lam, k)
        f.backward()
        return float(f), t.grad.numpy().copy()

    best_x = None
    for _ in range(starts):
        x0 = scale * rng.normal(size=(D + d) * r)
        res = minimize(fg, x0, jac=True, method="L-BFGS-B",
                       options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-11, "maxcor": 30})
        if res.fun < best:
            best, best_x = res.fun, res.x
    U = torch.tensor(best_x[: D * r].reshape(D, r))
    V = torch.tensor(best_x[D * r:].reshape(d, r))
    return best, U, V


@pytest.mark.parametrize("r,k,lam", [(8, 2, 1.0), (12, 3, 2.0), (24, 4, 2.0), (12, 4, 3.0),
                                     (16, 2, 1.0)])
def test_check7_dropblock_closed_form_is_global_minimum(r, k, lam):
    g = torch.Generator().manual_seed(r * 10 + k)
    M = torch.randn(10, 8, generator=g, dtype=F64)
    p = lam / (1 + lam)
    sol = solve_dropblock(M, r, p, k)
    f_bf, U_bf, V_bf = _lbfgs_global(M, r, k, lam, starts=3)
    assert sol.certificate.attained
    # the closed form is a lower bound that the brute-force search reaches
    assert -1e-12 * sol.value <= f_bf - sol.value <= 1e-9 * sol.value
    assert sol.value == pytest.approx(float(_fdb(sol.U, sol.V, M, lam, k)), rel=1e-13)
    assert float((torch.linalg.svdvals(U_bf @ V_bf.T) - sol.singular_values).abs().max()) <= 1e-5
    # equal block norms = (k/r) ||A||_(k)
    norms = block_norms(sol.U, sol.V, k)
    target = k / r * float(spectral_ksupport_norm(sol.map, k))
    assert float((norms - target).abs().max()) <= 1e-6 * target
    torch.testing.assert_close(sol.U @ sol.V.T, sol.map, rtol=0, atol=1e-6)


@pytest.mark.parametrize("r,k,p", [(48, 4, 2 / 3), (6, 2, 0.3 / 1.3), (20, 4, 0.5),
                                   (8, 2, 0.5)])
def test_check7_equal_block_norms_and_balanced_blocks(r, k, p):
    g = torch.Generator().manual_seed(11)
    M = torch.randn(10, 8, generator=g, dtype=F64)
    if r == 6:
        M = torch.diag(torch.tensor([5, 4, 3, 2.5, 0.1, 0.05], dtype=F64))
    if r == 8:                       # one head direction, q = 0: the exact construction applies
        M = torch.diag(torch.tensor([10, 2, 1.5, 1.0], dtype=F64))
    sol = solve_dropblock(M, r, p, k)
    assert sol.certificate.attained
    exact = sol.certificate.method == "construction"
    tol = 1e-12 if exact else 1e-6
    assert block_norm_spread(sol.U, sol.V, k) <= tol
    torch.testing.assert_close(sol.U @ sol.V.T, sol.map, rtol=0, atol=tol)
    # balanced blocks: U_g^T U_g = V_g^T V_g
    for gi in range(0, r, k):
        Ug, Vg = sol.U[:, gi:gi + k], sol.V[:, gi:gi + k]
        torch.testing.assert_close(Ug.T @ Ug, Vg.T @ Vg, rtol=0, atol=1e-10)
    if r == 8:
        assert exact and int((sol.box_weights == 1).sum()) == 1


def test_check7_one_block_rank_above_width_not_attained():
    g = torch.Generator().manual_seed(12)
    M = torch.randn(10, 8, generator=g, dtype=F64)
    lam = 1.0
    sol = solve_dropblock(M, 4, 0.5, 4)                            # r = k = 4, one block
    s = torch.linalg.svdvals(M)
    # one block: ||M - A||^2 + lam ||A||^2 with rank A <= 4 -> a = s/(1+lam) on the top 4
    exact = float((s**2).sum() - (s[:4] ** 2).sum() / (1 + lam))
    assert not sol.certificate.attained
    assert sol.certificate.method == "lbfgs"
    assert sol.value == pytest.approx(exact, rel=1e-10)
    assert sol.certificate.gap == pytest.approx(exact - sol.certificate.bound, rel=1e-8)
    assert sol.certificate.gap > 0.1


def test_check8_few_blocks_failure():
    lam = 0.3
    M = torch.diag(torch.tensor([5, 4, 3, 2.5, 0.1, 0.05], dtype=F64))
    sol = solve_dropblock(M, 4, lam / (1 + lam), 2)
    np.testing.assert_allclose(sol.box_weights[:4].numpy(), [0.747, 0.567, 0.388, 0.298],
                               atol=6e-4)
    assert not sol.certificate.attained
    assert sol.certificate.gap == pytest.approx(1.44e-2, abs=1e-4)
    f_bf, _, _ = _lbfgs_global(M, 4, 2, lam, starts=5)
    assert sol.value <= f_bf + 1e-10                              # fallback is as good
    # t_1 + t_4 = t_2 + t_3 = 1: attained even with two blocks
    lam = 0.2
    M2 = torch.diag(torch.tensor([5, 4.5, 4, 3.5, 0.1, 0.05], dtype=F64))
    sol2 = solve_dropblock(M2, 4, lam / (1 + lam), 2)
    assert sol2.certificate.attained and abs(sol2.certificate.gap) <= 1e-9 * sol2.value
    # a third block makes the first case tight
    sol3 = solve_dropblock(M, 6, 0.3 / 1.3, 2)
    assert sol3.certificate.attained and abs(sol3.certificate.gap) <= 1e-9 * sol3.value


def test_check8_infeasible_detected_without_search():
    # b = 2, k = 2, three middle directions: no two rank-2 projections sum to 2 diag(t)
    M = torch.diag(torch.tensor([3.0, 2.5, 1.0], dtype=F64))
    sol = solve_dropblock(M, 4, 0.2, 2)
    t = sol.box_weights
    assert bool(((t > 0) & (t < 1)).sum() == 3)
    assert not sol.certificate.attained and "no fusion frame exists" in sol.certificate.reason


@pytest.mark.parametrize("shape,r,lam", [((8, 6), 6, 1.0), ((8, 6), 2, 1.0), ((8, 6), 3, 0.5),
                                         ((7, 9), 4, 2.0)])
def test_check10_dropout_closed_form(shape, r, lam):
    g = torch.Generator().manual_seed(r + shape[0])
    M = torch.randn(*shape, generator=g, dtype=F64)
    sol = solve_dropout(M, r, lam / (1 + lam))
    f_bf, _, _ = _lbfgs_global(M, r, 1, lam, starts=3)
    assert sol.certificate.attained and sol.certificate.method == "construction"
    assert -1e-12 * sol.value <= f_bf - sol.value <= 1e-9 * sol.value
    nuc = float(sol.singular_values.sum())
    prods = sol.U.norm(dim=0) * sol.V.norm(dim=0)
    torch.testing.assert_close(prods, torch.full((r,), nuc / r, dtype=F64), rtol=1e-12, atol=0)
    assert sol.threshold == pytest.approx(lam / r * nuc, rel=1e-12)
    assert sol.rank <= r
    torch.testing.assert_close(sol.U @ sol.V.T, sol.map, rtol=0, atol=1e-12)


def test_check11_dropblock_equals_dropout_in_pure_middle_regime():
    counts = [12] * 5
    for k in (1, 2, 5):
        vals = last_layer_singular_values(20, 0.5, k, class_counts=counts)
        torch.testing.assert_close(vals, torch.full((5,), math.sqrt(60 / 5) / (1 + 5 / 20),
                                                    dtype=F64), rtol=1e-12, atol=0)
    assert float(vals[0]) == pytest.approx(2.7713, abs=1e-4)
    # generic M: if max a^D <= ||a^D||_1 / k, DropBlock's optimum is Dropout's
    g = torch.Generator().manual_seed(13)
    M = torch.diag(torch.tensor([3.0, 2.95, 2.9, 2.85, 2.8, 0.2], dtype=F64))
    dro = solve_dropout(M, 24, 0.5)
    a = dro.singular_values
    for k in (2, 4):                  # b = 12, 6 blocks >= 5 middle directions: attainable
        assert float(a.max()) <= float(a.sum()) / k
        blk = solve_dropblock(M, 24, 0.5, k, generator=g)
        assert blk.certificate.attained
        torch.testing.assert_close(blk.singular_values, a, rtol=0, atol=1e-12)
        assert blk.value == pytest.approx(dro.value, rel=1e-12)
    # with too few blocks (r = 8, k = 4: b = 2 < 5) the convex values agree but the bound is
    # not attained, so the factorized DropBlock optimum is strictly worse than Dropout's
    blk = solve_dropblock(M, 8, 0.5, 4, generator=g)
    dro8 = solve_dropout(M, 8, 0.5)
    assert blk.certificate.bound == pytest.approx(dro8.value, rel=1e-12)
    assert not blk.certificate.attained and blk.value > dro8.value


def test_check12_last_layer_free_features():
    counts = [20, 15, 12, 8, 5]
    expected = {1: (3.7972, 3.1980, 2.7892, 2.1535, 1.5611),
                2: (3.7972, 3.1980, 2.7892, 2.1535, 1.5611),
                4: (3.7268, 3.2203, 2.8114, 2.1757, 1.5834),
                5: (3.5777, 3.0984, 2.7713, 2.2627, 1.7889)}
    for k, vals in expected.items():
        pred = last_layer_singular_values(20, 0.5, k, class_counts=counts)
        np.testing.assert_allclose(pred.numpy(), vals, atol=6e-5)
    # free-feature training: Y (N x C one-hot) = Phi U^T; L-BFGS on (U, Phi)
    Y = torch.cat([torch.eye(5, dtype=F64)[[c] * n] for c, n in enumerate(counts)])
    for k in (1, 5):
        f, U, V = _lbfgs_global(Y, 20, k, 1.0, starts=2)
        sv = torch.linalg.svdvals(U @ V.T)[:5]
        pred = last_layer_singular_values(20, 0.5, k, Y=Y)
        assert float((sv - pred).abs().max()) <= 1e-5


def test_check14_conservation_laws():
    g = torch.Generator().manual_seed(14)
    M = torch.randn(6, 5, generator=g, dtype=F64)
    r, k, lam = 6, 2, 1.0
    U = torch.randn(6, r, generator=g, dtype=F64, requires_grad=True)
    V = torch.randn(5, r, generator=g, dtype=F64, requires_grad=True)
    f = factorized_objective(U, V, M, lam / (1 + lam), k)
    gU, gV = torch.autograd.grad(f, (U, V))
    # d/dt (U_g^T U_g - V_g^T V_g) = -(U_g^T gU_g + gU_g^T U_g) + (V_g^T gV_g + gV_g^T V_g) = 0
    for gi in range(0, r, k):
        sl = slice(gi, gi + k)
        Ug, Vg, GU, GV = U[:, sl], V[:, sl], gU[:, sl], gV[:, sl]
        rate = Ug.T @ GU + GU.T @ Ug - Vg.T @ GV - GV.T @ Vg
        assert float(rate.abs().max()) <= 1e-12

    def drift(step, horizon=2.0):
        Uw, Vw = U.detach().clone() * 0.3, V.detach().clone() * 0.3
        c0 = [Uw[:, i:i + k].T @ Uw[:, i:i + k] - Vw[:, i:i + k].T @ Vw[:, i:i + k]
              for i in range(0, r, k)]
        for _ in range(int(round(horizon / step))):
            Uw.requires_grad_(True)
            Vw.requires_grad_(True)
            gu, gv = torch.autograd.grad(factorized_objective(Uw, Vw, M, 0.5, k), (Uw, Vw))
            Uw, Vw = (Uw - step * gu).detach(), (Vw - step * gv).detach()
        c1 = [Uw[:, i:i + k].T @ Uw[:, i:i + k] - Vw[:, i:i + k].T @ Vw[:, i:i + k]
              for i in range(0, r, k)]
        return max(float((a - b).abs().max()) for a, b in zip(c0, c1))

    d1, d2 = drift(1e-2), drift(1e-3)
    # discrete GD drifts by O(step): ten times smaller step, about ten times smaller drift
    assert 5 < d1 / d2 < 20


def test_whitening_and_refusal():
    g = torch.Generator().manual_seed(15)
    X = torch.randn(300, 4, generator=g, dtype=F64) @ torch.randn(4, 4, generator=g, dtype=F64)
    Y = torch.randn(300, 2, generator=g, dtype=F64)
    with pytest.raises(ValueError, match="not whitened"):
        cross_covariance(X, Y)
    W = whiten(X)
    torch.testing.assert_close(W.X.T @ W.X / 300, torch.eye(4, dtype=F64))
    M = cross_covariance(W.X, Y)
    assert M.shape == (2, 4)
    singular = torch.cat([X, X[:, :1]], dim=1)
    with pytest.raises(ValueError, match="cannot be whitened"):
        whiten(singular)


def test_estimator():
    g = torch.Generator().manual_seed(16)
    X = torch.randn(400, 6, generator=g, dtype=F64) * torch.tensor([1, 2, 3, 1, 1, 0.5])
    B = torch.randn(6, 3, generator=g, dtype=F64)
    Y = X @ B + 1.5 + 0.1 * torch.randn(400, 3, generator=g, dtype=F64)
    est = DropBlockRegressor(width=6, p=0.1, block_size=2).fit(X, Y)
    assert est.certificate_.attained
    assert est.U_.shape == (3, 6) and est.V_.shape == (6, 6)
    assert est.score(X, Y) > 0.95
    # the fitted net minimizes the expected DropBlock loss in whitened coordinates
    Xw = (X - X.mean(0)) @ est.whitening_
    M = (Y - Y.mean(0)).T @ Xw / 400
    ref = solve_dropblock(M, 6, 0.1, 2)
    torch.testing.assert_close(est.solution_.map, ref.map)
    est1 = DropBlockRegressor(width=6, p=0.1).fit(X.numpy(), Y[:, 0].numpy())
    assert est1.predict(X).shape == (400,)
    assert est1.get_params()["block_size"] == 1
    with pytest.raises(ValueError, match="not whitened"):
        DropBlockRegressor(width=6, p=0.1, whiten=False).fit(X, Y)
    with pytest.raises(ValueError, match="not fitted"):  # sklearn's NotFittedError
        DropBlockRegressor(width=6, p=0.1).predict(X)
    from sklearn.base import clone

    assert clone(est).get_params() == est.get_params()


def test_numerical_rank_and_solver_validation():
    A = torch.randn(5, 2, dtype=F64) @ torch.randn(2, 7, dtype=F64)
    assert numerical_rank(A) == 2
    with pytest.raises(ValueError, match="divide"):
        solve_dropblock(torch.eye(3, dtype=F64), 5, 0.5, 2)
    with pytest.raises(ValueError, match="p"):
        solve_dropout(torch.eye(3, dtype=F64), 4, 1.0)
    with pytest.raises(ValueError, match="width"):
        solve_dropout(torch.eye(3, dtype=F64), 0, 0.5)
    sol = solve_dropblock(torch.zeros(3, 4, dtype=F64), 4, 0.5, 2)
    assert sol.rank == 0 and sol.certificate.attained
    assert float(ksupport_norm(sol.singular_values, 2)) == 0.0
