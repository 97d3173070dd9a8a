"""``nn.LSTM`` with a hand-derived second derivative, for the double backprop of analytic dropout.

R_approx (Wei, Kakade, Ma 2020, eq. 4.3) with the sampled-label estimator and xi_approx (eq. 4.6)
differentiate a backward pass once more. Torch gives the second derivative of ``nn.LSTM`` on the
CPU only as autograd through an unrolled graph of the time steps (a fixed 3.7 ms per layer and
pass for the word LSTM of ``benchmarks/bench_analytic.py``). Inside
:func:`twice_differentiable_lstm` every supported ``nn.LSTM`` runs by two functions instead:

* :class:`LSTMLayer`: the forward by torch's own fused kernel (oneDNN on the CPU); its backward is
  :class:`LSTMLayerVJP` applied to the incoming cotangent, so that the backward is differentiable.
* :class:`LSTMLayerVJP`: the vector-Jacobian product (the adjoint recurrence
  ``dh_t = dH_t + U^T da_{t+1}``, ``dc_t = dh_t o_t (1 - tanh^2 c_t) + f_{t+1} dc_{t+1}``,
  ``da_t = [dc_t g_t i_t', dc_t c_{t-1} f_t', dc_t i_t g_t', dh_t tanh(c_t) o_t']``, then
  ``dx = da W`` and the weight gradients in three products over all steps), and as its backward
  the exact second-order adjoint: a tangent sweep forward in time with the same coefficients
  (``a'_t = eps_t + U h'_{t-1}``, ``c'_t = sum_gates D_t a'_t + f_t c'_{t-1}``,
  ``h'_t = tanh(c_t) o_t' a'_o + o_t (1 - tanh^2 c_t) c'_t``, where ``eps_t`` collects the
  cotangents of the VJP's outputs) and the second-derivative sources of the gates and cells
  formed for all steps at once. The sources are returned as the cotangent of the layer's *step
  record* (a third output of :class:`LSTMLayer` standing for ``a_t, c_t, c_{t-1}, h_{t-1}``), so
  the adjoint sweep that carries them into the inputs and weights is the layer's own backward:
  one sweep for the clean loss's cotangent and the sources of every VJP differentiated in the
  same backward pass (R_approx's and xi_approx's), instead of one sweep per VJP.

A backward pass taken only with respect to the dropout sites (``torch.autograd.grad(...,
sites)``) skips the weight-gradient products of the VJP (:func:`_wanted`).

The gate activations are recomputed once per forward pass from the recorded input and output
sequences (two matrix products and one multiply-add per step) and shared by every backward. The
second derivative is exact (tests: ``gradcheck`` and ``gradgradcheck`` in float64, and the step of
Algorithm 2 against ``nn.LSTM`` through autograd); a third derivative raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["RECORD_WIDTH", "LSTMLayer", "LSTMLayerVJP", "lstm_layer", "supports",
           "twice_differentiable_lstm"]


class _Gates:
    """Primal activations of one layer, time-major, recomputed without graph."""

    def __init__(self, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                 b_ih: Tensor | None, b_hh: Tensor | None, out: Tensor) -> None:
        T, B, _ = x.shape
        H = w_hh.shape[1]
        with torch.no_grad():
            h_prev = torch.cat([h0.unsqueeze(0), out[:-1]], 0)
            a = torch.matmul(x, w_ih.t())
            a.add_(torch.matmul(h_prev, w_hh.t()))
            if b_ih is not None:
                a.add_(b_ih + b_hh)
            a_i, a_f, a_g, a_o = a.split(H, -1)
            i, f, g, o = a_i.sigmoid(), a_f.sigmoid(), a_g.tanh(), a_o.sigmoid()
            ig = i * g
            c = torch.empty_like(ig)
            prev = c0
            for t in range(T):
                prev = torch.addcmul(ig[t], f[t], prev, out=c[t])
            c_prev = torch.cat([c0.unsqueeze(0), c[:-1]], 0)
            tc = c.tanh()
            self.i, self.f, self.g, self.o, self.c_prev, self.tc = i, f, g, o, c_prev, tc
            self.h_prev = h_prev
            self.i1, self.f1, self.o1 = i * (1 - i), f * (1 - f), o * (1 - o)  # sigma'
            self.g1, self.tc1 = 1 - g * g, 1 - tc * tc  # tanh'
            self.k = o * self.tc1  # d h_t / d c_t
            # d c_t / d (a_i, a_f, a_g) and d h_t / d a_o
            self.d_ifg = torch.stack([g * self.i1, c_prev * self.f1, i * self.g1], 2)
            self.d_o = tc * self.o1
        self.shape = (T, B, H)
        # per-step views, made once (indexing in the loops would make them on every call)
        self.f_t, self.k_t = f.unbind(0), self.k.unbind(0)
        self.d_ifg_t, self.d_o_t = self.d_ifg.unbind(0), self.d_o.unbind(0)
        self._second: tuple[Tensor, ...] | None = None

    def second(self) -> tuple[Tensor, ...]:
        """Coefficients of the second-derivative sources (computed once, shared by the
        backward passes of every VJP of this forward pass)::

            (i'' g, i' g', -2 i g g', f'' c_{t-1}, o'' tanh c, o' (1 - tanh^2 c),
             -2 o tanh c (1 - tanh^2 c))

        with ``s' = s (1 - s)``, ``s'' = s' (1 - 2 s)`` for the sigmoid gates.
        """
        if self._second is None:
            with torch.no_grad():
                i, f, g, o, tc = self.i, self.f, self.g, self.o, self.tc
                self._second = (self.i1 * (1 - 2 * i) * g, self.i1 * self.g1,
                                -2 * i * g * self.g1, self.f1 * (1 - 2 * f) * self.c_prev,
                                self.o1 * (1 - 2 * o) * tc, self.o1 * self.tc1,
                                -2 * o * tc * self.tc1)
        return self._second


#: Columns of a layer's step record ``(T, B, 7H)``: the gate pre-activations ``a_t`` (4H), the
#: cell ``c_t``, the previous cell ``c_{t-1}`` and the previous output ``h_{t-1}`` as step ``t``
#: reads them.
RECORD_WIDTH = 7


class LSTMLayerVJP(torch.autograd.Function):
    """``(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dH, dc_T, src, record) -> (dx, dh0, dc0, dw_ih, dw_hh,
    db)``: the vector-Jacobian product of one LSTM layer (time-major) for the cotangents ``dH`` of
    its outputs, ``dc_T`` of its last cell and ``src`` of its step record (:data:`RECORD_WIDTH`),
    with the exact second-order adjoint as its backward. Built by :class:`LSTMLayer`'s backward.

    The backward runs the tangent sweep and forms the second-derivative sources; it returns them
    as the cotangent of the layer's step record ``record`` (an output of :class:`LSTMLayer`), so
    that the adjoint sweep that carries them into the inputs and weights is the layer's own
    backward, run once for the first-order cotangents and the sources of every VJP together."""

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor | None, b_hh: Tensor | None, d_out: Tensor | None,
                d_cn: Tensor | None, src: Tensor | None, record: Tensor, gates: _Gates,
                want: tuple[bool, ...] = (True,) * 6):
        """The vector-Jacobian product of the layer; an output whose flag in ``want`` (``dx, dh0,
        dc0, dw_ih, dw_hh, db``) is false is ``None`` (not computed)."""
        T, B, H = gates.shape
        n_in = x.shape[-1]
        d_h = x.new_empty(T, B, H)
        d_c = x.new_empty(T, B, H)
        carry = d_cn if d_cn is not None else c0.new_zeros(c0.shape)
        if d_out is None:
            d_out = x.new_zeros(T, B, H)
        if src is not None:  # sources on a_t, c_t, c_{t-1} and h_{t-1}
            s_a, s_c, s_cp, s_hp = src.split([4 * H, H, H, H], -1)
            d_a = s_a.clone(memory_format=torch.contiguous_format)  # first-order terms added
            d_out = d_out.clone()
            d_out[:-1] += s_hp[1:]
            s_c_t, s_cp_t = s_c.unbind(0), s_cp.unbind(0)
        else:
            d_a = x.new_empty(T, B, 4 * H)
        # per-step views, made once: (B, 4H) rows, their (B, 3, H) and (B, H) gate blocks, the
        # cell adjoint as (B, H) and as (B, 1, H)
        d_out_t, d_a_t, d_h_t, d_c_t = d_out.unbind(0), d_a.unbind(0), d_h.unbind(0), d_c.unbind(0)
        d_a_ifg = d_a[..., :3 * H].view(T, B, 3, H).unbind(0)
        d_a_o = d_a[..., 3 * H:].unbind(0)
        d_c_b = d_c.unsqueeze(2).unbind(0)
        f, k, d_ifg, d_o = gates.f_t, gates.k_t, gates.d_ifg_t, gates.d_o_t
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dh = torch.addmm(d_out_t[t], d_a_t[t + 1], w_hh, out=d_h_t[t])
            else:
                dh = d_h_t[t].copy_(d_out_t[t])
            if src is None:
                torch.addcmul(carry, dh, k[t], out=d_c_t[t])
                carry = d_c_t[t] * f[t]
                torch.mul(d_ifg[t], d_c_b[t], out=d_a_ifg[t])
                torch.mul(d_o[t], dh, out=d_a_o[t])
            else:
                torch.add(carry, s_c_t[t], out=d_c_t[t]).addcmul_(dh, k[t])
                carry = torch.addcmul(s_cp_t[t], d_c_t[t], f[t])
                d_a_ifg[t].addcmul_(d_ifg[t], d_c_b[t])
                d_a_o[t].addcmul_(d_o[t], dh)
        d_a2 = d_a.view(T * B, 4 * H)
        dx = (d_a2 @ w_ih).view(T, B, n_in) if want[0] else None
        dh0 = None
        if want[1]:
            dh0 = d_a[0] @ w_hh
            if src is not None:
                dh0 += s_hp[0]
        dw_ih = d_a2.t() @ x.reshape(T * B, n_in) if want[3] else None
        dw_hh = d_a2.t() @ gates.h_prev.reshape(T * B, H) if want[4] else None
        db = d_a2.sum(0) if want[5] and b_ih is not None else None
        ctx.gates = gates
        ctx.has_bias = b_ih is not None
        ctx.save_for_backward(x, w_ih, w_hh, d_a, d_h, d_c)
        ctx.set_materialize_grads(False)
        return dx, dh0, carry, dw_ih, dw_hh, db

    @staticmethod
    @once_differentiable
    def backward(ctx, q_x, q_h0, q_c0, q_wih, q_whh, q_b):  # noqa: C901 - one formula
        """The second-order adjoint of the product with ``q``: the tangent sweep, the direct
        terms, and the second-derivative sources as the cotangent of the step record."""
        x, w_ih, w_hh, d_a, d_h, d_c = ctx.saved_tensors
        gs: _Gates = ctx.gates
        T, B, H = gs.shape
        n_in = x.shape[-1]
        # eps_t: the VJP's output cotangents as a tangent of the gate pre-activations
        eps = q_x @ w_ih.t() if q_x is not None else x.new_zeros(T, B, 4 * H)
        if q_wih is not None:
            eps += x @ q_wih.t()
        if q_whh is not None:
            eps += gs.h_prev @ q_whh.t()
        if q_b is not None:
            eps += q_b
        # tangent sweep, forward in time; tc_buf[t + 1] = c'_t, th_buf[t + 1] = h'_t
        ta = eps
        tc_buf = x.new_empty(T + 1, B, H)
        th_buf = x.new_empty(T + 1, B, H)
        tc_buf[0] = q_c0 if q_c0 is not None else 0.0
        th_buf[0] = q_h0 if q_h0 is not None else 0.0
        ta_t, tc_t, th_t = ta.unbind(0), tc_buf.unbind(0), th_buf.unbind(0)
        ta_ifg, ta_o = ta[..., :3 * H].view(T, B, 3, H).unbind(0), ta[..., 3 * H:].unbind(0)
        f_t, k_t, d_ifg_t, d_o_t = gs.f_t, gs.k_t, gs.d_ifg_t, gs.d_o_t
        w_hh_t = w_hh.t()
        for t in range(T):
            if t > 0 or q_h0 is not None:
                ta_t[t].addmm_(th_t[t], w_hh_t)
            c = torch.addcmul((d_ifg_t[t] * ta_ifg[t]).sum(1), f_t[t], tc_t[t], out=tc_t[t + 1])
            torch.addcmul(d_o_t[t] * ta_o[t], k_t[t], c, out=th_t[t + 1])
        tc, tc_before, th, th_before = tc_buf[1:], tc_buf[:-1], th_buf[1:], th_buf[:-1]
        need = ctx.needs_input_grad
        a_i, a_f, a_g, a_o = ta.split(H, -1)
        c_ii, c_ig, c_gg, c_ff, c_oo, c_oc, c_cc = gs.second()
        # second-derivative sources on a_t, c_t, c_{t-1}, h_{t-1}: the record's cotangent
        g_rec = None
        if need[10]:
            g_rec = x.new_empty(T, B, RECORD_WIDTH * H)
            s_i, s_f, s_g, s_o, s_c, s_cp, s_hp = g_rec.split(H, -1)
            torch.mul(c_ii, a_i, out=s_i).addcmul_(c_ig, a_g).mul_(d_c)
            torch.mul(c_ff, a_f, out=s_f).addcmul_(gs.f1, tc_before).mul_(d_c)
            torch.mul(c_ig, a_i, out=s_g).addcmul_(c_gg, a_g).mul_(d_c)
            torch.mul(c_oo, a_o, out=s_o).addcmul_(c_oc, tc).mul_(d_h)
            torch.mul(c_oc, a_o, out=s_c).addcmul_(c_cc, tc).mul_(d_h)
            torch.mul(d_c, gs.f1, out=s_cp).mul_(a_f)
            if q_whh is not None:
                torch.matmul(d_a, q_whh, out=s_hp)
            else:
                s_hp.zero_()
        dx = dwih = dwhh = None
        if need[0] and q_wih is not None:
            dx = d_a @ q_wih
        d_a2 = d_a.view(T * B, 4 * H)
        if need[3] and q_x is not None:
            dwih = d_a2.t() @ q_x.reshape(T * B, n_in)
        if need[4]:
            dwhh = d_a2.t() @ th_before.reshape(T * B, H)
        g_src = None
        if need[9]:  # the VJP is linear in the sources: their tangents
            g_src = torch.cat([ta, tc, tc_before, th_before], -1)
        return (dx, None, None, dwih, dwhh, None, None, th if need[7] else None,
                tc[-1].clone() if need[8] else None, g_src, g_rec, None, None)


class LSTMLayer(torch.autograd.Function):
    """One unidirectional LSTM layer, time-major: ``(x (T, B, I), h0 (B, H), c0 (B, H), w_ih,
    w_hh, b_ih, b_hh) -> (out (T, B, H), c_T (B, H), record)`` (gate order ``i, f, g, o`` of
    ``nn.LSTM``; the biases may be ``None``). ``record`` stands for the step quantities of
    :data:`RECORD_WIDTH` (a zero-strided placeholder: its values are never read); the backward of
    a VJP sends its second-derivative sources there. Use :func:`lstm_layer`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The layer's output sequence and last cell state, by the fused native kernel."""
        has_bias = b_ih is not None
        weights = [w_ih, w_hh] + ([b_ih, b_hh] if has_bias else [])
        out, _, c_n = torch._VF.lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)), weights, has_bias,
                                     1, 0.0, False, False, False)
        T, B, H = out.shape
        record = x.new_zeros(()).expand(T, B, RECORD_WIDTH * H)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, record)
        ctx.gates = None
        ctx.set_materialize_grads(False)
        return out, c_n.squeeze(0), record

    @staticmethod
    def backward(ctx, d_out: Tensor | None, d_cn: Tensor | None, d_rec: Tensor | None):
        """The VJP, itself differentiable once more (through :class:`LSTMLayerVJP`)."""
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, record = ctx.saved_tensors
        if d_out is None and d_cn is None and d_rec is None:
            return (None,) * 7
        if ctx.gates is None:  # once per forward pass, shared by every backward of it
            ctx.gates = _Gates(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out)
        want = _wanted(ctx) + (False, False)  # no next function for absent biases
        want = want[:5] + (want[5] or want[6],)
        dx, dh0, dc0, dw_ih, dw_hh, db = LSTMLayerVJP.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                                            d_out, d_cn, d_rec, record,
                                                            ctx.gates, want)
        if b_ih is None:
            return dx, dh0, dc0, dw_ih, dw_hh, None, None
        return dx, dh0, dc0, dw_ih, dw_hh, db, db


def _wanted(ctx) -> tuple[bool, ...]:
    """Per input of a backward node: whether the running backward pass uses its gradient (the
    engine executes the node it flows into). A ``torch.autograd.grad`` call with respect to the
    dropout sites needs no weight gradients, which are then not computed; outside a backward
    pass (a node applied by hand) every gradient is wanted."""
    flags = []
    for fn, _ in ctx.next_functions:
        if fn is None:
            flags.append(False)
            continue
        try:
            flags.append(bool(torch._C._will_engine_execute_node(fn)))
        except RuntimeError:  # not inside a backward pass of the engine
            flags.append(True)
    return tuple(flags)


def lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM layer (time-major ``x`` of shape ``(T, B, I)``) by :class:`LSTMLayer`: the output
    sequence ``(T, B, H)`` and the last cell state ``(B, H)``, as ``nn.LSTM`` computes them, with
    a backward that is cheap to differentiate again.

    Example:
        >>> lstm = nn.LSTM(3, 4).double()
        >>> x = torch.randn(5, 2, 3, dtype=torch.float64)
        >>> h0 = c0 = torch.zeros(2, 4, dtype=torch.float64)
        >>> out, c_n = lstm_layer(x, h0, c0, *lstm.parameters())
        >>> ref, (_, c_ref) = lstm(x)
        >>> bool(torch.allclose(out, ref)), bool(torch.allclose(c_n, c_ref[0]))
        (True, True)
    """
    if x.dim() != 3:
        raise ValueError(f"x must be time-major (T, B, I), got shape {tuple(x.shape)}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None")
    out, c_n, _ = LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return out, c_n


def supports(module: nn.Module) -> bool:
    """Whether :func:`twice_differentiable_lstm` replaces this module: an ``nn.LSTM``,
    unidirectional, without projections, with no dropout between its layers while training.

    Example:
        >>> supports(nn.LSTM(3, 4)), supports(nn.LSTM(3, 4, bidirectional=True))
        (True, False)
    """
    return (isinstance(module, nn.LSTM) and not module.bidirectional and module.proj_size == 0
            and (module.num_layers == 1 or module.dropout == 0 or not module.training))


def _forward(module: nn.LSTM, original):
    def forward(input, hx=None):
        if not isinstance(input, Tensor) or input.dim() != 3:
            return original(input, hx)  # packed or unbatched sequences: torch's own path
        x = input.transpose(0, 1) if module.batch_first else input
        B, L, H = x.shape[1], module.num_layers, module.hidden_size
        if hx is None:
            zeros = x.new_zeros(L, B, H)
            hx = (zeros, zeros)
        h_n, c_n = [], []
        for layer in range(L):
            w = [getattr(module, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh")]
            b = ([getattr(module, f"{kind}_l{layer}") for kind in ("bias_ih", "bias_hh")]
                 if module.bias else [None, None])
            x, c, _ = LSTMLayer.apply(x.contiguous(), hx[0][layer], hx[1][layer], *w, *b)
            h_n.append(x[-1])
            c_n.append(c)
        out = x.transpose(0, 1) if module.batch_first else x
        return out, (torch.stack(h_n), torch.stack(c_n))
    return forward


@contextlib.contextmanager
def twice_differentiable_lstm(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Run every supported ``nn.LSTM`` of ``model`` (:func:`supports`) by :class:`LSTMLayer`
    inside the block; yields the replaced modules.

    Example:
        >>> net = nn.LSTM(3, 4, batch_first=True).double()
        >>> x = torch.randn(2, 5, 3, dtype=torch.float64)
        >>> with twice_differentiable_lstm(net) as replaced:
        ...     out = net(x)[0]
        >>> len(replaced), bool(torch.allclose(out, net(x)[0]))
        (1, True)
    """
    replaced = [m for m in model.modules() if supports(m)]
    own = [m.__dict__.get("forward") for m in replaced]  # an instance forward set by others
    for m in replaced:
        m.forward = _forward(m, m.forward)
    try:
        yield replaced
    finally:
        for m, prev in zip(replaced, own):
            if prev is None:
                del m.forward
            else:
                m.forward = prev
