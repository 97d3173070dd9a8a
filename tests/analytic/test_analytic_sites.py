"""Dropout sites, site modes and the noise parametrization (digest wei2020 §1.2, T1)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dropreg.analytic import (
    bernoulli_mask,
    dropout_sites,
    dropout_state,
    explicit_regularizer,
    is_dropout_site,
    site_coefficient,
    site_mode,
)
from dropreg.sites import group_sum


class DuckSite(nn.Module):
    is_dropout_site = True

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.noise_variance = 0.5
        self.shared_mask_dims = (-1,)

    def forward(self, x):
        return x * 2.0


def test_discovery_protocol():
    net = nn.Sequential(nn.Dropout(0.1), nn.Dropout1d(0.2), nn.Dropout2d(0.3),
                        nn.AlphaDropout(0.2), DuckSite(0.4), nn.Linear(2, 2))
    sites = dropout_sites(net)
    assert [s.name for s in sites] == ["0", "1", "2", "4"]
    assert [s.p for s in sites] == [0.1, 0.2, 0.3, 0.4]
    assert sites[0].noise_variance == pytest.approx(0.1 / 0.9, rel=1e-15)
    assert sites[3].noise_variance == 0.5
    assert sites[0].shared_dims(2) == ()
    assert sites[1].shared_dims(3) == (2,)
    assert sites[2].shared_dims(4) == (2, 3)
    assert sites[3].shared_dims(3) == (2,)
    assert not is_dropout_site(nn.AlphaDropout(0.1))


def test_bad_p_is_rejected():
    # p = 1 is a valid site (curvature: a zero mask) but the analytic formulas refuse it
    net = nn.Sequential(DuckSite(1.0), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="p=1.0"):
        site_coefficient(dropout_sites(net)[0])
    with pytest.raises(ValueError, match="p=1.0"):
        explicit_regularizer(net, torch.ones(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mode must be"):
        with site_mode(nn.Dropout(0.1), "bogus"):
            pass


def test_record_mode_passes_through_and_restores():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.5), DuckSite(0.3)).train()
    x = torch.randn(4, 3)
    with site_mode(net, "record") as rec:
        y = net(x)
    assert torch.equal(y, net[0](x))
    assert torch.equal(rec.values["1"][0], net[0](x))
    # gradient w.r.t. the recorded view is the derivative through the site only
    g, = torch.autograd.grad(y.sum(), rec.values["2"][0])
    assert torch.equal(g, torch.ones_like(g))
    assert "forward" not in net[1].__dict__ and "forward" not in net[2].__dict__
    assert torch.equal(net[2](x), 2 * x)  # duck site back to its own forward


def test_fixed_masks_replace_perturb_mode():
    # the exact estimators differentiate w.r.t. fixed masks at z = 1 (no additive "perturb" mode):
    # d out / d z = J * h for out = f(h * z)
    net = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 1)).double()
    x = torch.tensor([[0.5, -2.0]], dtype=torch.float64)
    z = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    with dropout_state(net, "fixed", masks={"0": z}) as st:
        assert torch.equal(net(x), net[1](x * z))

        def out_of(m):
            st.masks = {"0": m}
            return net(x)

        jac = torch.func.jacrev(out_of)(torch.ones_like(x))
    assert torch.allclose(jac.reshape(-1), net[1].weight[0] * x[0], rtol=1e-15, atol=0)


def test_noise_parametrization_exact():
    # T1: eta = z/(1-q) - 1 has mean 0 and variance q/(1-q) (enumeration of the two values)
    for q in (0.1, 0.4, 0.7):
        vals = torch.tensor([-1.0, q / (1 - q)], dtype=torch.float64)
        probs = torch.tensor([q, 1 - q], dtype=torch.float64)
        assert float((probs * vals).sum()) == pytest.approx(0.0, abs=1e-15)
        assert float((probs * vals**2).sum()) == pytest.approx(q / (1 - q), rel=1e-14)


def test_sample_mode_has_dropout_law(generator):
    # T1: h * (1 + eta) has the law of nn.Dropout(q)(h): values {0, h/(1-q)}, keep rate 1 - q
    q, n = 0.3, 200_000
    net = nn.Dropout(q)
    h = torch.full((n,), 2.0, dtype=torch.float64)
    with site_mode(net, "sample", generator=generator):
        out = net(h)
    vals = set(out.unique().tolist())
    assert vals <= {0.0, 2.0 / (1 - q)}
    keep = float((out != 0).double().mean())
    se = (q * (1 - q) / n) ** 0.5
    assert abs(keep - (1 - q)) < 5 * se


def test_shared_masks(generator):
    m = bernoulli_mask((3, 4, 5), 0.5, (2,), generator=generator, dtype=torch.float64)
    assert m.shape == (3, 4, 1)
    net = nn.Dropout1d(0.5)
    x = torch.ones(3, 4, 5)
    with site_mode(net, "sample", generator=generator):
        y = net(x)
    assert torch.equal(y, y[..., :1].expand_as(y))  # one value per channel
    a = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(group_sum(a, (2,)), torch.tensor([[[3.0], [12.0]]]))


def test_native_mode_uses_own_forward():
    net = nn.Sequential(DuckSite(0.2)).eval()
    with site_mode(net, "native") as rec:
        y = net(torch.ones(2))
    assert torch.equal(y, torch.full((2,), 2.0)) and not net[0].training
    assert len(rec.values["0"]) == 1


def test_reused_site_records_each_call():
    drop = nn.Dropout(0.2)
    x = torch.ones(2)
    with site_mode(drop) as rec:
        for _ in itertools.repeat(None, 3):
            drop(x)
    assert len(rec.values[""]) == 3
