"""The step of Algorithm 2 with one shared softmax (issue 16) against the autograd reference it
replaces: the pseudo-loss and the clean loss differentiated with ``create_graph=True`` (Wei,
Kakade, Ma 2020, eqs. 4.3 and 4.6; sampled-label estimator). Float64, same draws, value and
gradient to 1e-10."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dropreg.analytic import MLP, UpdateRule, WordLSTM, accumulate_gradient, rules
from dropreg.analytic.explicit import (
    _sampled_regularizer,
    output_probabilities,
    pseudo_loss_site_gradients,
    site_coefficient,
)
from dropreg.analytic.implicit import implicit_noise_from_outputs, implicit_noise_term
from dropreg.analytic.losses import (
    cross_entropy_value,
    mean_loss,
    num_terms,
    sample_labels,
    sampled_pseudo_loss,
    softmax_cotangent,
)
from dropreg.analytic.updates import native_rnn_kernels
from dropreg.sites import dropout_state, group_sum

D64 = torch.float64


def mlp_case(loss="cross_entropy"):
    torch.manual_seed(0)
    net = MLP(4, 6, 3, p=0.3, depth=2).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=D64)
    y = (torch.randint(0, 3, (8,), generator=g) if loss == "cross_entropy"
         else torch.randn(8, 3, generator=g, dtype=D64))
    return net, x, y


def lstm_case():
    torch.manual_seed(0)
    net = WordLSTM(13, emb=4, hidden=5, layers=2, p=0.3).double()
    g = torch.Generator().manual_seed(2)
    return net, torch.randint(0, 13, (3, 6), generator=g), torch.randint(0, 13, (3, 6),
                                                                         generator=g)


def reference(net, x, y, rule, seed, loss="cross_entropy"):
    """The step as dropreg computed it before issue 16: autograd through the pseudo-loss and
    the clean loss (log-softmax backward recorded, then differentiated again)."""
    g = torch.Generator().manual_seed(seed)
    with dropout_state(net, "off", record=True) as rec, native_rnn_kernels(net):
        out = net(x)
    L = mean_loss(out, y, loss)
    items = list(rec.items())
    hs = [h for _, h in items]
    R = out.new_zeros(())
    if rule.explicit != "none":
        N = num_terms(out, y, loss)
        for _ in range(rule.n_label_samples):
            P = sampled_pseudo_loss(out, y, loss, kind=rule.explicit, generator=g)
            gs = torch.autograd.grad(P, hs, create_graph=True, retain_graph=True)
            for (site, h), gh in zip(items, gs):
                a = group_sum(gh * h, site.shared_dims(h.dim()))
                R = R + site_coefficient(site, rule.coefficient) * (a * a).sum()
        R = R / (N * rule.n_label_samples)
    I = implicit_noise_term(L, rec, variance=rule.variance, generator=g) if rule.implicit \
        else out.new_zeros(())
    params = list(net.parameters())
    grads = torch.autograd.grad(L + R + I, params, allow_unused=True, materialize_grads=True)
    return R.detach(), I.detach(), torch.cat([t.reshape(-1) for t in grads])


def step_gradient(net, x, y, rule, seed, loss="cross_entropy"):
    net.zero_grad()
    accumulate_gradient(net, rule, x, y, loss=loss, generator=torch.Generator().manual_seed(seed))
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in net.parameters()])


RULES = [rules.explicit(), rules.explicit_implicit(), rules.explicit_implicit(coefficient=0.7,
                                                                              variance=0.3),
         rules.ablation("loss_jacobian"), rules.ablation("identity"),
         rules.ablation("loss_jacobian", implicit=False)]


@pytest.mark.parametrize("case", [mlp_case, lstm_case], ids=["mlp", "lstm"])
@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_step_gradient_matches_autograd_reference(case, rule):
    net, x, y = case()
    want = reference(net, x, y, rule, seed=5)[2]
    got = step_gradient(net, x, y, rule, seed=5)
    assert want.abs().max() > 1e-4  # a gradient that could differ
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)


def test_two_label_samples_and_mse_match_reference():
    net, x, y = lstm_case()
    rule = UpdateRule("R_approx x2 + xi", k=0, explicit="hessian", implicit=True,
                      n_label_samples=2)
    assert torch.allclose(step_gradient(net, x, y, rule, 3), reference(net, x, y, rule, 3)[2],
                          rtol=1e-10, atol=1e-13)
    net, x, y = mlp_case("mse")
    for r in (rules.explicit_implicit(), rules.ablation("loss_jacobian")):
        assert torch.allclose(step_gradient(net, x, y, r, 4, "mse"),
                              reference(net, x, y, r, 4, "mse")[2], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", [mlp_case, lstm_case], ids=["mlp", "lstm"])
def test_xi_approx_top_up_matches_reference(case):
    net, x, y = case()
    rule = rules.dropout_with_noise(3, "xi_approx")
    got = step_gradient(net, x, y, rule, seed=6)
    g = torch.Generator().manual_seed(6)
    params = list(net.parameters())
    total = 0.0
    with dropout_state(net, "fresh", generator=g):
        for _ in range(3):
            total = total + mean_loss(net(x), y, "cross_entropy") / 3
    with dropout_state(net, "off", record=True) as rec:
        L = mean_loss(net(x), y, "cross_entropy")
    total = total + implicit_noise_term(L, rec, scale=math.sqrt(2 / 3), generator=g)
    want = torch.cat([t.reshape(-1) for t in torch.autograd.grad(total, params)])
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", [mlp_case, lstm_case], ids=["mlp", "lstm"])
def test_values_match_reference(case):
    net, x, y = case()
    rule = rules.explicit_implicit()
    R_want, I_want, _ = reference(net, x, y, rule, seed=7)
    g = torch.Generator().manual_seed(7)
    with dropout_state(net, "off", record=True) as rec, native_rnn_kernels(net):
        out = net(x)
    L = mean_loss(out, y, "cross_entropy")
    probs = output_probabilities(out, "cross_entropy")
    R = _sampled_regularizer(out, y, rec, generator=g, probs=probs)
    I = implicit_noise_from_outputs(out, y, L, rec, generator=g, probs=probs)
    assert R_want > 0 and I_want != 0
    assert math.isclose(float(R), float(R_want), rel_tol=1e-10)
    assert math.isclose(float(I), float(I_want), rel_tol=1e-10)


@pytest.mark.parametrize("kind", ["hessian", "loss_jacobian", "identity"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_site_gradients_and_their_derivative_match_the_pseudo_loss(kind, loss):
    net, x, y = mlp_case(loss)
    with dropout_state(net, "off", record=True) as rec:
        out = net(x)
    hs = rec.tensors()
    got = pseudo_loss_site_gradients(out, y, hs, loss=loss, kind=kind,
                                     generator=torch.Generator().manual_seed(3))
    P = sampled_pseudo_loss(out, y, loss, kind=kind, generator=torch.Generator().manual_seed(3))
    want = torch.autograd.grad(P, hs, create_graph=True, retain_graph=True)
    params = list(net.parameters())
    for a, b, h in zip(got, want, hs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
        da = torch.autograd.grad(((a * h) ** 2).sum(), params, retain_graph=True,
                                 allow_unused=True, materialize_grads=True)
        db = torch.autograd.grad(((b * h) ** 2).sum(), params, retain_graph=True,
                                 allow_unused=True, materialize_grads=True)
        assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-14) for u, v in zip(da, db))


def test_softmax_cotangent_second_derivative_is_the_cross_entropy_hessian():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=D64, requires_grad=True)
    y, w = torch.tensor([0, 3, 1, 1, 2]), torch.randn(5, 4, generator=g, dtype=D64)
    r = softmax_cotangent(torch.softmax(logits, -1), y, 0.5)
    auto, = torch.autograd.grad(0.5 * F.cross_entropy(logits, y, reduction="sum"), logits,
                                create_graph=True)
    assert torch.allclose(r, auto, rtol=1e-13, atol=1e-15)
    h1, = torch.autograd.grad((r * w).sum(), logits)
    h2, = torch.autograd.grad((auto * w).sum(), logits)
    p = torch.softmax(logits.detach(), -1)
    exact = 0.5 * (p * w - p * (p * w).sum(-1, keepdim=True))  # H w, H = diag(p) - p p^T
    assert torch.allclose(h1, exact, rtol=1e-12) and torch.allclose(h2, exact, rtol=1e-12)


def test_sample_labels_follow_the_softmax():
    logits = torch.tensor([[0.0, math.log(3.0)]]).repeat(20000, 1)
    labels = sample_labels(logits, torch.Generator().manual_seed(0))
    assert abs(labels.double().mean().item() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 20000)


def test_sample_labels_from_shared_probabilities_are_the_same_draws():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 7, generator=g)
    a = sample_labels(logits, torch.Generator().manual_seed(1))
    b = sample_labels(logits, torch.Generator().manual_seed(1), probs=torch.softmax(logits, -1))
    c = sample_labels(logits, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 5)])
def test_cross_entropy_value_is_the_cross_entropy(shape):
    g = torch.Generator().manual_seed(7)
    out = torch.randn(*shape, generator=g, dtype=D64)
    y = torch.randint(0, shape[-1], shape[:-1], generator=g)
    L = cross_entropy_value(out, y, torch.softmax(out.reshape(-1, shape[-1]), -1))
    assert torch.allclose(L, mean_loss(out, y, "cross_entropy"), rtol=1e-13)


def test_cross_entropy_value_where_a_probability_underflows():
    out = torch.tensor([[0.0, 120.0], [1.0, 0.0]])  # p(y=0) = e^-120 in row 0
    y = torch.tensor([0, 0])
    probs = torch.softmax(out, -1)
    assert probs[0, 0] == 0.0  # float32 underflow: -log of it would be inf
    L = cross_entropy_value(out, y, probs)
    assert torch.isclose(L, F.cross_entropy(out, y)) and math.isfinite(L.item())


@pytest.mark.parametrize("C", [1, 2, 7, 16, 101, 500])
def test_sample_labels_are_the_inverse_cdf_of_the_probabilities(C):
    """The two-level draw is the plain inverse CDF of the same uniforms (float64 cumulative sum
    over all classes), label for label; zero-probability classes are never drawn."""
    g = torch.Generator().manual_seed(C)
    logits = torch.randn(3000, C, generator=g) * 3
    logits[:, ::3] = -1e4  # classes of probability 0 (after the softmax's underflow)
    logits[:, 0] = 0.0 if C == 1 else logits[:, 0]
    got = sample_labels(logits, torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, -1).double()
    cdf = probs.cumsum(-1)
    u = torch.rand((3000, 1), generator=torch.Generator().manual_seed(1), dtype=D64)
    want = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1).clamp_(max=C - 1)
    assert torch.equal(got, want)
    assert (probs.gather(1, got.unsqueeze(1)) > 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match="probs must have shape"):
        cross_entropy_value(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="logits"):
        sample_labels(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="probs"):
        sample_labels(torch.zeros(2, 3), probs=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="probs"):
        softmax_cotangent(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    net, x, y = mlp_case()
    with dropout_state(net, "off", record=True) as rec:
        out = net(x)
    with pytest.raises(ValueError, match="kind"):
        _sampled_regularizer(out, y, rec, kind="diagonal")
    with pytest.raises(ValueError, match="targets"):
        pseudo_loss_site_gradients(out, y[:3], rec.tensors(), loss="cross_entropy")
