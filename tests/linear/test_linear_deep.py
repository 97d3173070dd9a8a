"""Check 13 of digest §6: deep-linear regularizer, envelope constant, rank-one optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from dropreg.linear import (
    deep_linear_expected_loss,
    deep_linear_regularizer,
    envelope_constant,
    flat_rank_one_network,
    rank_one_optimum,
)

F64 = torch.float64


def _random_net(dims, g):
    return [torch.randn(dims[i + 1], dims[i], generator=g, dtype=F64)
            for i in range(len(dims) - 1)]


def _enumerated_loss(ws, X, Y, p):
    hidden = [W.shape[0] for W in ws[:-1]]
    keep = 1 - p
    total = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=sum(hidden)):
        z = torch.tensor(bits, dtype=F64)
        prob = float(keep ** z.sum() * p ** (len(bits) - z.sum()))
        h = X.T
        offset = 0
        for W, n in zip(ws[:-1], hidden):
            h = (W @ h) * (z[offset:offset + n] / keep)[:, None]
            offset += n
        pred = ws[-1] @ h
        total += prob * float(((Y.T - pred) ** 2).sum()) / X.shape[0]
    return total


def test_check13_recursion_equals_enumeration(generator):
    ws = _random_net((3, 3, 2, 2), generator)
    X = torch.randn(6, 3, generator=generator, dtype=F64)
    Y = torch.randn(6, 2, generator=generator, dtype=F64)
    p = 0.4                                                   # theta = .6
    exact = _enumerated_loss(ws, X, Y, p)
    assert float(deep_linear_expected_loss(ws, X, Y, p)) == pytest.approx(exact, rel=1e-12)
    # one hidden layer: the Dropout regularizer lam sum_i ||u_i||^2 ||v_i||^2
    W1, W2 = ws[0], torch.randn(2, 3, generator=generator, dtype=F64)
    lam = p / (1 - p)
    ref = lam * ((W2**2).sum(0) * (W1**2).sum(1)).sum()
    assert float(deep_linear_regularizer([W1, W2], p)) == pytest.approx(float(ref), rel=1e-13)


@pytest.mark.parametrize("dims,nu", [((4, 5, 3), 0.13333), ((4, 6, 6, 3), 0.23457),
                                     ((5, 3, 8, 4, 2), 0.54475)])
def test_check13_envelope(dims, nu):
    p = 0.4
    assert envelope_constant(list(dims[1:-1]), p) == pytest.approx(nu, abs=5e-6)
    g = torch.Generator().manual_seed(len(dims))
    worst = math.inf
    for _ in range(200):
        ws = _random_net(dims, g)
        P = ws[-1]
        for W in reversed(ws[:-1]):
            P = P @ W
        ratio = float(deep_linear_regularizer(ws, p)) / float(torch.linalg.svdvals(P).sum()) ** 2
        worst = min(worst, ratio)
    assert worst >= envelope_constant(list(dims[1:-1]), p) * (1 - 1e-12)
    # flat rank-one networks attain it
    A = 2.5 * torch.outer(torch.randn(dims[-1], generator=g, dtype=F64),
                          torch.randn(dims[0], generator=g, dtype=F64))
    flat = flat_rank_one_network(A, list(dims[1:-1]))
    P = flat[-1]
    for W in reversed(flat[:-1]):
        P = P @ W
    torch.testing.assert_close(P, A)
    nuc = float(torch.linalg.svdvals(A).sum())
    assert float(deep_linear_regularizer(flat, p)) == pytest.approx(
        envelope_constant(list(dims[1:-1]), p) * nuc**2, rel=1e-12)


def test_check13_rank_one_optimum_against_lbfgs():
    dims = (4, 5, 5, 3)
    p = 0.7                                                   # theta = .3
    M = torch.zeros(3, 4, dtype=F64)
    M[0, 0], M[1, 1], M[2, 2] = 4.0, 1.0, 0.5
    opt = rank_one_optimum(M, [5, 5], p)
    assert opt.applies and opt.value == pytest.approx(9.811983, abs=5e-7)
    shapes = [(dims[i + 1], dims[i]) for i in range(3)]
    sizes = [a * b for a, b in shapes]

    def unpack(x):
        out, o = [], 0
        for (a, b), n in zip(shapes, sizes):
            out.append(x[o:o + n].reshape(a, b))
            o += n
        return out

    def fg(x):
        t = torch.tensor(x, dtype=F64, requires_grad=True)
        ws = unpack(t)
        P = ws[2] @ ws[1] @ ws[0]
        f = ((M - P) ** 2).sum() + deep_linear_regularizer(ws, p)
        f.backward()
        return f.item(), t.grad.numpy().copy()

    rng = np.random.default_rng(0)
    best = min(minimize(fg, 0.5 * rng.normal(size=sum(sizes)), jac=True, method="L-BFGS-B",
                        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}).fun
               for _ in range(6))
    assert best >= opt.value - 1e-9                  # nothing beats the prediction ...
    assert best == pytest.approx(opt.value, abs=1e-6)  # ... and the search finds it
    ws = opt.weights
    value = float(((M - ws[2] @ ws[1] @ ws[0]) ** 2).sum() + deep_linear_regularizer(ws, p))
    assert value == pytest.approx(opt.value, rel=1e-12)


def test_validation():
    with pytest.raises(ValueError, match="at least 2"):
        deep_linear_regularizer([torch.ones(2, 2)], 0.5)
    with pytest.raises(ValueError, match="columns"):
        deep_linear_regularizer([torch.ones(2, 3), torch.ones(1, 3)], 0.5)
    with pytest.raises(ValueError, match="hidden_widths"):
        envelope_constant([], 0.5)
    with pytest.raises(ValueError, match="rank <= 1"):
        flat_rank_one_network(torch.eye(2, dtype=F64), [3])
