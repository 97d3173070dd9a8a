"""Update rules and the trainer (digest wei2020 §3.5, Algorithm 2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dropreg.analytic import (
    MLP,
    UpdateRule,
    WordLSTM,
    accumulate_gradient,
    explicit_regularizer,
    language_model_windows,
    pydoc_corpus,
    rules,
    sampled_regularizer,
    site_mode,
    train,
)
from dropreg.analytic.implicit import implicit_noise_term
from dropreg.analytic.losses import mean_loss

D64 = torch.float64


def net_and_data():
    torch.manual_seed(0)
    net = MLP(4, 6, 3, p=0.3, depth=2).double()
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(8, 4, generator=g, dtype=D64), torch.randint(0, 3, (8,), generator=g)


def grads_of(net):
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def test_algorithm2_gradient_is_loss_plus_regularizer_plus_noise():
    net, x, y = net_and_data()
    net.zero_grad()
    accumulate_gradient(net, rules.explicit_implicit(), x, y,
                        generator=torch.Generator().manual_seed(5))
    got = grads_of(net)
    g = torch.Generator().manual_seed(5)
    with site_mode(net) as rec:
        rec.clear()
        out = net(x)
    L = mean_loss(out, y, "cross_entropy")
    total = L + sampled_regularizer(out, y, rec, generator=g) + implicit_noise_term(L, rec,
                                                                                    generator=g)
    want = torch.cat([t.reshape(-1) for t in torch.autograd.grad(total, list(net.parameters()))])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)


def test_explicit_rule_matches_explicit_regularizer():
    net, x, y = net_and_data()
    net.zero_grad()
    accumulate_gradient(net, rules.explicit(coefficient=0.7), x, y,
                        generator=torch.Generator().manual_seed(6))
    got = grads_of(net)
    with site_mode(net) as rec:
        rec.clear()
        L = mean_loss(net(x), y, "cross_entropy")
    R = explicit_regularizer(net, x, y, coefficient=0.7, generator=torch.Generator().manual_seed(6))
    want = torch.cat([t.reshape(-1) for t in torch.autograd.grad(L + R, list(net.parameters()))])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)


def test_no_dropout_is_clean_gradient():
    net, x, y = net_and_data()
    net.zero_grad()
    loss = accumulate_gradient(net, rules.no_dropout(), x, y)
    with site_mode(net) as rec:
        rec.clear()
        L = mean_loss(net(x), y, "cross_entropy")
    want = torch.cat([t.reshape(-1) for t in torch.autograd.grad(L, list(net.parameters()))])
    assert torch.allclose(grads_of(net), want) and loss == pytest.approx(float(L))


@pytest.mark.parametrize("rule", [rules.dropout(1), rules.dropout(3),
                                  rules.dropout_with_noise(3, "xi_tilde"),
                                  rules.dropout_with_noise(3, "xi_approx"), rules.explicit(),
                                  rules.explicit_implicit(), rules.ablation("identity"),
                                  rules.ablation("loss_jacobian", implicit=False)])
def test_every_rule_runs_on_mlp_and_lstm(rule):
    net, x, y = net_and_data()
    net.zero_grad()
    assert math.isfinite(accumulate_gradient(net, rule, x, y, generator=torch.Generator()))
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    lm = WordLSTM(13, emb=4, hidden=5, layers=2, p=0.3)
    toks = torch.randint(0, 13, (3, 6))
    accumulate_gradient(lm, rule, toks, toks, generator=torch.Generator())
    assert all(p.grad is not None for p in lm.parameters())


def test_rule_validation():
    with pytest.raises(ValueError, match="top_up"):
        UpdateRule("x", k=0, top_up="xi_tilde")
    with pytest.raises(ValueError, match="k=0"):
        UpdateRule("x", k=2, explicit="hessian")
    with pytest.raises(ValueError, match="k must be"):
        rules.dropout(0)
    with pytest.raises(ValueError, match="noise"):
        rules.dropout_with_noise(2, "gaussian")
    with pytest.raises(ValueError, match="kind"):
        rules.ablation("diagonal")


def test_trainer_records_clean_metrics():
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(2)
    X, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    net = MLP(5, 16, 3, p=0.2)
    hist = train(net, rules.explicit_implicit(), X, y, X[:10], y[:10], epochs=3, batch_size=16,
                 lr=0.1, clip_grad_norm=1.0, generator=g, progress=True)
    assert [e.epoch for e in hist.epochs] == [0, 1, 2, 3]
    assert hist.steps == 9 and hist.seconds_per_step > 0 and hist.cpu_seconds_per_step >= 0
    assert hist.final.train_loss < hist.epochs[0].train_loss
    assert 0 <= hist.final.test_accuracy <= 1 and hist.best_test_loss <= hist.final.test_loss
    reg = MLP(5, 8, 2, p=0.2)
    Y = torch.randn(40, 2, generator=g)
    h2 = train(reg, rules.dropout(1), X, Y, X, Y, epochs=1, loss="mse", generator=g)
    assert math.isnan(h2.final.test_accuracy)
    with pytest.raises(ValueError, match="epochs"):
        train(net, rules.dropout(1), X, y, X, y, epochs=0)


def test_pydoc_corpus_windows():
    ids, vocab = pydoc_corpus(300)
    assert len(vocab) == 300 and ids.dtype == torch.long and ids.numel() > 50_000
    x, y, xt, yt = language_model_windows(ids, 10, 20, 5)
    assert x.shape == (20, 10) and xt.shape == (5, 10)
    assert torch.equal(x[0, 1:], y[0, :-1])
    with pytest.raises(ValueError, match="n_train"):
        language_model_windows(ids, 10, 10**6, 1)
    assert nn.Module in type(WordLSTM(5)).__mro__
