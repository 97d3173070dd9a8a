"""Exact dropout criterion of ReLU nets against brute-force enumeration (digest §B.1, §B.8)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dropreg.relu import (
    StandardNet,
    all_patterns,
    dropout_criterion,
    dropout_output,
    dropout_penalty,
    enumerated_nodes,
    expected_dropout_output,
    linear_layers,
    num_dropout_nodes,
    relu_net,
    risk,
    weight_decay_criterion,
)
from dropreg.relu.criterion import _data, _exact_engine, _params

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def brute_force(net, X, Y, p, weights=None):
    """Plain loop over every pattern of every dropped node (digest appendix (1)), in numpy."""
    layers = [(lin.weight.detach().double().numpy(),
               np.zeros(lin.out_features) if lin.bias is None
               else lin.bias.detach().double().numpy())
              for lin in linear_layers(net)]
    X = X.double().numpy()
    Y = Y.double().numpy().reshape(X.shape[0], -1)
    keep = 1.0 - p
    sizes = [X.shape[1]] + [W.shape[0] for W, _ in layers[:-1]]
    N = sum(sizes)
    pi = np.full(X.shape[0], 1.0 / X.shape[0]) if weights is None else weights.numpy()
    total, mean = 0.0, np.zeros_like(Y)
    for pat in itertools.product([0, 1], repeat=N):
        pat = np.array(pat, dtype=float)
        pr = keep ** pat.sum() * (1 - keep) ** (N - pat.sum())
        masks = np.split(pat, np.cumsum(sizes)[:-1])
        h = X * masks[0] / keep
        for j, (W, b) in enumerate(layers):
            h = h @ W.T + b
            if j < len(layers) - 1:
                h = np.maximum(h, 0.0) * masks[j + 1] / keep
        total += pr * (pi @ ((h - Y) ** 2).sum(1))
        mean += pr * h
    return total, mean


def random_case(seed, K, hidden, out=1, N=3, bias=True):
    g = torch.Generator().manual_seed(seed)
    widths = [K, *hidden, out]
    Ws = [torch.randn(widths[j + 1], widths[j], generator=g, dtype=torch.float64)
          for j in range(len(widths) - 1)]
    bs = [torch.randn(widths[j + 1], generator=g, dtype=torch.float64) if bias else None
          for j in range(len(widths) - 1)]
    X = torch.randn(N, K, generator=g, dtype=torch.float64)
    Y = torch.randn(N, out, generator=g, dtype=torch.float64)
    return relu_net(Ws, bs), X, Y


CASES = [
    (2, [], 1),          # d = 1: linear model with input dropout
    (2, [2], 1),         # the paper's d = 2
    (3, [2, 3], 1),      # d = 3
    (2, [2, 1, 2], 2),   # d = 4, two outputs
    (1, [3], 1),
]


@pytest.mark.parametrize("K,hidden,out", CASES)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_exact_matches_brute_force(K, hidden, out, p):
    net, X, Y = random_case(K * 10 + len(hidden), K, hidden, out)
    ref, ref_mean = brute_force(net, X, Y, p)
    got = dropout_criterion(net, X, Y, p)
    with torch.no_grad():  # the in-place path without autograd
        fast = dropout_criterion(net, X, Y, p, chunk_size=5)
    assert abs(float(fast) - ref) <= 1e-12 * abs(ref)
    assert got.method == "exact" and got.stderr == 0.0
    assert got.n_patterns == 2 ** num_dropout_nodes(net)
    assert abs(float(got) - ref) <= 1e-12 * abs(ref)
    mean = expected_dropout_output(net, X, p)
    torch.testing.assert_close(mean, torch.from_numpy(ref_mean), rtol=1e-12, atol=1e-12)


def test_no_bias_and_example_weights():
    net, X, Y = random_case(3, 2, [3, 2], bias=False, N=4)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    ref, _ = brute_force(net, X, Y, 0.4, weights=w)
    assert abs(float(dropout_criterion(net, X, Y, 0.4, weights=w)) - ref) <= 1e-12 * ref


def test_fold_and_chunking_agree():
    """Closed-form fold of the last layer vs full enumeration; tiny chunks vs one chunk."""
    net, X, Y = random_case(7, 3, [3, 4], N=5)
    layers = _params(net, torch.float64)
    X, Y, pi = _data(layers, X, Y, None)
    layers = [(W.detach(), b.detach()) for W, b in layers]
    base = pi @ _exact_engine(layers, X, Y, 0.5, 1 << 20)[0]
    nofold = pi @ _exact_engine(layers, X, Y, 0.5, 1 << 20, fold_last=False)[0]
    tiny = pi @ _exact_engine(layers, X, Y, 0.5, 7)[0]  # forces chunks over states and masks
    assert abs(float(base - nofold)) <= 1e-12 * float(base)
    assert abs(float(base - tiny)) <= 1e-12 * float(base)


def test_dropout_output_matches_reference_forward():
    net, X, _ = random_case(11, 2, [3], N=2)
    R = all_patterns(num_dropout_nodes(net))
    D = dropout_output(net, X, R, 0.5)
    assert D.shape == (R.shape[0], 2, 1)
    lin1, lin2 = linear_layers(net)
    for r in (R[5], R[17], R[-1]):
        h = torch.relu(lin1(X * r[:2] * 2)) * r[2:] * 2
        torch.testing.assert_close(D[int((r * 2 ** torch.arange(5.0)).sum())], lin2(h))


def test_gradient_matches_brute_force_autograd():
    net, X, Y = random_case(5, 2, [2, 2], N=3)
    R = all_patterns(num_dropout_nodes(net))
    probs = 0.5 ** num_dropout_nodes(net)
    ref = (probs * ((dropout_output(net, X, R, 0.5) - Y) ** 2).sum(-1).mean(1)).sum()
    g_ref = torch.autograd.grad(ref, list(net.parameters()))
    g = torch.autograd.grad(dropout_criterion(net, X, Y, 0.5).value, list(net.parameters()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_monte_carlo_within_five_standard_errors(generator):
    net, X, Y = random_case(13, 3, [4, 3], N=4)
    exact = float(dropout_criterion(net, X, Y, 0.5))
    mc = dropout_criterion(net, X, Y, 0.5, method="monte_carlo", samples=20000,
                           generator=generator)
    assert mc.method == "monte_carlo" and mc.n_patterns == 20000
    assert 0 < mc.stderr < 0.05 * exact
    assert abs(float(mc) - exact) <= 5 * mc.stderr


def test_monte_carlo_reproducible():
    net, X, Y = random_case(13, 3, [4, 3], N=4)
    a = dropout_criterion(net, X, Y, method="monte_carlo", samples=100,
                          generator=torch.Generator().manual_seed(1))
    b = dropout_criterion(net, X, Y, method="monte_carlo", samples=100,
                          generator=torch.Generator().manual_seed(1))
    assert float(a) == float(b)


def test_too_many_nodes_names_limit_and_suggests_monte_carlo():
    net = StandardNet(K=20, d=3, n=16)
    assert enumerated_nodes(net) == 36
    with pytest.raises(ValueError, match=r"max_nodes=30.*monte_carlo"):
        dropout_criterion(net, torch.ones(1, 20), torch.ones(1), 0.5)
    res = dropout_criterion(net, torch.ones(1, 20), torch.ones(1), 0.5, method="monte_carlo",
                            samples=50, generator=torch.Generator().manual_seed(0))
    assert res.stderr > 0


def test_p_zero_is_risk_and_linear_penalty_is_nonnegative():
    net, X, Y = random_case(2, 3, [4], N=4)
    assert abs(float(dropout_criterion(net, X, Y, 0.0)) - float(risk(net, X, Y))) < 1e-12
    # d = 1 (linear): penalty = lam * mean_i sum_k w_k^2 x_ik^2 (Baldi & Sadowski)
    lin = relu_net([torch.tensor([[1.0, -2.0, 0.5]])], [torch.tensor([0.3])])
    lam = 0.3 / 0.7
    want = lam * float(((X**2) @ torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)).mean())
    assert abs(float(dropout_penalty(lin, X, Y, 0.3)) - want) < 1e-12 * want


def test_weight_decay_criterion_counts_weights_only():
    net, X, Y = random_case(4, 2, [3], N=3)
    sq_w = sum(float((lin.weight**2).sum()) for lin in linear_layers(net))
    sq_b = sum(float((lin.bias**2).sum()) for lin in linear_layers(net))
    r = float(risk(net, X, Y))
    assert abs(float(weight_decay_criterion(net, X, Y, 0.5)) - (r + 0.25 * sq_w)) < 1e-12
    got = float(weight_decay_criterion(net, X, Y, 0.5, include_biases=True))
    assert abs(got - (r + 0.25 * (sq_w + sq_b))) < 1e-12


def test_standard_net_structure():
    net = StandardNet(K=3, d=4, n=5, generator=torch.Generator().manual_seed(0))
    assert [m.out_features for m in linear_layers(net)] == [5, 5, 5, 1]
    assert num_dropout_nodes(net) == 3 + 15 and enumerated_nodes(net) == 13
    for lin in linear_layers(net):
        assert float(lin.weight.abs().max()) <= lin.in_features ** -0.5


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)), TypeError, r"net\[1\]"),
        (nn.Sequential(nn.Linear(2, 2), nn.ReLU()), TypeError, "end with"),
        (nn.Linear(2, 1), TypeError, "nn.Sequential"),
    ],
)
def test_rejects_other_networks(bad, exc, match):
    with pytest.raises(exc, match=match):
        dropout_criterion(bad, torch.ones(1, 2), torch.ones(1))


def test_rejects_bad_arguments():
    net, X, Y = random_case(1, 2, [2])
    with pytest.raises(ValueError, match=r"p \(the drop probability\) must be in \[0, 1\)"):
        dropout_criterion(net, X, Y, 1.0)
    with pytest.raises(ValueError, match="method"):
        dropout_criterion(net, X, Y, 0.5, method="sampled")
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        dropout_criterion(net, torch.ones(3, 4), Y)
    with pytest.raises(ValueError, match="Y must have shape"):
        dropout_criterion(net, X, torch.ones(2))
    with pytest.raises(ValueError, match="samples"):
        dropout_criterion(net, X, Y, method="monte_carlo", samples=1)
    with pytest.raises(ValueError, match="weights must be probabilities"):
        dropout_criterion(net, X, Y, weights=torch.ones(3))


@settings(max_examples=15, deadline=None)
@given(
    K=st.integers(1, 3),
    hidden=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    p=st.floats(0.05, 0.9),
    seed=st.integers(0, 1000),
)
def test_property_exact_equals_brute_force(K, hidden, p, seed):
    net, X, Y = random_case(seed, K, hidden, N=2)
    ref, _ = brute_force(net, X, Y, p)
    assert abs(float(dropout_criterion(net, X, Y, p)) - ref) <= 1e-11 * max(ref, 1e-300)


def test_inputs_are_not_modified():
    net, X, Y = random_case(9, 3, [], N=4)  # d = 1: the input layer itself is folded
    X0, Y0 = X.clone(), Y.clone()
    with torch.no_grad():
        dropout_criterion(net, X, Y, 0.5)
        dropout_criterion(net, X, Y, 0.5, method="monte_carlo", samples=10)
    assert torch.equal(X, X0) and torch.equal(Y, Y0)


@pytest.mark.parametrize("K,hidden", [(3, [2]), (3, [2, 2]), (4, [3, 1])])
def test_zero_inputs_folded_path_matches_brute_force(K, hidden):
    """Inputs with zeros take the folded path (input patterns deduplicated per example)."""
    net, X, Y = random_case(21 + K, K, hidden, N=5)
    X[0] = 0.0
    X[1, 1:] = 0.0
    X[2, 0] = 0.0
    ref, ref_mean = brute_force(net, X, Y, 0.4)
    for chunk in (1 << 18, 5):
        got = float(dropout_criterion(net, X, Y, 0.4, chunk_size=chunk))
        assert abs(got - ref) <= 1e-12 * ref
        with torch.no_grad():
            fast = float(dropout_criterion(net, X, Y, 0.4, chunk_size=chunk))
        assert abs(fast - ref) <= 1e-12 * ref
    mean = expected_dropout_output(net, X, 0.4)
    torch.testing.assert_close(mean, torch.from_numpy(ref_mean), rtol=1e-12, atol=1e-12)
    # the folded and the plain engine agree
    layers = [(W.detach(), b.detach()) for W, b in _params(net, torch.float64)]
    Xc, Yc, pi = _data(layers, X, Y, None)
    plain = pi @ _exact_engine(layers, Xc, Yc, 0.4, 1 << 18)[0]
    assert abs(float(plain) - ref) <= 1e-12 * ref


def test_zero_inputs_gradient_matches_brute_force_autograd():
    net, X, Y = random_case(31, 3, [2, 2], N=3)
    X[0, 0] = 0.0
    X[1] = 0.0
    R = all_patterns(num_dropout_nodes(net))
    k = R.sum(1)
    probs = 0.7**k * 0.3 ** (R.shape[1] - k)
    ref = (probs * ((dropout_output(net, X, R, 0.3) - Y) ** 2).sum(-1).mean(1)).sum()
    g_ref = torch.autograd.grad(ref, list(net.parameters()))
    g = torch.autograd.grad(dropout_criterion(net, X, Y, 0.3).value, list(net.parameters()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
