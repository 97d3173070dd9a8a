"""dropreg.sites: one detection table, torch's channel-dropout shapes, every dropout state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropreg.curvature import dropout_gradients
from dropreg.masks import Bernoulli, Blocks, Gaussian, KeepExactly, SlidingBlocks2d
from dropreg.nn import (
    DropBlock1d,
    DropBlock2d,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    GaussianDropout,
    MaskDropout,
)
from dropreg.sites import (
    DropoutMasks,
    bernoulli_mask,
    dropout_sites,
    dropout_state,
    is_dropout_site,
    sample_mask,
    sample_masks,
)


class Declared(nn.Module):
    is_dropout_site = True

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x


class OptedOut(nn.Dropout):
    is_dropout_site = False


# module, is a site, law type (None: no law), independent noise groups
TABLE = [
    (nn.Dropout(0.3), True, Bernoulli, True),
    (nn.Dropout1d(0.3), True, Bernoulli, True),
    (nn.Dropout2d(0.3), True, Bernoulli, True),
    (nn.Dropout3d(0.3), True, Bernoulli, True),
    (nn.AlphaDropout(0.3), False, None, None),
    (nn.FeatureAlphaDropout(0.3), False, None, None),
    (Dropout(0.3), True, Bernoulli, True),
    (GaussianDropout(0.3), True, Gaussian, True),
    (DropBlock1d(0.3, 2), True, object, False),
    (DropBlock1d(0.3, 2, fixed_blocks=True), True, Blocks, False),
    (DropBlock2d(0.3, 2), True, SlidingBlocks2d, False),
    (MaskDropout(Bernoulli(0.3)), True, Bernoulli, True),
    (MaskDropout(Gaussian(0.3)), True, Gaussian, True),
    (MaskDropout(KeepExactly(2)), True, KeepExactly, False),
    (DropConnectLinear(3, 2, p=0.3), True, Bernoulli, True),
    (DropConnectConv2d(1, 2, 3, p=0.3), True, Bernoulli, True),
    (Declared(0.3), True, None, True),
    (OptedOut(0.3), False, None, None),
    (nn.Linear(2, 2), False, None, None),
    (nn.ReLU(), False, None, None),
]


@pytest.mark.parametrize(("module", "site", "law", "independent"), TABLE,
                         ids=[type(m).__name__ for m, *_ in TABLE])
def test_detection_table(module, site, law, independent):
    assert is_dropout_site(module) is site
    found = dropout_sites(nn.Sequential(module))
    assert len(found) == int(site)
    if site:
        s = found[0]
        if law is None:
            assert s.law is None
        else:
            assert isinstance(s.law, law)
        assert s.independent is independent
        if independent:
            assert s.noise_variance == pytest.approx(0.3 / 0.7, rel=1e-15)
        else:
            assert math.isnan(s.noise_variance)


def test_custom_predicate_and_p_without_law():
    gate = nn.Identity()
    sites = dropout_sites(nn.Sequential(gate), is_dropout=lambda m: m is gate)
    assert [s.name for s in sites] == ["0"] and math.isnan(sites[0].p)
    assert math.isnan(dropout_sites(nn.Sequential(MaskDropout(KeepExactly(2))))[0].p)


def _torch_shared_dims(fn, shape):
    """Dims over which torch's own functional channel dropout shares its mask."""
    torch.manual_seed(0)
    out = fn(torch.ones(shape, dtype=torch.float64), 0.5, training=True)
    shared = []
    for d in range(len(shape)):
        first = out.narrow(d, 0, 1)
        if torch.equal(out, first.expand_as(out)):
            shared.append(d)
    return tuple(shared)


CHANNEL = [
    (nn.Dropout1d, F.dropout1d, (64, 50, 7)),    # batched (N, C, L)
    (nn.Dropout1d, F.dropout1d, (64, 7)),        # unbatched (C, L)
    (nn.Dropout2d, F.dropout2d, (16, 32, 5, 4)),  # batched (N, C, H, W)
    (nn.Dropout2d, F.dropout2d, (64, 32, 5)),    # 3-D: torch reads (N, C, L)
    (nn.Dropout3d, F.dropout3d, (8, 32, 3, 4, 2)),  # batched (N, C, D, H, W)
    (nn.Dropout3d, F.dropout3d, (64, 3, 4, 2)),  # unbatched (C, D, H, W)
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("cls", "fn", "shape"), CHANNEL,
                         ids=[f"{c.__name__}-{len(s)}d" for c, _, s in CHANNEL])
def test_channel_masks_follow_torch(cls, fn, shape, generator):
    site = dropout_sites(nn.Sequential(cls(0.5)))[0]
    expected = _torch_shared_dims(fn, shape)
    assert site.shared_dims(len(shape)) == expected
    mask_shape = tuple(1 if d in expected else s for d, s in enumerate(shape))
    assert site.mask_shape(shape) == mask_shape
    assert sample_mask(site, shape, generator=generator).shape == mask_shape
    # the fresh state applies exactly this structure to the module's input
    with dropout_state(nn.Sequential(site.module), "fresh", generator=generator):
        out = site.module(torch.ones(shape, dtype=torch.float64))
    assert _torch_shared_dims(lambda x, p, training: out, shape) == expected


def test_unbatched_channel_masks_in_sample_masks(generator):
    net = nn.Sequential(nn.Dropout1d(0.5))
    X = torch.ones(6, 5, dtype=torch.float64)  # (C, L): unbatched for Dropout1d
    with pytest.raises(ValueError, match="unbatched"):
        sample_masks(net, X, 1, generator=generator)
    m = sample_masks(net, X, 1, per_example=False, generator=generator)[0].masks["0"]
    assert m.shape == (6, 1)
    m = sample_masks(net, torch.ones(4, 6, 5), 1, generator=generator)[0].masks["0"]
    assert m.shape == (4, 6, 1)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(0.4), nn.Linear(5, 4), nn.Tanh(),
                         Dropout(0.3), nn.Linear(4, 2)).double().train()


def _manual(net, x, z1, z2):
    h = torch.tanh(net[0](x)) * z1
    return net[6](torch.tanh(net[3](h)) * z2)


def test_off_state_is_the_clean_network():
    net, x = _net(), torch.randn(7, 3, dtype=torch.float64)
    with dropout_state(net, "off"):
        y = net(x)
    assert torch.equal(y, net.eval()(x))
    assert all("forward" not in m.__dict__ for m in net)


def test_fixed_state_and_its_gradients_against_autograd(generator):
    net, x = _net(), torch.randn(7, 3, dtype=torch.float64)
    y = torch.randn(7, 2, dtype=torch.float64)
    ms = sample_masks(net, x, 3, generator=generator)
    for m in ms:
        with dropout_state(net, "fixed", masks=m.masks):
            out = net(x)
        assert torch.allclose(out, _manual(net, x, m.masks["2"], m.masks["5"]), rtol=1e-15)
    G = dropout_gradients(net, F.mse_loss, (x, y), ms)
    for j, m in enumerate(ms):
        loss = F.mse_loss(_manual(net, x, m.masks["2"], m.masks["5"]), y)
        ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))])
        assert torch.allclose(G[:, j], ref, rtol=1e-12, atol=1e-15)
    with dropout_state(net, "fixed", masks={"2": ms[0].masks["2"]}), pytest.raises(KeyError):
        net(x)


def test_fresh_state_draws_the_masks_of_sample_masks(generator):
    net, x = _net(), torch.randn(7, 3, dtype=torch.float64)
    with dropout_state(net, "fresh", generator=torch.Generator().manual_seed(5), record=True) as st:
        out = net(x)
    ms = sample_masks(net, x, 1, generator=torch.Generator().manual_seed(5))[0].masks
    assert torch.equal(st.drawn["2"][0], ms["2"]) and torch.equal(st.drawn["5"][0], ms["5"])
    assert torch.allclose(out, _manual(net, x, ms["2"], ms["5"]), rtol=1e-15)
    z = bernoulli_mask((7, 5), 0.4, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)
    assert torch.equal(ms["2"], z)  # torch's layers: bernoulli_mask from the generator


def test_normal_state_is_the_own_forward():
    net, x = _net(), torch.randn(7, 3, dtype=torch.float64)
    torch.manual_seed(3)
    with dropout_state(net, "normal"):
        a = net(x)
    torch.manual_seed(3)
    assert torch.equal(a, net(x))


def test_recorded_outputs_give_site_derivatives_against_autograd():
    net, x = _net(), torch.randn(7, 3, dtype=torch.float64)
    with dropout_state(net, "off", record=True) as st:
        L = net(x).pow(2).sum()
    h1, h2 = st.tensors()
    g1, g2 = torch.autograd.grad(L, [h1, h2])
    # brute force: d/dz of the loss with fixed masks z at z = 1 is g * h
    z1 = torch.ones(7, 5, dtype=torch.float64, requires_grad=True)
    z2 = torch.ones(7, 4, dtype=torch.float64, requires_grad=True)
    d1, d2 = torch.autograd.grad(_manual(net, x, z1, z2).pow(2).sum(), [z1, z2])
    assert torch.allclose(g1 * h1, d1, rtol=1e-13) and torch.allclose(g2 * h2, d2, rtol=1e-13)


def test_bad_state_and_masks():
    net = _net()
    with pytest.raises(ValueError, match="state must be one of"), dropout_state(net, "on"):
        pass
    m = DropoutMasks({"2": torch.ones(4, 5)})
    assert m.batch(1, 3).masks["2"].shape == (2, 5)
