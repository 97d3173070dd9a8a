"""The linear-readout pull-back of the analytic step (``dropreg.analytic.readout``): the same
site gradients and second derivatives as autograd through the readout, used exactly when the
outputs are a plain ``nn.Linear``'s, and the whole step unchanged without it. Float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropreg.analytic import MLP, WordLSTM, rules
from dropreg.analytic.readout import LinearReadout, readout_of, record_readout
from tests.analytic.test_analytic_shared_softmax import (
    lstm_case,
    mlp_case,
    reference,
    step_gradient,
)

D64 = torch.float64


@pytest.mark.parametrize("case", [mlp_case, lstm_case], ids=["mlp", "lstm"])
def test_the_readout_of_the_models_is_their_last_linear(case):
    net, x, _ = case()
    with record_readout(net) as calls:
        out = net(x)
    r = readout_of(calls, out)
    last = net.decoder if hasattr(net, "decoder") else net[-1]
    assert r is not None and r.weight is last.weight
    assert r.inputs.shape[:-1] == out.shape[:-1]


def test_pullback_and_its_derivative_match_autograd():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 7).double()
    u = torch.randn(2, 3, 5, generator=g, dtype=D64, requires_grad=True)
    F = lin(u)
    p = torch.softmax(F.reshape(-1, 7), -1)
    y = torch.randint(0, 7, (6,), generator=g)
    r = (p - nn.functional.one_hot(y, 7)).reshape(F.shape) * 0.3
    want, = torch.autograd.grad(F, u, r, create_graph=True)
    got = LinearReadout(u, lin.weight).pullback(p, y, 0.3)
    assert torch.allclose(got, want, rtol=1e-12)
    w = torch.randn(want.shape, generator=g, dtype=D64)
    params = [u, lin.weight, lin.bias]
    a = torch.autograd.grad((want * w).sum(), params, retain_graph=True, allow_unused=True,
                            materialize_grads=True)
    b = torch.autograd.grad((got * w).sum(), params, allow_unused=True, materialize_grads=True)
    assert all(torch.allclose(s, t, rtol=1e-12, atol=1e-14) for s, t in zip(a, b))
    assert a[0].abs().max() > 1e-3  # through the softmax: a derivative that could differ


def test_one_product_serves_every_residual():
    lin = nn.Linear(4, 3).double()
    u = torch.randn(5, 4, dtype=D64, requires_grad=True)
    p = torch.softmax(lin(u), -1)
    ro = LinearReadout(u, lin.weight)
    ro.pullback(p, torch.tensor([0, 1, 2, 0, 1]))
    first = ro._pw
    ro.pullback(p, torch.tensor([2, 2, 2, 0, 0]), 0.5)
    assert ro._pw is first
    ro.pullback(p.detach().clone(), torch.tensor([0, 0, 0, 0, 0]))
    assert ro._pw is not first  # other probabilities: a new product


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.net(x)


class _MyLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1.0


def test_what_is_not_a_readout():
    lin = nn.Linear(3, 2)
    with record_readout(lin) as calls:
        out = lin(torch.randn(4, 3))
    assert readout_of(calls, out.reshape(4, 2, 1)) is None  # an op after the linear
    sub = _MyLinear(3, 2)
    with record_readout(sub) as calls:
        out = sub(torch.randn(4, 3))
    assert calls == [] and readout_of(calls, out) is None  # a subclass may change the map
    hooked = nn.Linear(3, 2)
    hooked.register_forward_hook(lambda m, a, o: o * 3)
    with record_readout(hooked) as calls:
        out = hooked(torch.randn(4, 3))
    assert calls == [] and readout_of(calls, out) is None  # a hook may change the output
    assert len(hooked._forward_hooks) == 1  # only its own hook is left


@pytest.mark.parametrize("rule", [rules.explicit(), rules.explicit_implicit()],
                         ids=["R", "R+xi"])
def test_step_without_a_readout_matches_the_reference(rule):
    """The outputs scaled after the readout: no readout, the generic pull-back, same numbers
    as autograd."""
    net, x, y = mlp_case()
    model = _Scaled(net)
    with record_readout(model) as calls:
        out = model(x)
    assert readout_of(calls, out) is None
    want = reference(model, x, y, rule, seed=5)[2]
    got = step_gradient(model, x, y, rule, seed=5)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)


def wide_mlp_case():
    """A head wider than its input (9 classes from 6 units): the readout pays."""
    torch.manual_seed(0)
    net = MLP(4, 6, 9, p=0.3, depth=2).double()
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(8, 4, generator=g, dtype=D64), torch.randint(0, 9, (8,), generator=g)


def tied_lstm_case():
    """The decoder's weight is the embedding's (gathered rows and the product share it)."""
    torch.manual_seed(0)
    net = WordLSTM(13, emb=4, hidden=5, layers=2, p=0.3, tie=True).double()
    g = torch.Generator().manual_seed(2)
    return net, torch.randint(0, 13, (3, 6), generator=g), torch.randint(0, 13, (3, 6),
                                                                         generator=g)


def _count_pullbacks(monkeypatch) -> list:
    calls = []
    original = LinearReadout.pullback

    def counted(self, probs, labels, scale=1.0):
        calls.append(scale)
        return original(self, probs, labels, scale)

    monkeypatch.setattr(LinearReadout, "pullback", counted)
    return calls


@pytest.mark.parametrize("case", [wide_mlp_case, lstm_case, tied_lstm_case],
                         ids=["wide-mlp", "lstm", "tied-lstm"])
@pytest.mark.parametrize("rule", [rules.explicit(), rules.explicit_implicit()],
                         ids=["R", "R+xi"])
def test_the_step_through_the_readout_matches_the_reference(case, rule, monkeypatch):
    calls = _count_pullbacks(monkeypatch)
    net, x, y = case()
    want = reference(net, x, y, rule, seed=5)[2]
    got = step_gradient(net, x, y, rule, seed=5)
    assert want.abs().max() > 1e-4
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)
    # R_approx's residual unscaled, then xi_approx's scaled by 1/N
    assert calls == ([1.0] if rule.implicit is False else [1.0, calls[-1]])
    assert rule.implicit is False or calls[-1] < 1.0


def test_a_narrow_head_takes_the_generic_pull_back(monkeypatch):
    calls = _count_pullbacks(monkeypatch)
    net, x, y = mlp_case()  # 3 classes from 6 units
    step_gradient(net, x, y, rules.explicit_implicit(), seed=1)
    assert calls == []


def test_pullback_refuses_shapes_that_do_not_fit():
    ro = LinearReadout(torch.zeros(4, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="probs"):
        ro.pullback(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        ro.pullback(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))


class _TinyTransformerLM(nn.Module):
    """Embedding, one encoder layer (its dropout modules are the sites), a wide decoder."""

    def __init__(self, vocab: int = 17, d: int = 8) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        self.layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=12, dropout=0.3,
                                                batch_first=True)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer(self.embedding(tokens)))


@pytest.mark.parametrize("rule", [rules.explicit(), rules.explicit_implicit()],
                         ids=["R", "R+xi"])
def test_the_step_through_a_transformer_readout_matches_the_reference(rule, monkeypatch):
    calls = _count_pullbacks(monkeypatch)
    torch.manual_seed(0)
    net = _TinyTransformerLM().double()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randint(0, 17, (3, 5), generator=g), torch.randint(0, 17, (3, 5), generator=g)
    want = reference(net, x, y, rule, seed=5)[2]
    got = step_gradient(net, x, y, rule, seed=5)
    assert want.abs().max() > 1e-4 and calls  # the readout was used
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)
