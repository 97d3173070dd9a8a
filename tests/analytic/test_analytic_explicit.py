"""Explicit regularizer against brute force (digest wei2020 §2; checks T2, T3, T4, T6)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian

from dropreg.analytic import (
    MLP,
    WordLSTM,
    explicit_regularizer,
    last_layer_regularizer,
    monte_carlo_dropout_gap,
    sampled_regularizer,
    site_mode,
)
from dropreg.analytic.losses import mean_loss, per_term_loss

D64 = torch.float64


def mask_prob(z: torch.Tensor, q: float) -> torch.Tensor:
    """Probability of a 0/1 keep pattern under independent Bernoulli(1 - q) keeps, in float64."""
    k = int(z.sum())
    return torch.tensor((1 - q) ** k * q ** (z.numel() - k), dtype=D64)


def tanh_net(seed: int, d: int = 5, H: int = 7, C: int = 4, p1: float = 0.3, p2: float = 0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, H), nn.Tanh(), nn.Dropout(p1), nn.Linear(H, H), nn.Tanh(),
                         nn.Dropout(p2), nn.Linear(H, C)).double()


def brute_force_site1(net, x, y, kind):
    """GN or full diagonal term of site 1 (after net[1]) from per-example autograd Jacobians."""
    c = net[2].p / (2 * (1 - net[2].p))
    rest = nn.Sequential(*list(net)[3:]).eval()
    h = net[1](net[0](x)).detach()
    total = 0.0
    for n in range(x.shape[0]):
        if kind == "gn":
            J = jacobian(rest, h[n]).detach()  # (C, H)
            p = torch.softmax(rest(h[n]), -1).detach()
            Hout = torch.diag(p) - torch.outer(p, p)
            total += sum(float((J[:, j] * h[n, j]) @ Hout @ (J[:, j] * h[n, j]))
                         for j in range(h.shape[1]))
        else:
            Hh = hessian(lambda v, n=n: nn.functional.cross_entropy(rest(v)[None], y[n:n + 1]),
                         h[n])
            total += float((torch.diagonal(Hh) * h[n] ** 2).sum())
    return c * total / x.shape[0]


@pytest.mark.parametrize("kind", ["gn", "full"])
def test_exact_estimators_match_brute_force(kind):
    net = tanh_net(0)
    x, y = torch.randn(6, 5, dtype=D64), torch.tensor([0, 1, 2, 3, 0, 1])
    est = {"gn": "gauss_newton", "full": "full"}[kind]
    r1 = explicit_regularizer(net, x, y, estimator=est, coefficient={"5": 0.0})
    assert float(r1) == pytest.approx(brute_force_site1(net, x, y, kind), rel=1e-10)


def test_additivity_over_sites():
    # T6: R(sites 1+2) = R(site 1) + R(site 2), exactly
    net = tanh_net(1)
    x, y = torch.randn(6, 5, dtype=D64), torch.tensor([0, 1, 2, 3, 0, 1])
    for est in ("gauss_newton", "full"):
        both = explicit_regularizer(net, x, y, estimator=est)
        one = explicit_regularizer(net, x, y, estimator=est, coefficient={"5": 0.0})
        two = explicit_regularizer(net, x, y, estimator=est, coefficient={"2": 0.0})
        assert float(both) == pytest.approx(float(one + two), rel=1e-12)


def test_gauss_newton_equals_full_before_linear_readout():
    # T3: affine F_i => D^2_h (l o F_i) = W^T H_out W; with a tanh after the site they differ
    net = tanh_net(2)
    x, y = torch.randn(8, 5, dtype=D64), torch.randint(0, 4, (8,))
    gn = explicit_regularizer(net, x, y, estimator="gauss_newton", coefficient={"2": 0.0})
    full = explicit_regularizer(net, x, y, estimator="full", coefficient={"2": 0.0})
    assert float(gn) == pytest.approx(float(full), rel=1e-12)
    gn1 = explicit_regularizer(net, x, y, estimator="gauss_newton", coefficient={"5": 0.0})
    full1 = explicit_regularizer(net, x, y, estimator="full", coefficient={"5": 0.0})
    assert abs(float(gn1) / float(full1) - 1) > 1e-6


def test_reduction_none_sums_to_mean():
    net = tanh_net(3)
    x, y = torch.randn(5, 5, dtype=D64), torch.randint(0, 4, (5,))
    per = explicit_regularizer(net, x, y, estimator="gauss_newton", reduction="none")
    # per-term values are the regularizers of each example alone, divided by N
    alone = torch.stack([explicit_regularizer(net, x[i:i + 1], y[i:i + 1],
                                              estimator="gauss_newton") for i in range(5)])
    assert per.shape == (5,)
    assert torch.allclose(per * 5, alone, rtol=1e-12)
    assert float(per.sum()) == pytest.approx(
        float(explicit_regularizer(net, x, y, estimator="gauss_newton")), rel=1e-12)


def _sampled_draws(net, x, y, loss, S, generator, kind="hessian"):
    with site_mode(net, "record") as rec:
        rec.clear()
        out = net(x)
    draws = torch.stack([sampled_regularizer(out, y, rec, loss=loss, kind=kind,
                                             generator=generator, create_graph=False)
                         for _ in range(S)])
    return draws.mean(), draws.std() / S**0.5


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sampled_label_estimator_is_unbiased(loss, generator):
    # T2: E_yhat[(d CE(F, yhat)/dh_j)^2] = (J^T H_out J)_jj; checked on the whole sum, 5 s.e.
    net = tanh_net(4)
    x = torch.randn(6, 5, dtype=D64)
    y = torch.randint(0, 4, (6,)) if loss == "cross_entropy" else torch.randn(6, 4, dtype=D64)
    exact = float(explicit_regularizer(net, x, y, loss=loss, estimator="gauss_newton"))
    mean, se = _sampled_draws(net, x, y, loss, 3000, generator)
    assert abs(float(mean) - exact) < 5 * float(se)
    assert float(se) < 0.1 * exact  # the check has power


def test_sampled_estimator_lstm_cross_token_terms_vanish(generator):
    # T2 on a language model: the site at time t feeds every later token; the cross-token terms of
    # (sum_t g_t)^2 vanish in expectation, so the sampled estimator still matches the exact GN.
    torch.manual_seed(5)
    net = WordLSTM(11, emb=4, hidden=5, layers=2, p=0.3).double()
    x, y = torch.randint(0, 11, (2, 4)), torch.randint(0, 11, (2, 4))
    exact = float(explicit_regularizer(net, x, y, estimator="gauss_newton"))
    mean, se = _sampled_draws(net, x, y, "cross_entropy", 3000, generator)
    assert abs(float(mean) - exact) < 5 * float(se)
    assert float(se) < 0.1 * exact


def test_channel_dropout_groups(generator):
    # Dropout1d shares one mask per channel: R uses u_G = the whole channel slice. With squared
    # loss and a linear readout the expansion is exact: compare with enumeration of all masks.
    torch.manual_seed(6)
    net = nn.Sequential(nn.Dropout1d(0.4), nn.Flatten(), nn.Linear(3 * 2, 2)).double()
    x, y = torch.randn(4, 3, 2, dtype=D64), torch.randn(4, 2, dtype=D64)
    q = 0.4
    clean = float(mean_loss(net.eval()(x), y, "mse"))
    exact = 0.0
    for n in range(4):
        for bits in itertools.product((0.0, 1.0), repeat=3):
            z = torch.tensor(bits, dtype=D64)
            prob = float(mask_prob(z, q))
            xn = x[n] * (z / (1 - q))[:, None]
            exact += prob * float(mean_loss(net[2](xn.reshape(1, -1)), y[n:n + 1], "mse")) / 4
    gap = exact - clean
    for est in ("gauss_newton", "full"):
        val = float(explicit_regularizer(net, x, y, loss="mse", estimator=est))
        assert val == pytest.approx(gap, rel=1e-10)
    mean, se = _sampled_draws(net, x, y, "mse", 2000, generator)
    assert abs(float(mean) - gap) < 5 * float(se)


def test_last_layer_regularizer_exact():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Dropout(0.35), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 3, dtype=D64), torch.randn(5, 2, dtype=D64)
    h = net[1](net[0](x))
    q = 0.35
    enumerated = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=4):
        z = torch.tensor(bits, dtype=D64)
        prob = float(mask_prob(z, q))
        enumerated += prob * float(mean_loss(net[3](h * z / (1 - q)), y, "mse"))
    gap = enumerated - float(mean_loss(net[3](h), y, "mse"))
    r1 = float(last_layer_regularizer(h, net[3].weight, q))
    assert r1 == pytest.approx(gap, rel=1e-12)
    assert float(explicit_regularizer(net, x, y, loss="mse", estimator="gauss_newton")) == \
        pytest.approx(r1, rel=1e-12)
    assert last_layer_regularizer(h, net[3].weight, q, reduction="none").shape == (5,)
    with pytest.raises(ValueError, match="p must be"):
        last_layer_regularizer(h, net[3].weight, 1.0)


def test_sampled_gradient_is_unbiased_for_squared_loss(generator):
    # double backprop: for mse H is constant, so E[grad_W R_sampled] = grad_W R_1 exactly
    torch.manual_seed(8)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Dropout(0.3), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 3, dtype=D64), torch.randn(5, 2, dtype=D64)
    params = list(net.parameters())
    exact = torch.autograd.grad(last_layer_regularizer(net[1](net[0](x)), net[3].weight, 0.3),
                                params, allow_unused=True, materialize_grads=True)
    exact = torch.cat([g.reshape(-1) for g in exact])
    S = 2000
    draws = []
    for _ in range(S):
        r = explicit_regularizer(net, x, y, loss="mse", generator=generator)
        draws.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            r, params, allow_unused=True, materialize_grads=True)]))
    draws = torch.stack(draws)
    z = (draws.mean(0) - exact) / (draws.std(0) / S**0.5).clamp_min(1e-300)
    informative = draws.std(0) > 0
    assert bool((z[informative].abs() < 5).all())
    assert torch.equal(exact[~informative], draws.mean(0)[~informative])


def test_monte_carlo_gap_matches_enumeration(generator):
    net = tanh_net(9, H=4)
    x, y = torch.randn(3, 5, dtype=D64), torch.randint(0, 4, (3,))
    p1, p2 = 0.3, 0.2
    h1 = net[1](net[0](x))
    exact = torch.zeros(3, dtype=D64)
    for b1 in itertools.product((0.0, 1.0), repeat=4):
        z1 = torch.tensor(b1, dtype=D64)
        w1 = float(mask_prob(z1, p1))
        a2 = net[4](net[3](h1 * z1 / (1 - p1)))
        for b2 in itertools.product((0.0, 1.0), repeat=4):
            z2 = torch.tensor(b2, dtype=D64)
            w2 = float(mask_prob(z2, p2))
            exact += w1 * w2 * per_term_loss(net[6](a2 * z2 / (1 - p2)), y, "cross_entropy")
    exact = exact - per_term_loss(net.eval()(x), y, "cross_entropy")
    gap = monte_carlo_dropout_gap(net, x, y, n_masks=4000, generator=generator)
    assert bool(((gap.per_term - exact).abs() < 5 * gap.per_term_stderr).all())
    assert abs(gap.value - float(exact.mean())) < 5 * gap.stderr
    fast = monte_carlo_dropout_gap(net, x, y, n_masks=4000, repeats=50, generator=generator)
    assert bool(((fast.per_term - exact).abs() < 5 * fast.per_term_stderr).all())


def test_taylor_term_matches_deletion_limit_for_wide_layers():
    # T4: lim_{q->0} R_drop/q = sum_j [l(h - h_j e_j) - l(h) + h_j d_j l]; for wide random tanh
    # nets this approaches the Taylor term (1/2) sum_j h_j^2 d^2_jj l.
    torch.manual_seed(10)
    H = 800
    net = nn.Sequential(nn.Linear(20, H), nn.Tanh(), nn.Dropout(0.1), nn.Linear(H, H),
                        nn.Tanh(), nn.Linear(H, 10)).double()
    x, y = torch.randn(1, 20, dtype=D64), torch.tensor([3])
    rest = nn.Sequential(*list(net)[3:])
    h = net[1](net[0](x)).detach().requires_grad_(True)
    l0 = nn.functional.cross_entropy(rest(h), y)
    g, = torch.autograd.grad(l0, h)
    deleted = h.detach() * (1 - torch.eye(H, dtype=D64))
    with torch.no_grad():
        ld = nn.functional.cross_entropy(rest(deleted), y.expand(H), reduction="none")
    deletion = float((ld - l0.detach() + (h * g).detach()[0]).sum())
    taylor = float(explicit_regularizer(net, x, y, estimator="full", coefficient=0.5))
    assert abs(deletion / taylor - 1) < 0.01


def test_bad_arguments():
    net = tanh_net(0)
    x, y = torch.randn(2, 5, dtype=D64), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="estimator"):
        explicit_regularizer(net, x, y, estimator="bogus")
    with pytest.raises(ValueError, match="loss"):
        explicit_regularizer(net, x, y, loss="hinge")
    with pytest.raises(ValueError, match="coefficient"):
        explicit_regularizer(net, x, y, coefficient=-1.0)
    with pytest.raises(ValueError, match="targets"):
        explicit_regularizer(net, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        explicit_regularizer(net, x, y, reduction="none")
    with pytest.raises(ValueError, match="n_masks"):
        monte_carlo_dropout_gap(net, x, y, n_masks=1)
    assert MLP(3, 4, 2).training


def test_sampled_labels_follow_the_model_prediction() -> None:
    """The sampled-label pseudo-loss draws y ~ softmax(logits) per row (inverse CDF): the mean of
    one_hot(y) = softmax - grad is within 5 s.e. of softmax for every class, on rows with
    different predictions, and the draw is fixed by the generator."""
    from dropreg.analytic.losses import sampled_pseudo_loss

    n = 40000
    base = torch.tensor([[0.0, 1.0, 2.0, -1.0, -30.0], [3.0, 0.0, 0.0, 0.0, 0.0]],
                        dtype=torch.float64)
    out = base.repeat(n, 1).requires_grad_(True)

    def draw(seed):
        P = sampled_pseudo_loss(out, torch.zeros(2 * n, dtype=torch.long), "cross_entropy",
                                generator=torch.Generator().manual_seed(seed))
        return torch.autograd.grad(P, out)[0]

    g = draw(0)
    probs = torch.softmax(base, -1)
    freq = (torch.softmax(out.detach(), -1) - g).view(n, 2, 5).mean(0)
    se = (probs * (1 - probs) / n).sqrt()
    assert bool(((freq - probs).abs() <= 5 * se + 1e-12).all())
    assert torch.equal(g, draw(0)) and not torch.equal(g, draw(1))
