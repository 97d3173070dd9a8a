"""``analytic.recurrent``: nn.LSTM with a hand-derived second derivative (issue 16), against
autograd through torch's own LSTM, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from dropreg.analytic.recurrent import LSTMLayer, lstm_layer, supports, twice_differentiable_lstm

D64 = torch.float64


def layer_inputs(T=4, B=3, n_in=2, H=5, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=D64).requires_grad_(True)

    args = [r(T, B, n_in), r(B, H), r(B, H), r(4 * H, n_in), r(4 * H, H)]
    return args + ([r(4 * H), r(4 * H)] if bias else [None, None])


@pytest.mark.parametrize("bias", [True, False])
def test_gradient_and_second_derivative_are_exact(bias):
    args = layer_inputs(bias=bias)
    inputs = tuple(a for a in args if a is not None)

    def f(x, h0, c0, w_ih, w_hh, *b):
        return LSTMLayer.apply(x, h0, c0, w_ih, w_hh, *(b if b else (None, None)))[:2]

    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)  # every output of the VJP gets a cotangent


def test_second_derivative_of_the_output_alone():
    inputs = tuple(layer_inputs(T=6, B=2, n_in=3, H=4, seed=1))
    assert gradgradcheck(lambda *a: LSTMLayer.apply(*a)[0], inputs)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_nn_lstm_value_gradient_and_double_gradient(batch_first, layers):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=layers, batch_first=batch_first).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 3, generator=g, dtype=D64, requires_grad=True)
    if not batch_first:
        x = x.detach().transpose(0, 1).contiguous().requires_grad_(True)
    hx = (torch.randn(layers, 2, 4, generator=g, dtype=D64, requires_grad=True),
          torch.randn(layers, 2, 4, generator=g, dtype=D64, requires_grad=True))
    u = torch.randn(x.shape[:-1] + (4,), generator=g, dtype=D64)
    w = torch.randn(x.shape, generator=g, dtype=D64)
    params = [x, *hx, *lstm.parameters()]

    def run(replace):
        ctx = twice_differentiable_lstm(lstm) if replace else torch.backends.mkldnn.flags(False)
        with ctx:
            out, (h_n, c_n) = lstm(x, hx)
        first = (out * u).sum() + h_n.sum() + (c_n ** 2).sum()
        gx, gh0 = torch.autograd.grad(first, (x, hx[0]), create_graph=True)
        second = torch.autograd.grad((gx * w).sum() + (gh0 ** 2).sum(), params)
        return [out, h_n, c_n, gx, gh0, *second]

    for a, b in zip(run(True), run(False)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert not torch.equal(run(True)[5], torch.zeros_like(x))  # a second derivative that is there


def test_third_derivative_raises():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = layer_inputs()
    out, _, _ = LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    gx, = torch.autograd.grad(out.sum(), x, create_graph=True)
    gw, = torch.autograd.grad((gx ** 2).sum(), w_ih, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gw.sum().backward()


def test_replacement_scope_and_fallbacks():
    plain, bi = nn.LSTM(3, 4), nn.LSTM(3, 4, bidirectional=True)
    proj, drop = nn.LSTM(3, 4, proj_size=2), nn.LSTM(3, 4, num_layers=2, dropout=0.3)
    assert supports(plain) and not supports(bi) and not supports(proj) and not supports(drop)
    assert supports(drop.eval()) and not supports(nn.GRU(3, 4))
    net = nn.Sequential(plain)
    with twice_differentiable_lstm(net) as replaced:
        assert replaced == [plain]
        out, _ = plain(torch.randn(5, 2, 3))
        assert type(out.grad_fn).__name__ != "MkldnnRnnLayerBackward0"
        unbatched, _ = plain(torch.randn(5, 3))  # torch's own path
        assert unbatched.shape == (5, 4)
    assert "forward" not in plain.__dict__


def test_lstm_layer_checks_its_input():
    x, h0, c0, w_ih, w_hh, b_ih, _ = layer_inputs()
    with pytest.raises(ValueError, match="time-major"):
        lstm_layer(x[0], h0, c0, w_ih, w_hh)
    with pytest.raises(ValueError, match="both"):
        lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, None)


def test_second_order_rnns_switches_only_what_it_must():
    from dropreg.analytic.updates import second_order_rnns

    was = torch._C._get_mkldnn_enabled()
    lstm_net = nn.Sequential(nn.LSTM(3, 4))
    with second_order_rnns(lstm_net):  # the LSTM by LSTMLayer: oneDNN stays on for its forward
        assert torch._C._get_mkldnn_enabled() == was
        out, _ = lstm_net[0](torch.randn(5, 2, 3))
        assert type(out.grad_fn).__name__ == "LSTMLayerBackward"
    gru_net = nn.ModuleList([nn.LSTM(3, 4), nn.GRU(4, 4)])
    with second_order_rnns(gru_net):  # a GRU has no LSTMLayer: native kernels for it
        assert not torch._C._get_mkldnn_enabled()
        assert "forward" in gru_net[0].__dict__
    assert torch._C._get_mkldnn_enabled() == was and "forward" not in gru_net[0].__dict__


def test_weight_dropped_lstm_keeps_its_masks():
    from dropreg.nn import WeightDrop

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    wd = WeightDrop(nn.LSTM(3, 4).double(), "weight_hh_l0", p=0.5, generator=g)
    x = torch.randn(5, 2, 3, dtype=D64)
    g.manual_seed(1)
    want = wd(x)[0]
    g.manual_seed(1)
    with twice_differentiable_lstm(wd) as replaced:
        got = wd(x)[0]
    g.manual_seed(2)
    other = wd(x)[0]
    assert len(replaced) == 1 and type(got.grad_fn).__name__ == "LSTMLayerBackward"
    assert torch.allclose(got, want, rtol=1e-12) and not torch.allclose(other, want)


@pytest.mark.parametrize("T,B", [(1, 2), (3, 1)])
def test_one_step_and_one_sequence(T, B):
    assert gradgradcheck(lambda *a: LSTMLayer.apply(*a)[:2], tuple(layer_inputs(T=T, B=B, H=3)))


def _unrolled_record(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Reference LSTM by autograd, step by step: outputs and the step record (a_t, c_t, c_{t-1},
    h_{t-1}) that :class:`LSTMLayer`'s third output stands for."""
    H = h0.shape[-1]
    h, c, outs, recs = h0, c0, [], []
    for t in range(x.shape[0]):
        a = x[t] @ w_ih.t() + h @ w_hh.t() + b_ih + b_hh
        i, f, g, o = a[:, :H].sigmoid(), a[:, H:2 * H].sigmoid(), a[:, 2 * H:3 * H].tanh(), \
            a[:, 3 * H:].sigmoid()
        c_new = f * c + i * g
        recs.append(torch.cat([a, c_new, c, h], -1))
        h, c = o * c_new.tanh(), c_new
        outs.append(h)
    return torch.stack(outs), c, torch.stack(recs)


def test_record_cotangent_is_the_step_quantities_cotangent():
    """A cotangent sent to the record (what a VJP's backward sends there) is carried into the
    inputs and weights as the cotangent of the step quantities a_t, c_t, c_{t-1}, h_{t-1}."""
    args = layer_inputs(T=4, B=3, n_in=2, H=5, seed=3)
    g = torch.Generator().manual_seed(4)
    d_out = torch.randn(4, 3, 5, generator=g, dtype=D64)
    d_cn = torch.randn(3, 5, generator=g, dtype=D64)
    src = torch.randn(4, 3, 35, generator=g, dtype=D64)
    out, c_n, rec = LSTMLayer.apply(*args)
    got = torch.autograd.grad([out, c_n, rec], args, [d_out, d_cn, src], retain_graph=True)
    ref_out, ref_c, ref_rec = _unrolled_record(*args)
    assert torch.allclose(out, ref_out, atol=1e-12)
    want = torch.autograd.grad([ref_out, ref_c, ref_rec], args, [d_out, d_cn, src])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # and the source-free part alone differs (the test sees the sources)
    plain = torch.autograd.grad([out, c_n], args, [d_out, d_cn])
    assert not torch.allclose(plain[3], got[3])


def test_vjp_is_linear_in_its_cotangents():
    """The VJP's derivative with respect to its cotangents (the tangents it returns for them)."""
    from dropreg.analytic.recurrent import LSTMLayerVJP, _Gates

    x, h0, c0, w_ih, w_hh, b_ih, b_hh = [a.detach() for a in layer_inputs(T=3, B=2, H=4)]
    out = LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0]
    gates = _Gates(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out)
    g = torch.Generator().manual_seed(5)
    d_out = torch.randn(3, 2, 4, generator=g, dtype=D64, requires_grad=True)
    d_cn = torch.randn(2, 4, generator=g, dtype=D64, requires_grad=True)
    src = torch.randn(3, 2, 28, generator=g, dtype=D64, requires_grad=True)
    record = torch.zeros(3, 2, 28, dtype=D64)

    def f(d_out, d_cn, src):
        return LSTMLayerVJP.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, d_out, d_cn, src, record,
                                  gates)

    assert gradcheck(f, (d_out, d_cn, src))
