"""Attention and weight sites: detection, every state, masks drawn through the laws; WeightDrop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropreg.masks import Bernoulli
from dropreg.nn import DropConnectLinear, WeightDrop
from dropreg.nn.weight_drop import WeightMask
from dropreg.sites import dropout_sites, dropout_state, frozen_statistics, sample_masks


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_kinds_of_a_transformer_and_a_weight_dropped_lstm():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    assert [(s.name, s.kind) for s in dropout_sites(layer)] == [
        ("self_attn", "attention"), ("dropout", "activation"), ("dropout1", "activation"),
        ("dropout2", "activation")]
    assert dropout_sites(nn.MultiheadAttention(8, 2, dropout=0.0)) == []
    lstm = WeightDrop(nn.LSTM(3, 4), ["weight_hh_l0", "weight_ih_l0"], p=0.25)
    sites = dropout_sites(lstm)
    assert [s.kind for s in sites] == ["weight", "weight"]
    assert all(s.law == Bernoulli(0.25) and not s.batched for s in sites)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_attention_states_off_fixed_fresh(mode):
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True).double()
    layer.train(mode == "train")
    x = torch.randn(3, 4, 8, generator=_gen(0), dtype=torch.float64)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True).double().eval()
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        want = ref(x)
        with dropout_state(layer, "off") as st:
            clean = layer(x)
            assert st.calls == 4  # attention and the three activation sites fired
            a = layer(x)
            st.state, st.generator = "fresh", _gen(1)
            f1 = layer(x)
            st.generator = _gen(1)
            f2 = layer(x)
    assert float((clean - want).abs().max()) <= 1e-12 and torch.equal(a, clean)
    assert torch.equal(f1, f2) and float((f1 - clean).abs().max()) > 1e-3
    masks = sample_masks(layer, x, 1, generator=_gen(2))[0]
    assert tuple(masks.masks["self_attn"].shape) == (3, 2, 4, 4)
    ones = {k: torch.ones_like(v) for k, v in masks.masks.items()}
    with torch.no_grad(), dropout_state(layer, "fixed", masks=ones):
        assert float((layer(x) - want).abs().max()) <= 1e-12


def test_weight_sites_fixed_masks_multiply_the_weight():
    net = nn.Sequential(DropConnectLinear(3, 2, p=0.5)).double()
    x = torch.randn(4, 3, generator=_gen(3), dtype=torch.float64)
    ms = sample_masks(net, x, 1, generator=_gen(4))[0]
    z = ms.masks["0"]
    assert z.shape == (2, 3) and "0" in ms.shared and ms.batch(0, 2).masks["0"] is z
    assert set(z.flatten().tolist()) <= {0.0, 2.0}
    with dropout_state(net, "fixed", masks=ms.masks):
        got = net(x)
    want = nn.functional.linear(x, net[0].weight * z, net[0].bias)
    assert torch.equal(got, want)
    with dropout_state(net, "off"):
        assert torch.equal(net(x), nn.functional.linear(x, net[0].weight, net[0].bias))


def test_weight_drop_law_eval_identity_and_generator():
    x = torch.randn(2, 5, 3, generator=_gen(5))
    a = WeightDrop(nn.LSTM(3, 4, batch_first=True), "weight_hh_l0", p=0.4, generator=_gen(6))
    b = WeightDrop(nn.LSTM(3, 4, batch_first=True), "weight_hh_l0", p=0.4, generator=_gen(6))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x)[0], b(x)[0])  # same generator seed, same masks
    assert not torch.equal(a(x)[0], a(x)[0])  # a fresh mask per call
    a.eval()
    plain = nn.LSTM(3, 4, batch_first=True)
    plain.load_state_dict({k.replace("parametrizations.", "").replace(".original", ""): v
                           for k, v in a.module.state_dict().items()})
    assert torch.allclose(a(x)[0], plain(x)[0], atol=0, rtol=0)
    a.p = 0.1
    assert a.p == 0.1 and a.law == Bernoulli(0.1)
    with pytest.raises(ValueError, match="weights"):
        WeightDrop(nn.LSTM(3, 4), "weight_hh_l7")
    with pytest.raises(ValueError, match="p"):
        WeightDrop(nn.LSTM(3, 4), "weight_hh_l0", p=1.5)


def test_weight_mask_drop_rate_matches_the_law():
    # entries kept with probability 1 - p: binomial test, tolerance 5 standard errors
    m = WeightMask(0.3, generator=_gen(7))
    z = m(torch.ones(200, 200, dtype=torch.float64))
    kept = float((z != 0).double().mean())
    se = (0.3 * 0.7 / 40000) ** 0.5
    assert abs(kept - 0.7) <= 5 * se
    assert set(torch.unique(z).tolist()) == {0.0, 1 / 0.7}


def test_frozen_statistics_uses_batch_statistics_without_updating():
    bn = nn.BatchNorm1d(3).double().train()
    x = torch.randn(8, 3, generator=_gen(8), dtype=torch.float64)
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    with frozen_statistics(bn):
        got = bn(x)
    assert all(torch.equal(a, b) for a, b in zip(before, (bn.running_mean, bn.running_var,
                                                          bn.num_batches_tracked)))
    want = (x - x.mean(0)) / (x.var(0, unbiased=False) + bn.eps).sqrt()
    assert float((got - want).abs().max()) <= 1e-12
