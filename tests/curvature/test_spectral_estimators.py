"""Lanczos against torch.linalg.eigh; Hutchinson / Hutch++ unbiased within their standard
errors; SLQ moments; all on a real Hessian of a small dropout net (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dropreg.curvature import (
    HessianOperator,
    sample_masks,
    spectral_density,
    squared_frobenius,
    stochastic_trace,
    top_eigenpairs,
)


@pytest.fixture(scope="module")
def hessian():
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 3)).double()
    X = torch.randn(20, 4, dtype=torch.float64, generator=generator)
    y = torch.randn(20, 3, dtype=torch.float64, generator=generator)
    ms = sample_masks(net, X, 2, generator=generator)
    op = HessianOperator(net, lambda o, t: ((o - t) ** 2).mean(), (X, y), dropout=ms)
    return op, op.to_dense()


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_matches_eigh(hessian, which, generator):
    op, H = hessian
    evals, evecs = torch.linalg.eigh(H)
    k = 4
    r = top_eigenpairs(op, k=k, tol=1e-9, which=which, generator=generator)
    assert r.converged and r.iterations < op.num_params
    if which == "LA":
        ref = evals.flip(0)[:k]
    elif which == "SA":
        ref = evals[:k]
    else:
        ref = evals[torch.argsort(evals.abs(), descending=True)[:k]]
    scale = float(evals.abs().max())
    assert torch.allclose(r.eigenvalues, ref, rtol=0, atol=1e-8 * scale)
    # reported residuals are the true residuals
    true_res = (H @ r.eigenvectors - r.eigenvectors * r.eigenvalues).norm(dim=0)
    assert torch.allclose(r.residuals, true_res, rtol=0, atol=1e-9 * scale)
    assert bool((true_res <= 1e-9 * scale + 1e-12).all())


def test_lanczos_whole_space_and_errors(generator):
    A = torch.diag(torch.arange(6, dtype=torch.float64))
    r = top_eigenpairs(A, k=6, tol=1e-12, generator=generator)
    assert r.converged and r.eigenvalues.tolist() == pytest.approx([5, 4, 3, 2, 1, 0], abs=1e-12)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenpairs(A, k=0)
    with pytest.raises(ValueError, match="tol"):
        top_eigenpairs(A, k=1, tol=0.0)
    with pytest.raises(ValueError, match="which"):
        top_eigenpairs(A, k=1, which="BE")


def test_hutchinson_unbiased_within_stderr(hessian, generator):
    op, H = hessian
    exact = float(torch.trace(H))
    r = stochastic_trace(H, 4000, generator=generator)
    assert abs(r.estimate - exact) <= 5 * r.stderr
    # standard error is honest: over 200 repeats, mean of z-scores ~ N(0, 1/200)
    z = torch.tensor([(stochastic_trace(H, 30, generator=generator).estimate - exact)
                      for _ in range(200)])
    se = float(stochastic_trace(H, 30, generator=generator).stderr)
    assert abs(float(z.mean())) <= 5 * se / math.sqrt(200)
    # on the operator itself
    r_op = stochastic_trace(op, 40, generator=generator)
    assert abs(r_op.estimate - exact) <= 5 * r_op.stderr and r_op.num_matvecs == 40


def test_hutchpp_unbiased_and_better(hessian, generator):
    op, H = hessian
    exact = float(torch.trace(H))
    ests = torch.tensor([stochastic_trace(H, 30, "hutch++", generator=generator).estimate
                         for _ in range(300)], dtype=torch.float64)
    se = float(ests.std()) / math.sqrt(300)
    assert abs(float(ests.mean()) - exact) <= 5 * se
    # on a fast-decaying spectrum Hutch++ has the smaller spread (Meyer et al. 2021)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=torch.float64, generator=generator))
    A = Q @ torch.diag(0.5 ** torch.arange(60, dtype=torch.float64)) @ Q.T
    pp = torch.tensor([stochastic_trace(A, 30, "hutch++", generator=generator).estimate
                       for _ in range(100)])
    plain = torch.tensor([stochastic_trace(A, 30, generator=generator).estimate
                          for _ in range(100)])
    assert float(pp.std()) < 0.1 * float(plain.std())
    r = stochastic_trace(H, 30, "hutch++", generator=generator)
    assert r.num_matvecs == 30 and r.stderr >= 0


def test_squared_frobenius_unbiased(hessian, generator):
    _, H = hessian
    r = squared_frobenius(H, 4000, generator=generator)
    assert abs(r.estimate - float((H**2).sum())) <= 5 * r.stderr


def test_slq_moments(hessian, generator):
    op, H = hessian
    P = H.shape[0]
    d = spectral_density(H, num_probes=200, lanczos_steps=12, generator=generator)
    # (1/P) tr(H^k) per probe is exact for k < 2m; over probes it is Hutchinson-unbiased
    for k in (1, 2, 3):
        per = torch.stack([(w * th**k).sum() for th, w in zip(d.nodes, d.weights)])
        exact = float(torch.trace(torch.linalg.matrix_power(H, k))) / P
        assert abs(float(per.mean()) - exact) <= 5 * float(per.std()) / math.sqrt(200)
    grid = torch.linspace(float(torch.linalg.eigvalsh(H)[0]) - 1, 10, 4001)
    dens = d.evaluate(grid, 0.05)
    mass = float(torch.trapezoid(dens, grid))
    assert mass == pytest.approx(1.0, abs=2e-2)  # broadened mass beyond the grid's right end
