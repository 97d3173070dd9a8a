"""The masked-SGD trainer: unbiased gradients (exact enumeration vs autograd) and convergence
to the closed form (check 9 of digest §6, small size; the claim runs the 1e-3 target)."""

from __future__ import annotations

import pytest
import torch

from dropreg.linear import (
    expected_loss,
    expected_objective_from_moments,
    masked_loss_grad,
    solve_dropblock,
    train_masked_sgd,
)
from dropreg.masks import Bernoulli, Blocks, SlidingBlocks

F64 = torch.float64


@pytest.mark.parametrize("law", [Bernoulli(0.3), Blocks(0.4, 2), SlidingBlocks(0.3, 2)])
def test_sampled_gradient_is_unbiased(generator, law):
    D, d, r, N = 2, 3, 4, 5
    U = torch.randn(D, r, generator=generator, dtype=F64, requires_grad=True)
    V = torch.randn(d, r, generator=generator, dtype=F64, requires_grad=True)
    X = torch.randn(N, d, generator=generator, dtype=F64)
    Y = torch.randn(N, D, generator=generator, dtype=F64)
    gU, gV = torch.autograd.grad(expected_loss(U, V, X, Y, law), (U, V))
    masks, probs = law.support(r)
    mu = law.mean(r)
    eU = torch.zeros_like(gU)
    eV = torch.zeros_like(gV)
    for z, pr in zip(masks, probs):                   # one mask shared by the batch
        a, b = masked_loss_grad(U.detach(), V.detach(), X, Y, (z / mu).expand(N, r))
        eU += pr * a
        eV += pr * b
    torch.testing.assert_close(eU, gU, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eV, gV, rtol=1e-12, atol=1e-12)


def test_objective_from_moments_matches_expected_loss(generator):
    U = torch.randn(3, 4, generator=generator, dtype=F64)
    V = torch.randn(5, 4, generator=generator, dtype=F64)
    X = torch.randn(7, 5, generator=generator, dtype=F64)
    Y = torch.randn(7, 3, generator=generator, dtype=F64)
    law = Blocks(0.3, 2)
    val = expected_objective_from_moments(U, V, Y.T @ X / 7, X.T @ X / 7,
                                          float((Y**2).sum()) / 7,
                                          law.normalized_covariance(4))
    assert val == pytest.approx(float(expected_loss(U, V, X, Y, law)), rel=1e-12)


def test_check9_sgd_approaches_closed_form():
    g = torch.Generator().manual_seed(3)
    N, d, D, r, k, p = 400, 4, 3, 4, 2, 0.3
    X = torch.randn(N, d, generator=g, dtype=F64)
    L = torch.linalg.cholesky(X.T @ X / N)
    X = X @ torch.linalg.inv(L).T                         # whitened
    Y = X @ torch.randn(d, D, generator=g, dtype=F64) + 0.5 * torch.randn(N, D, generator=g,
                                                                          dtype=F64)
    M = Y.T @ X / N
    c0 = float((Y**2).sum()) / N - float((M**2).sum())
    sol = solve_dropblock(M, r, p, k)
    run = train_masked_sgd(X, Y, r, Blocks(p, k), steps=4000, lr=0.1, batch_size=128,
                           generator=g)
    E_star = sol.value + c0
    assert run.objective[-1] >= E_star * (1 - 1e-12)      # never below the global minimum
    assert (run.objective[-1] - E_star) / E_star < 5e-3
    assert len(run.times) == len(run.steps) == len(run.plain_loss)


def test_trainer_validation():
    X = torch.ones(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="steps"):
        train_masked_sgd(X, X, 2, Bernoulli(0.5), steps=0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        train_masked_sgd(X, X, 2, Bernoulli(0.5), steps=1, lr=0.0)
