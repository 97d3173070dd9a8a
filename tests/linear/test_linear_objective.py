"""Checks 1-4 of digest §6: expected objectives by exact enumeration of masks, and Monte Carlo."""

from __future__ import annotations

import itertools

import pytest
import torch

from dropreg.linear import (
    dropblock_regularizer,
    dropconnect_expected_loss,
    dropconnect_masked_loss,
    dropconnect_regularizer,
    dropout_regularizer,
    expected_loss,
    induced_regularizer,
    linear_loss,
    masked_loss,
)
from dropreg.masks import Bernoulli, Blocks, Custom, KeepExactly, SlidingBlocks

F64 = torch.float64


def _problem(g, D=3, d=4, r=6, N=5):
    U = torch.randn(D, r, generator=g, dtype=F64)
    V = torch.randn(d, r, generator=g, dtype=F64)
    X = torch.randn(N, d, generator=g, dtype=F64)
    Y = torch.randn(N, D, generator=g, dtype=F64)
    return U, V, X, Y


def _enumerate(U, V, X, Y, law):
    r = U.shape[1]
    masks, probs = law.support(r)
    mu = law.mean(r)
    return sum(float(pr) * float(masked_loss(U, V, X, Y, z, mu)) for z, pr in zip(masks, probs))


def test_check1_dropout_identity_enumeration(generator):
    U, V, X, Y = _problem(generator)
    p = 0.3                                         # theta = .7 in the digest
    exact = _enumerate(U, V, X, Y, Bernoulli(p))
    sigma = X.T @ X / X.shape[0]
    formula = linear_loss(U, V, X, Y) + dropout_regularizer(U, V, p, sigma)
    assert abs(exact - float(formula)) <= 1e-12 * exact
    assert abs(exact - float(expected_loss(U, V, X, Y, Bernoulli(p)))) <= 1e-12 * exact


@pytest.mark.parametrize("block_size", [2, 3])
def test_check2_dropblock_identity_enumeration(generator, block_size):
    U, V, X, Y = _problem(generator)
    p = 0.3
    law = Blocks(p, block_size)
    exact = _enumerate(U, V, X, Y, law)
    sigma = X.T @ X / X.shape[0]
    formula = linear_loss(U, V, X, Y) + dropblock_regularizer(U, V, p, block_size, sigma)
    assert abs(exact - float(formula)) <= 1e-12 * exact
    assert abs(exact - float(expected_loss(U, V, X, Y, law))) <= 1e-12 * exact


def test_check3_general_pmf_identity(generator):
    U, V, X, Y = _problem(generator)
    masks = torch.tensor(list(itertools.product((0.0, 1.0), repeat=6)), dtype=F64)
    probs = torch.rand(64, generator=generator, dtype=F64)
    law = Custom(masks, probs / probs.sum())
    exact = _enumerate(U, V, X, Y, law)
    assert abs(exact - float(expected_loss(U, V, X, Y, law))) <= 1e-12 * exact
    # the same through an explicit C = E[zz^T] / (mu mu^T) - 1
    pr = law.probs
    mu = pr @ masks
    C = (masks.T * pr) @ masks / torch.outer(mu, mu) - 1
    sigma = X.T @ X / X.shape[0]
    direct = linear_loss(U, V, X, Y) + induced_regularizer(U, V, C, sigma)
    assert abs(exact - float(direct)) <= 1e-12 * exact


@pytest.mark.parametrize("keep", [2, 3, 5])
def test_check3_keep_exactly(generator, keep):
    U, V, X, Y = _problem(generator)
    r = 6
    law = KeepExactly(keep)
    exact = _enumerate(U, V, X, Y, law)
    assert abs(exact - float(expected_loss(U, V, X, Y, law))) <= 1e-12 * exact
    # digest §2.3 closed form of the regularizer (whitened sigma replaced by data sigma)
    s = keep
    sigma = X.T @ X / X.shape[0]
    a = (r - s) * r / (s * (r - 1))
    c = (r - s) / (s * (r - 1))
    per_unit = ((U * U).sum(0) * (V * (sigma @ V)).sum(0)).sum()
    full = ((X @ V @ U.T) ** 2).sum() / X.shape[0]
    assert abs(exact - float(linear_loss(U, V, X, Y) + a * per_unit - c * full)) <= 1e-12 * exact


def test_check3_sliding_blocks(generator):
    U, V, X, Y = _problem(generator, r=7)
    law = SlidingBlocks(0.3, 3)
    exact = _enumerate(U, V, X, Y, law)
    assert abs(exact - float(expected_loss(U, V, X, Y, law))) <= 1e-12 * exact


def _enumerate_dropconnect(U, V, X, Y, p, layer):
    shape = V.T.shape if layer == "first" else U.shape
    n = shape[0] * shape[1]
    total = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=n):
        Z = torch.tensor(bits, dtype=F64).reshape(shape)
        kept = Z.sum()
        prob = float((1 - p) ** kept * p ** (n - kept))
        total += prob * float(dropconnect_masked_loss(U, V, X, Y, Z, p, layer))
    return total


@pytest.mark.parametrize("layer", ["first", "second"])
def test_check4_dropconnect_enumeration(generator, layer):
    U, V, X, Y = _problem(generator, D=2, d=3, r=3, N=4)     # 9 or 6 weights: 2^9 masks at most
    p = 0.3
    exact = _enumerate_dropconnect(U, V, X, Y, p, layer)
    assert abs(exact - float(dropconnect_expected_loss(U, V, X, Y, p, layer))) <= 1e-12 * exact


def test_check4_dropconnect_second_layer_is_dropout_for_any_data(generator):
    U, V, X, _ = _problem(generator)
    sigma = X.T @ X / X.shape[0]
    a = dropconnect_regularizer(U, V, 0.3, "second", sigma)
    assert torch.isclose(a, dropout_regularizer(U, V, 0.3, sigma), rtol=1e-14)
    # first layer differs unless diag(sigma) = 1
    b = dropconnect_regularizer(U, V, 0.3, "first", sigma)
    assert not torch.isclose(a, b, rtol=1e-3)
    # ... equal iff sigma is diagonal (uncorrelated inputs)
    diag = torch.diag(torch.diagonal(sigma))
    assert torch.isclose(dropconnect_regularizer(U, V, 0.3, "first", diag),
                         dropout_regularizer(U, V, 0.3, diag), rtol=1e-14)
    # unit diagonal but correlated: first-layer DropConnect is the whitened Dropout formula
    d = torch.diagonal(sigma).sqrt()
    sigma_unit = sigma / torch.outer(d, d)
    assert torch.isclose(dropconnect_regularizer(U, V, 0.3, "first", sigma_unit),
                         dropout_regularizer(U, V, 0.3), rtol=1e-14)


@pytest.mark.parametrize("layer", ["first", "second"])
def test_check4_dropconnect_monte_carlo(generator, layer):
    U, V, X, Y = _problem(generator)
    p = 0.3
    n = 20000
    shape = V.T.shape if layer == "first" else U.shape
    Z = (torch.rand(n, *shape, generator=generator, dtype=F64) >= p).to(F64)
    if layer == "first":
        W = torch.einsum("Dr,nrd->nDd", U, Z * V.T) / (1 - p)
    else:
        W = torch.einsum("nDr,dr->nDd", Z * U, V) / (1 - p)
    losses = ((Y[None] - torch.einsum("Nd,nDd->nND", X, W)) ** 2).sum((1, 2)) / X.shape[0]
    mean, se = float(losses.mean()), float(losses.std() / n**0.5)
    exact = float(dropconnect_expected_loss(U, V, X, Y, p, layer))
    assert abs(mean - exact) <= 5 * se


def test_per_example_masks_same_expectation(generator):
    U, V, X, Y = _problem(generator, N=3)
    p, r = 0.4, U.shape[1]
    law = Bernoulli(p)
    masks, probs = law.support(r)
    mu = law.mean(r)
    # independent mask per example: expectation factorizes over rows
    total = 0.0
    for i in range(X.shape[0]):
        total += sum(float(pr) * float(masked_loss(U, V, X[i:i + 1], Y[i:i + 1], z, mu))
                     for z, pr in zip(masks, probs)) / X.shape[0]
    assert abs(total - float(expected_loss(U, V, X, Y, law))) <= 1e-12 * total


def test_bad_inputs():
    U, V = torch.ones(2, 3), torch.ones(4, 2)
    with pytest.raises(ValueError, match="width"):
        dropout_regularizer(U, V, 0.5)
    with pytest.raises(ValueError, match="p"):
        dropout_regularizer(torch.ones(2, 3), torch.ones(4, 3), 1.0)
    with pytest.raises(ValueError, match="block_size"):
        dropblock_regularizer(torch.ones(2, 3), torch.ones(4, 3), 0.5, 2)
    with pytest.raises(TypeError, match="law"):
        induced_regularizer(torch.ones(2, 3), torch.ones(4, 3), "dropout")
    with pytest.raises(ValueError, match="layer"):
        dropconnect_regularizer(torch.ones(2, 3), torch.ones(4, 3), 0.5, "third")


def test_dropconnect_masked_loss_validates_p():
    from dropreg.linear.objective import dropconnect_masked_loss

    o = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropconnect_masked_loss(o, o, o, o, o, 1.0)
