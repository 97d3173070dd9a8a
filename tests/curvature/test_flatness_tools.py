"""Flatness tools: interval flatness, filter-normalised directions, loss profiles, PCA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dropreg.curvature import (
    HessianOperator,
    filter_normalized_direction,
    flatten_params,
    interval_flatness,
    loss_profile,
    sharpness,
    trajectory_pca,
    variance_flatness,
)


def _quadratic_op(diag):
    """Loss 0.5 * sum_i d_i w_i^2 + 1 (a linear model on a designed data set), as an operator."""
    P = len(diag)
    net = nn.Linear(P, 1, bias=False).double()
    with torch.no_grad():
        net.weight.zero_()
    X = torch.diag(torch.tensor(diag, dtype=torch.float64).sqrt()) * math.sqrt(P)
    y = torch.zeros(P, 1, dtype=torch.float64)

    def loss(o, t):
        return 0.5 * ((o - t) ** 2).mean() + 1.0

    return HessianOperator(net, loss, (X, y))


def test_interval_flatness_on_quadratic():
    op = _quadratic_op([4.0, 1.0, 0.25])
    # L(a e_i) = 1 + 0.5 d_i a^2 <= 2  <=>  |a| <= sqrt(2 / d_i)
    for i, d in enumerate([4.0, 1.0, 0.25]):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = 3.0  # normalised internally
        r = interval_flatness(op, e, rtol=1e-9)
        assert r.width == pytest.approx(2 * math.sqrt(2 / d), rel=1e-8)
        assert r.left == pytest.approx(-r.right, rel=1e-8) and not r.censored
    r = interval_flatness(op, torch.tensor([0.0, 0.0, 1.0]), max_alpha=1.0)
    assert r.censored and r.width == pytest.approx(2.0)
    with pytest.raises(ValueError, match="threshold"):
        interval_flatness(op, torch.ones(3), threshold=1.0)
    s = sharpness(op, generator=torch.Generator().manual_seed(0))
    assert s.lambda_max == pytest.approx(4.0, rel=1e-10)
    assert s.trace.estimate == pytest.approx(5.25, rel=1e-10)


def test_loss_profile_and_filter_normalisation(generator):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2)).double()
    d = filter_normalized_direction(net, generator=generator)
    theta = flatten_params(dict(net.named_parameters()))
    assert d.shape == theta.shape
    w = net[0].weight.detach()
    dw = d[: w.numel()].view_as(w)
    assert torch.allclose(dw.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-12)
    assert float(d[w.numel():w.numel() + 3].abs().sum()) == 0.0  # conv bias ignored
    d1 = filter_normalized_direction(net, include_1d=True, generator=generator)
    assert float(d1[w.numel():w.numel() + 3].norm()) > 0
    X = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=generator)
    y = torch.randn(4, 2, dtype=torch.float64, generator=generator)
    op = HessianOperator(net, nn.functional.mse_loss, (X, y))
    prof = loss_profile(op, d, torch.tensor([0.0, 0.5]))
    assert prof[0] == pytest.approx(float(nn.functional.mse_loss(net(X), y)), rel=1e-13)


def test_pca_and_variance_flatness(generator):
    op = _quadratic_op([4.0, 1.0, 0.25, 0.0625])
    # snapshots with variance inversely related to curvature along the axes
    sd = torch.tensor([0.05, 0.1, 0.2, 0.4], dtype=torch.float64)
    snaps = torch.randn(400, 4, dtype=torch.float64, generator=generator) * sd
    mean, V, var = trajectory_pca(snaps, 4)
    assert torch.allclose(var, torch.linalg.eigvalsh(torch.cov(snaps.T)).flip(0), rtol=1e-10)
    assert torch.allclose(V.T @ V, torch.eye(4, dtype=torch.float64), atol=1e-12)
    r = variance_flatness(op, snaps, k=4)
    assert r.spearman == pytest.approx(1.0)  # larger variance along flatter axes
    with pytest.raises(ValueError, match="k must be"):
        trajectory_pca(snaps, 0)


def test_interval_flatness_refuses_zero_loss(half_mse):
    net = nn.Linear(2, 1, bias=False).double()
    nn.init.zeros_(net.weight)
    X, y = torch.randn(4, 2, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    op = HessianOperator(net, half_mse, (X, y))  # loss exactly 0 at the center
    with pytest.raises(ValueError, match="positive loss"):
        interval_flatness(op, torch.ones(op.num_params, dtype=torch.float64))


def test_alignment_refuses_zero_noise(interp_net, half_mse, generator):
    from dropreg.curvature import dropout_gradient_noise, noise_alignment

    net, X, y = interp_net(0.0)  # p = 0: the dropout noise is exactly zero
    op = HessianOperator(net, half_mse, (X, y))
    noise = dropout_gradient_noise(net, half_mse, (X, y), 8, generator=generator)
    with pytest.raises(ValueError, match="noise samples"):
        noise_alignment(op, noise, k=3)
