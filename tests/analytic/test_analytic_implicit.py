"""Implicit update noise and Dropout_k against exact enumeration (digest wei2020 §3; T7-T9, T11)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from dropreg.analytic import (
    accumulate_gradient,
    dropout_gradient,
    flatten,
    rules,
    xi_approx,
    xi_drop_tilde,
)
from dropreg.analytic.losses import mean_loss

D64 = torch.float64
Q = 0.3


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Dropout(Q), nn.Linear(3, 3)).double()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, generator=g, dtype=D64), torch.tensor([0, 2])


def exact_dropout_gradient_moments(net, x, y):
    """Mean and covariance of grad_W L(F(x, eta)) by enumerating the 2^(N*H) joint masks."""
    params = list(net.parameters())
    h = net[1](net[0](x))
    N, H = h.shape
    mean, second = 0.0, 0.0
    for bits in itertools.product((0.0, 1.0), repeat=N * H):
        z = torch.tensor(bits, dtype=D64).reshape(N, H)
        k = int(z.sum())
        prob = (1 - Q) ** k * Q ** (N * H - k)
        L = mean_loss(net[3](h * z / (1 - Q)), y, "cross_entropy")
        g = flatten(torch.autograd.grad(L, params, retain_graph=True))
        mean = mean + prob * g
        second = second + prob * torch.outer(g, g)
    return mean, second - torch.outer(mean, mean)


def _trace_check(samples: torch.Tensor, mean: torch.Tensor, expected: float) -> None:
    sq = ((samples - mean) ** 2).sum(1)
    se = float(sq.std()) / math.sqrt(sq.numel())
    assert abs(float(sq.mean()) - expected) < 5 * se
    assert se < 0.1 * expected  # the check has power


def test_xi_drop_tilde_has_dropout_covariance(generator):
    # T8: E ||xi~||^2 = tr Cov(xi_drop), exactly
    net = small_net()
    x, y = data()
    _, cov = exact_dropout_gradient_moments(net, x, y)
    S = 1500
    xs = torch.stack([flatten(xi_drop_tilde(net, x, y, generator=generator)) for _ in range(S)])
    _trace_check(xs, torch.zeros(xs.shape[1], dtype=D64), float(torch.trace(cov)))


@pytest.mark.parametrize("k", [1, 4, 16])
def test_dropout_k_covariance_scales_as_one_over_k(k, generator):
    # T9: Cov of the Dropout_k gradient = Cov(xi_drop) / k
    net = small_net()
    x, y = data()
    mean, cov = exact_dropout_gradient_moments(net, x, y)
    S = 1200 if k < 16 else 600
    samples = []
    for _ in range(S):
        net.zero_grad(set_to_none=True)
        accumulate_gradient(net, rules.dropout(k), x, y, generator=generator)
        samples.append(flatten([p.grad for p in net.parameters()]))
    _trace_check(torch.stack(samples), mean, float(torch.trace(cov)) / k)


def test_dropout_k_with_xi_tilde_restores_covariance(generator):
    # §3.2: Dropout_k + sqrt(1 - 1/k) xi~ has the covariance of Dropout_1
    net = small_net()
    x, y = data()
    mean, cov = exact_dropout_gradient_moments(net, x, y)
    samples = []
    for _ in range(1200):
        net.zero_grad(set_to_none=True)
        accumulate_gradient(net, rules.dropout_with_noise(4, "xi_tilde"), x, y, generator=generator)
        samples.append(flatten([p.grad for p in net.parameters()]))
    _trace_check(torch.stack(samples), mean, float(torch.trace(cov)))


def noise_jacobian(net, x, y, detach_h: bool) -> torch.Tensor:
    """G = d/dW (dL/dh * h) (rows: coordinates of h, columns: weights), by autograd."""
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach() for p in net.parameters())

    def gh(*ps):
        d = dict(zip(names, ps))
        h = functional_call(net[:2], {k: v for k, v in d.items() if k.startswith("0.")}, x)
        hv = h.detach() if detach_h else h
        hv = hv.requires_grad_(True) if detach_h else hv
        out = functional_call(net[3:], {k: v for k, v in d.items() if k.startswith("3.")}, hv)
        g, = torch.autograd.grad(mean_loss(out, y, "cross_entropy"), hv, create_graph=True)
        return (g * hv).reshape(-1)

    J = torch.autograd.functional.jacobian(gh, params)
    return torch.cat([j.reshape(j.shape[0], -1) for j in J], dim=1)


@pytest.mark.parametrize("noise", ["rademacher", "dropout"])
def test_xi_approx_covariance_and_mean(noise, generator):
    # T7 (exact part): Cov(xi_approx) = (q/(1-q)) G^T G for Rademacher and dropout eta alike;
    # T11: E[xi] = 0, and G differentiates through h (the detached G has another covariance).
    net = small_net()
    x, y = data()
    G = noise_jacobian(net, x, y, detach_h=False)
    expected = Q / (1 - Q) * float((G**2).sum())
    S = 2000
    xs = torch.stack([flatten(xi_approx(net, x, y, noise=noise, generator=generator))
                      for _ in range(S)])
    _trace_check(xs, torch.zeros(xs.shape[1], dtype=D64), expected)
    z = xs.mean(0) / (xs.std(0) / math.sqrt(S)).clamp_min(1e-300)
    assert bool((z[xs.std(0) > 0].abs() < 5).all())
    G_det = noise_jacobian(net, x, y, detach_h=True)
    sq = (xs**2).sum(1)
    assert abs(Q / (1 - Q) * float((G_det**2).sum()) - expected) > 10 * float(sq.std()) / S**0.5


def test_xi_approx_is_linear_in_the_noise_scale():
    net = small_net()
    x, y = data()
    a = flatten(xi_approx(net, x, y, variance=1.0, generator=torch.Generator().manual_seed(3)))
    b = flatten(xi_approx(net, x, y, variance=4.0, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(b, 2 * a, rtol=1e-12, atol=0)


def test_dropout_gradient_reproducible():
    net = small_net()
    x, y = data()
    a = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(4))
    b = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_bad_noise_arguments():
    net = small_net()
    x, y = data()
    with pytest.raises(ValueError, match="noise"):
        xi_approx(net, x, y, noise="gaussian")
    with pytest.raises(ValueError, match="variance"):
        xi_approx(net, x, y, noise="dropout", variance=1.0)
    with pytest.raises(ValueError, match="variance"):
        xi_approx(net, x, y, variance=-1.0)


def test_dropout_gradient_draws_exactly_the_enumerated_mask_gradients():
    """Every draw is the gradient of one of the 2^3 masks, each with frequency 1/8 (5 s.d.)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(3, 2)).double()
    x, y = torch.randn(1, 2, dtype=torch.float64), torch.tensor([1])
    exact = []
    for bits in range(8):
        z = torch.tensor([[(bits >> j) & 1 for j in range(3)]], dtype=torch.float64) * 2.0
        h = torch.tanh(net[0](x)) * z
        value = torch.nn.functional.cross_entropy(net[3](h), y)
        exact.append(flatten(torch.autograd.grad(value, list(net.parameters()))))
    exact = torch.stack(exact)
    g = torch.Generator().manual_seed(0)
    n = 800
    counts = torch.zeros(8)
    for _ in range(n):
        d = flatten(dropout_gradient(net, x, y, generator=g))
        dist = (exact - d).abs().amax(1)
        assert float(dist.min()) < 1e-12
        counts[int(dist.argmin())] += 1
    sd = (n * (1 / 8) * (7 / 8)) ** 0.5
    assert float((counts - n / 8).abs().max()) < 5 * sd
