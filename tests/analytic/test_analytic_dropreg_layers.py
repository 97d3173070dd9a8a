"""dropreg's own activation-dropout layers are dropout sites of the analytic tools."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropreg.analytic import (
    dropout_gradient,
    dropout_sites,
    dropout_state,
    explicit_regularizer,
    implicit_noise_term,
    site_mode,
)
from dropreg.analytic.losses import mean_loss
from dropreg.nn import DropBlock2d, DropConnectLinear, Dropout, GaussianDropout


def test_sites_include_dropreg_activation_layers_and_weight_sites():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), DropBlock2d(0.1, 2), nn.Flatten(),
                        nn.Linear(8, 4), Dropout(0.3), nn.ReLU(), GaussianDropout(0.2),
                        DropConnectLinear(4, 2, p=0.5))
    sites = dropout_sites(net)
    assert [type(s.module).__name__ for s in sites] == ["DropBlock2d", "Dropout",
                                                        "GaussianDropout", "DropConnectLinear"]
    assert [s.kind for s in sites] == ["activation"] * 3 + ["weight"]
    assert [s.independent for s in sites] == [False, True, True, True]
    assert [round(s.noise_variance, 12) for s in sites[1:3]] == [round(0.3 / 0.7, 12), 0.25]


def test_second_order_formulas_refuse_correlated_sites_but_monte_carlo_works():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), DropBlock2d(0.2, 2), nn.Flatten(),
                        nn.Linear(8, 3)).double()
    x, y = torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    for est in ("gauss_newton", "full", "sampled"):
        with pytest.raises(ValueError, match="DropBlock2d.*SlidingBlocks2d"):
            explicit_regularizer(net, x, y, estimator=est)
    with dropout_state(net, "off", record=True) as rec:
        L = mean_loss(net(x), y, "cross_entropy")
    with pytest.raises(ValueError, match="independent noise groups"):
        implicit_noise_term(L, rec)
    g = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(0))
    assert [t.shape for t in g] == [p.shape for p in net.parameters()]


def test_dropreg_dropout_gives_the_torch_dropout_regularizer():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
    head = nn.Linear(7, 3)
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    ours = nn.Sequential(body, Dropout(0.25), head).double()
    theirs = nn.Sequential(body, nn.Dropout(0.25), head).double()
    a = explicit_regularizer(ours, x, y, estimator="gauss_newton")
    b = explicit_regularizer(theirs, x, y, estimator="gauss_newton")
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-12, atol=0)


def test_sampled_masks_of_dropreg_layers_follow_the_generator():

    net = nn.Sequential(Dropout(0.5), nn.Linear(3, 2), GaussianDropout(0.3))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    g1 = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)  # the global generator must not matter
    g2 = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(0))
    g3 = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    assert not all(torch.equal(a, b) for a, b in zip(g1, g3))


def test_dropout_noise_refuses_non_bernoulli_sites():

    net = nn.Sequential(nn.Linear(3, 4), GaussianDropout(0.3), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    with site_mode(net, "record") as rec:
        L = mean_loss(net(x), y, "cross_entropy")
    with pytest.raises(ValueError, match="Gaussian"):
        implicit_noise_term(L, rec, noise="dropout")
    assert implicit_noise_term(L, rec, noise="rademacher").shape == ()
