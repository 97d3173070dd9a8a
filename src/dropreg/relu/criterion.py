"""Exact and Monte-Carlo dropout criterion of ReLU networks (Helmbold & Long 2017).

Setting of the paper (``docs/papers/helmbold2017.md``, "Setting"): every non-output node, **inputs
included**, is dropped independently with probability ``p`` (the DROP probability, as
``torch.nn.Dropout``; the paper's keep probability is ``1 - p`` and its drop probability ``q = p``);
kept nodes are scaled by ``1 / (1 - p)``. For a distribution of examples with probabilities
``pi_i``:

    J_D(W) = sum_i pi_i E_R (D(W, x_i, R) - y_i)^2        (square loss without 1/2)
    R(W)   = sum_i pi_i (W(x_i) - y_i)^2
    penalty = J_D - R,      J_2(W) = R(W) + (lam / 2) ||weights||^2 (biases not penalised)

How the exact value is computed (all float64, all differentiable with autograd):

* **The last hidden layer is folded in closed form.** The output is linear in its mask ``r``, so
  ``E_r (w.(r * a) / (1-p) + b - y)^2 = (w.a + b - y)^2 + lam sum_j w_j^2 a_j^2`` with
  ``lam = p / (1 - p)``. Only the inputs and the hidden layers before the last are
  enumerated: ``2^(K + n_1 + ... + n_{d-2})`` patterns instead of ``2^(K + n_1 + ... + n_{d-1})``.
* **Patterns are enumerated as a tree, layer by layer.** The activations of layer ``j`` under every
  pattern of the layers before it are one tensor ``(N, S, w_j)``; all ``2^{w_j}`` masks of layer
  ``j`` are applied at once by one matrix product with the stacked masked weights
  ``[diag(m) W^T / (1-p)]_m`` of shape ``(w_j, M w_{j+1})``. Each prefix is computed once and
  shared by all its continuations.
* **Input dropout is folded into the data.** A dropped input and a zero input look the same to
  the network, so when inputs have zeros, example ``i`` is expanded into its ``2^{s_i}`` distinct
  masked inputs (``s_i`` its non-zero coordinates) with their probabilities, instead of ``2^K``,
  and the enumeration continues from the first hidden layer (a large saving on sparse or binary
  inputs; dense inputs take the plain tree).
* **Memory is bounded.** States and masks are processed in chunks of at most ``chunk_size`` numbers
  per intermediate tensor (depth-first), so memory is ``O(depth * chunk_size)`` whatever the number
  of patterns.

The Monte-Carlo estimate samples the enumerated nodes (independently per example and sample) and
keeps the closed-form fold of the last hidden layer (a Rao-Blackwellised, unbiased estimate); its
standard error is the sample standard deviation over samples divided by ``sqrt(samples)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dropreg._checks import check_int, check_probability
from dropreg._random import bernoulli_keep, mean_and_stderr
from dropreg.relu.network import dropout_layer_widths, linear_layers

__all__ = [
    "CriterionResult",
    "DEFAULT_MAX_NODES",
    "dropout_criterion",
    "dropout_penalty",
    "risk",
    "weight_decay_criterion",
    "expected_dropout_output",
    "dropout_output",
    "all_patterns",
    "enumerated_nodes",
]

DEFAULT_MAX_NODES = 30
"""Default limit on the enumerated nodes (inputs and hidden units not in the last hidden layer)."""

DEFAULT_CHUNK_SIZE = 1 << 18
"""Default cap on the numbers held by one intermediate tensor (2 MiB in float64)."""


@dataclass(frozen=True)
class CriterionResult:
    """Value of a dropout criterion or penalty.

    Attributes:
        value: the value, a 0-dim tensor (differentiable with respect to the net's parameters).
        stderr: its standard error (0.0 for ``method="exact"``).
        method: ``"exact"`` or ``"monte_carlo"``.
        n_patterns: dropout patterns averaged over, ``2 ** (dropped nodes)`` for the exact value
            (the fold of the last hidden layer counts its patterns), the number of samples for
            Monte Carlo.

    Example:
        >>> from dropreg.relu import figure1_example
        >>> net, X, Y = figure1_example()
        >>> exact = dropout_criterion(net, X, Y, p=0.5)
        >>> float(exact), exact.stderr, exact.method, exact.n_patterns
        (54.0, 0.0, 'exact', 16)
        >>> mc = dropout_criterion(net, X, Y, p=0.5, method="monte_carlo", samples=4000,
        ...                        generator=torch.Generator().manual_seed(0))
        >>> mc.n_patterns, abs(float(mc) - 54.0) < 4 * mc.stderr
        (4000, True)
    """

    value: Tensor
    stderr: float
    method: str
    n_patterns: int

    def __float__(self) -> float:
        return float(self.value.detach())


# ---------------------------------------------------------------------------------------------
# validation


def _check_p(p: float) -> float:
    return check_probability("p (the drop probability)", p, allow_one=False)


def _params(net: nn.Module, dtype: torch.dtype | None) -> list[tuple[Tensor, Tensor]]:
    out = []
    for lin in linear_layers(net):
        W = lin.weight if dtype is None else lin.weight.to(dtype)
        if lin.bias is None:
            b = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
        else:
            b = lin.bias if dtype is None else lin.bias.to(dtype)
        out.append((W, b))
    return out


def _data(
    layers: list[tuple[Tensor, Tensor]],
    X: Tensor,
    Y: Tensor | None,
    weights: Tensor | None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    dt = layers[0][0].dtype
    if not isinstance(X, Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    K = layers[0][0].shape[1]
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if X.ndim != 2 or X.shape[1] != K:
        raise ValueError(f"X must have shape (N, {K}), got {tuple(X.shape)}")
    X = X.to(dt)
    N = X.shape[0]
    out = layers[-1][0].shape[0]
    if Y is not None:
        if not isinstance(Y, Tensor):
            Y = torch.as_tensor(Y)
        Y = Y.to(dt)
        if Y.ndim <= 1 and out == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != (N, out):
            raise ValueError(f"Y must have shape ({N}, {out}) (or ({N},) for one output), "
                             f"got {tuple(Y.shape)}")
    if weights is None:
        pi = torch.full((N,), 1.0 / N, dtype=dt)
    else:
        pi = torch.as_tensor(weights).to(dt).reshape(-1)
        if pi.shape[0] != N:
            raise ValueError(f"weights must have {N} entries (one per example), got {pi.shape[0]}")
        if bool((pi < 0).any()) or abs(float(pi.sum()) - 1.0) > 1e-9:
            raise ValueError(
                "weights must be probabilities of the examples (non-negative, summing to 1), "
                f"got sum {float(pi.sum())} and min {float(pi.min())}"
            )
    return X, Y, pi


def all_patterns(num_nodes: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Every 0/1 pattern over ``num_nodes`` nodes, shape ``(2**num_nodes, num_nodes)``.

    The dropout patterns ``R`` of the paper (1 = kept), in binary counting order.

    Row ``i`` is the binary expansion of ``i``, first node as the least significant bit.

    Example:
        >>> all_patterns(2)
        tensor([[0., 0.],
                [1., 0.],
                [0., 1.],
                [1., 1.]], dtype=torch.float64)
    """
    num_nodes = check_int("num_nodes", num_nodes, minimum=0)
    if num_nodes > 40:
        raise ValueError(f"num_nodes must be <= 40 for all_patterns, got {num_nodes}")
    idx = torch.arange(1 << num_nodes, dtype=torch.int64)
    bits = (idx[:, None] >> torch.arange(num_nodes, dtype=torch.int64)) & 1
    return bits.to(dtype)


def _pattern_probs(masks: Tensor, keep: float) -> Tensor:
    k = masks.sum(1)
    w = masks.shape[1]
    return keep**k * (1.0 - keep) ** (w - k)


def enumerated_nodes(net: nn.Module) -> int:
    """Nodes that exact enumeration visits: inputs and every hidden layer but the last.

    The last hidden layer is folded in closed form (module docstring), so it does not count.

    Example:
        >>> from dropreg.relu import StandardNet
        >>> enumerated_nodes(StandardNet(K=4, d=3, n=8))   # 4 inputs + 8 units of hidden layer 1
        12
    """
    return sum(dropout_layer_widths(net)[:-1])


# ---------------------------------------------------------------------------------------------
# forward passes


def dropout_output(net: nn.Module, X: Tensor, patterns: Tensor, p: float,
                   dtype: torch.dtype | None = torch.float64) -> Tensor:
    """The network output ``D(W, x, R)`` under given dropout patterns.

    Args:
        net: ``nn.Sequential`` of ``Linear`` and ``ReLU`` (e.g. :class:`StandardNet`).
        X: inputs, shape ``(N, K)``.
        patterns: 0/1 patterns over all dropped nodes (inputs first, then hidden layers), shape
            ``(P, num_dropout_nodes(net))``.
        p: drop probability in ``[0, 1)``; kept nodes are scaled by ``1 / (1 - p)``.
        dtype: computation dtype (``None``: the net's).

    Returns:
        Outputs of shape ``(P, N, out)``.

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])
        >>> R = torch.tensor([[1.0, 0.0, 1.0, 1.0]])      # drop x_2, keep x_1 and both units
        >>> dropout_output(net, torch.tensor([[1.0, -1.0]]), R, p=0.5)
        tensor([[[8.]]], dtype=torch.float64, grad_fn=<AddBackward0>)
    """
    p = _check_p(p)
    keep = 1.0 - p
    layers = _params(net, dtype)
    X, _, _ = _data(layers, X, None, None)
    widths = [layers[0][0].shape[1]] + [W.shape[0] for W, _ in layers[:-1]]
    patterns = torch.as_tensor(patterns).to(X.dtype)
    if patterns.ndim == 1:
        patterns = patterns.reshape(1, -1)
    if patterns.ndim != 2 or patterns.shape[1] != sum(widths):
        raise ValueError(
            f"patterns must have shape (P, {sum(widths)}) (one column per dropped node), "
            f"got {tuple(patterns.shape)}"
        )
    masks = torch.split(patterns, widths, dim=1)
    h = X[None] * masks[0][:, None, :] / keep
    for j, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if j < len(layers) - 1:
            h = torch.relu(h) * masks[j + 1][:, None, :] / keep
    return h


def _forward(layers: list[tuple[Tensor, Tensor]], X: Tensor) -> Tensor:
    h = X
    for j, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if j < len(layers) - 1:
            h = torch.relu(h)
    return h


# ---------------------------------------------------------------------------------------------
# exact enumeration engine


class _Accumulator:
    def __init__(self) -> None:
        self.loss: Tensor | float = 0.0  # (N,) expected loss per example
        self.mean: Tensor | float = 0.0  # (N, out) expected output per example

    def add(self, loss: Tensor, mean: Tensor) -> None:
        self.loss = self.loss + loss
        self.mean = self.mean + mean


def _exact_engine(
    layers: list[tuple[Tensor, Tensor]],
    X: Tensor,
    Y: Tensor | None,
    p: float,
    chunk_size: int,
    fold_last: bool = True,
    input_dropout: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-example ``E_R (D - y)^2`` (or ``E_R |D|^2`` if Y is None) and ``E_R D``.

    With ``input_dropout=False`` the rows of ``X`` are already masked and scaled inputs (see
    :func:`_folded_inputs`) and only the hidden layers are dropped.
    """
    keep = 1.0 - p
    lam = p / keep
    L = len(layers)
    N = X.shape[0]
    dt = X.dtype
    widths = [X.shape[1]] + [W.shape[0] for W, _ in layers[:-1]]
    acc = _Accumulator()
    Yb = None if Y is None else Y[:, None, :]
    stacked: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
    # without autograd, intermediate buffers are reused in place (fewer passes over memory)
    inplace = not (torch.is_grad_enabled() and any(
        t.requires_grad for pair in layers for t in pair))

    W_out, b_out = layers[-1]
    W_out_sq_lam = lam * (W_out * W_out).T

    def finish_fold(a: Tensor, w: Tensor, owned: bool) -> None:
        # a: (N, S, w_last) activations of the last dropped layer; fold its mask in closed form:
        # E_r (w.(r a)/keep + b - y)^2 = (w.a + b - y)^2 + lam sum_j w_j^2 a_j^2.
        mean = a @ W_out.T + b_out  # (N, S, out)
        if inplace and owned:  # a is a scratch buffer of the engine (never the caller's X)
            var = a.square_() @ W_out_sq_lam
        else:
            var = (a * a) @ W_out_sq_lam  # (N, S, out)
        err = mean if Yb is None else mean - Yb
        loss = (err * err + var).sum(-1)  # (N, S)
        acc.add(loss @ w, torch.einsum("nso,s->no", mean, w))

    def finish_out(out: Tensor, w: Tensor) -> None:
        err = out if Yb is None else out - Yb
        acc.add((err * err).sum(-1) @ w, torch.einsum("nso,s->no", out, w))

    def masked_weights(j: int, m0: int, m1: int) -> tuple[Tensor, Tensor]:
        key = (j, m0, m1)
        if key not in stacked:
            W, b = layers[j]
            scale = keep
            if j == 0 and not input_dropout:  # the rows of X are masked inputs already
                masks, probs = torch.ones(1, widths[0], dtype=dt), torch.ones(1, dtype=dt)
                scale = 1.0
            else:
                idx = torch.arange(m0, m1, dtype=torch.int64)
                masks = ((idx[:, None] >> torch.arange(widths[j])) & 1).to(dt)  # (M, w_j)
                probs = _pattern_probs(masks, keep)
            # Wm[i, m, k] = masks[m, i] W[k, i] / keep, plus the bias as an extra row i = w_j
            # (the states get a column of ones), so that the GEMM writes its output once
            wj, k = widths[j], W.shape[0]
            if inplace:
                Wm = torch.empty(wj + 1, m1 - m0, k, dtype=dt)
                torch.mul(masks.T[:, :, None], (W.T / scale)[:, None, :], out=Wm[:wj])
                Wm[wj] = b
                Wm = Wm.reshape(wj + 1, -1)
            else:
                Wm = (masks.T[:, :, None] * W.T[:, None, :] / scale).reshape(wj, -1)
                Wm = torch.cat([Wm, b.repeat(m1 - m0)[None, :]], 0)
            # the cache of stacked weights holds at most 8 chunks' worth of numbers
            if sum(v[0].numel() for v in stacked.values()) + Wm.numel() > 8 * chunk_size:
                stacked.clear()
            stacked[key] = (Wm, probs)
        return stacked[key]

    def expand(a: Tensor, w: Tensor, j: int) -> None:
        # a: (N, S, w_j) activations (before the mask) of dropped layer j; w: (S,) probabilities
        if fold_last and j == L - 1:
            finish_fold(a, w, owned=j > 0)
            return
        S = a.shape[1]
        W, b = layers[j]
        k = W.shape[0]
        M = 1 if (j == 0 and not input_dropout) else 1 << widths[j]
        # Chunks keep under chunk_size both the stacked weights, (w_j + 1) k numbers per mask, and
        # the GEMM output / activations, N max(k, w_j) numbers per (state, mask); chunks of masks
        # are balanced in size.
        m_max = max(1, chunk_size // ((widths[j] + 1) * k))
        n_mchunks = -(-M // m_max)
        m_step = -(-M // n_mchunks)
        s_step = max(1, chunk_size // (N * m_step * max(k, widths[j])))
        if s_step == 1 and N * m_step * max(k, widths[j]) > chunk_size:
            m_step = max(1, chunk_size // (N * max(k, widths[j])))
        for s0 in range(0, S, s_step):
            s1 = min(S, s0 + s_step)
            a_s, w_s = a[:, s0:s1], w[s0:s1]
            s = s1 - s0
            a_aug = torch.cat([a_s.reshape(N * s, -1), torch.ones(N * s, 1, dtype=dt)], 1)
            for m0 in range(0, M, m_step):
                m1 = min(M, m0 + m_step)
                Wm, probs = masked_weights(j, m0, m1)
                mc = m1 - m0
                # one GEMM applies every mask of this chunk to every state:
                # (N s, w_j + 1) x (w_j + 1, mc k), the last column/row carrying the bias
                pre = (a_aug @ Wm).reshape(N, s * mc, k)
                w_new = (w_s[:, None] * probs[None, :]).reshape(-1)
                if j == L - 1:
                    finish_out(pre, w_new)
                else:
                    expand(pre.relu_() if inplace else torch.relu(pre), w_new, j + 1)

    expand(X[:, None, :], torch.ones(1, dtype=dt), 0)
    return acc.loss, acc.mean  # type: ignore[return-value]


def _folded_inputs(X: Tensor, keep: float, rows: int):
    """Input dropout folded into the data, zero inputs deduplicated (chunks of ``rows`` rows).

    A dropped input and a zero input look the same to the network, so example ``i`` only needs
    the input patterns supported on its non-zero coordinates: ``2^{s_i}`` masked inputs
    ``x * m / keep`` with probabilities ``keep^{|m|} (1 - keep)^{s_i - |m|}``, instead of ``2^K``.
    Yields ``(owner, masked inputs, probabilities)``.
    """
    N, K = X.shape
    nz = X != 0
    bit = torch.arange(K, dtype=torch.int64)
    supp = (nz.to(torch.int64) << bit).sum(1)
    s = nz.sum(1)
    full = torch.arange(1 << K, dtype=torch.int64)
    per_block = max(1, rows // (1 << K))
    for i0 in range(0, N, per_block):
        sub = supp[i0:i0 + per_block]
        owner, m = ((full[None, :] & ~sub[:, None]) == 0).nonzero(as_tuple=True)
        for c0 in range(0, owner.shape[0], rows):
            o, mm = owner[c0:c0 + rows] + i0, m[c0:c0 + rows]
            bits = ((mm[:, None] >> bit) & 1).to(X.dtype)
            k = bits.sum(1)
            prob = keep**k * (1.0 - keep) ** (s[o].to(X.dtype) - k)
            yield o, X[o] * bits / keep, prob


def _exact_folded(
    layers: list[tuple[Tensor, Tensor]],
    X: Tensor,
    Y: Tensor | None,
    p: float,
    chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """:func:`_exact_engine` with input dropout folded into the data (:func:`_folded_inputs`)."""
    keep = 1.0 - p
    N = X.shape[0]
    out = layers[-1][0].shape[0]
    width = max(W.shape[0] for W, _ in layers)
    rows = max(1, chunk_size // max(width, X.shape[1]))
    loss = X.new_zeros(N)
    mean = X.new_zeros(N, out)
    for o, Xv, prob in _folded_inputs(X, keep, rows):
        lv, mv = _exact_engine(layers, Xv, None if Y is None else Y[o], p, chunk_size,
                               input_dropout=False)
        loss = loss.index_add(0, o, prob * lv)
        mean = mean.index_add(0, o, prob[:, None] * mv)
    return loss, mean


def _exact(layers: list[tuple[Tensor, Tensor]], X: Tensor, Y: Tensor | None, p: float,
           chunk_size: int) -> tuple[Tensor, Tensor]:
    """Exact per-example moments; folds input dropout into the data when inputs have zeros."""
    if len(layers) > 1 and X.shape[1] <= 40 and bool((X == 0).any()):
        return _exact_folded(layers, X, Y, p, chunk_size)
    return _exact_engine(layers, X, Y, p, chunk_size)


def _enumerated(layers: list[tuple[Tensor, Tensor]]) -> int:
    widths = [layers[0][0].shape[1]] + [W.shape[0] for W, _ in layers[:-1]]
    return sum(widths[:-1])


def _limit_error(count: int, max_nodes: int) -> ValueError:
    return ValueError(
        f"exact enumeration would visit 2^{count} dropout patterns: the net has {count} enumerated "
        f"nodes (inputs and hidden units outside the last hidden layer), above the limit "
        f"max_nodes={max_nodes}. Use method='monte_carlo' (with samples=...), or raise max_nodes "
        f"if you accept the cost (time grows as 2^nodes)."
    )


def _mc_engine(
    layers: list[tuple[Tensor, Tensor]],
    X: Tensor,
    Y: Tensor,
    pi: Tensor,
    p: float,
    samples: int,
    generator: torch.Generator | None,
    chunk_size: int,
) -> tuple[Tensor, float]:
    keep = 1.0 - p
    lam = p / keep
    N = X.shape[0]
    dt = X.dtype
    widths = [X.shape[1]] + [W.shape[0] for W, _ in layers[:-1]]
    per_sample = N * max(widths + [W.shape[0] for W, _ in layers])
    step = max(1, chunk_size // per_sample)
    vals = []
    for s0 in range(0, samples, step):
        s = min(samples, s0 + step) - s0
        h = X[:, None, :].expand(N, s, X.shape[1])
        for j, (W, b) in enumerate(layers[:-1]):
            mask = bernoulli_keep((N, s, widths[j]), keep, generator=generator, dtype=dt,
                                  device=X.device)
            h = torch.relu((h * mask / keep) @ W.T + b)
        W, b = layers[-1]
        a = h
        mean = a @ W.T + b
        var = lam * ((a * a) @ (W * W).T)
        err = mean - Y[:, None, :]
        loss = (err * err + var).sum(-1)  # (N, s)
        vals.append(pi @ loss)
    v = torch.cat(vals)
    value = v.mean()
    se = mean_and_stderr(v.detach())[1]
    return value, se


# ---------------------------------------------------------------------------------------------
# public criteria


def dropout_criterion(
    net: nn.Module,
    X: Tensor,
    Y: Tensor,
    p: float = 0.5,
    method: Literal["exact", "monte_carlo"] = "exact",
    *,
    samples: int = 10_000,
    generator: torch.Generator | None = None,
    weights: Tensor | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dtype: torch.dtype | None = torch.float64,
) -> CriterionResult:
    """Dropout criterion ``J_D(W) = sum_i pi_i E_R (D(W, x_i, R) - y_i)^2`` (Helmbold & Long 2017,
    eq. 1).

    Dropout drops every input and hidden unit independently with probability ``p`` (the paper's
    ``q``; its keep probability is ``1 - p``) and scales kept nodes by ``1 / (1 - p)``. The output
    is never dropped. The loss is the square loss without 1/2, summed over outputs.

    Args:
        net: ``nn.Sequential`` ``Linear, ReLU, ..., Linear`` (e.g. :class:`StandardNet`).
        X: inputs ``(N, K)``.
        Y: targets ``(N, out)`` or ``(N,)`` for one output.
        p: drop probability in ``[0, 1)``.
        method: ``"exact"`` enumerates every pattern (module docstring); ``"monte_carlo"``
            samples ``samples`` patterns per example.
        samples: Monte-Carlo samples (>= 2).
        generator: random generator of the Monte-Carlo samples.
        weights: probabilities ``pi_i`` of the examples (default uniform ``1/N``).
        max_nodes: most enumerated nodes allowed for ``"exact"`` (inputs and hidden units outside
            the last hidden layer; the work is ``N * 2^nodes`` small forward passes).
        chunk_size: most numbers held by one intermediate tensor (bounds memory).
        dtype: computation dtype (float64 by default; ``None``: the net's).

    Returns:
        :class:`CriterionResult` with the value (differentiable), its standard error, the method
        and the number of patterns averaged over.

    Note:
        With autograd on (grad mode and parameters that require grad) the chunks are kept for the
        backward pass, so memory grows with the number of patterns; for values only, call it under
        ``torch.no_grad()``, which also reuses buffers in place (faster, memory bounded by
        ``chunk_size`` per layer).

    Raises:
        ValueError: ``method="exact"`` on a net with more than ``max_nodes`` enumerated nodes.

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])   # the paper's Fig. 1
        >>> X, Y = torch.tensor([[1.0, -1.0]]), torch.tensor([8.0])
        >>> float(dropout_criterion(net, X, Y, p=0.5))
        54.0
        >>> risk(net, X, Y).item()
        64.0
    """
    p = _check_p(p)
    if method not in ("exact", "monte_carlo"):
        raise ValueError(f"method must be 'exact' or 'monte_carlo', got {method!r}")
    chunk_size = check_int("chunk_size", chunk_size)
    layers = _params(net, dtype)
    X, Y, pi = _data(layers, X, Y, weights)
    total_nodes = X.shape[1] + sum(W.shape[0] for W, _ in layers[:-1])
    if method == "exact":
        count = _enumerated(layers)
        if count > max_nodes:
            raise _limit_error(count, max_nodes)
        loss, _ = _exact(layers, X, Y, p, chunk_size)
        return CriterionResult(pi @ loss, 0.0, "exact", 1 << total_nodes)
    samples = check_int("samples", samples, minimum=2)
    value, se = _mc_engine(layers, X, Y, pi, p, samples, generator, chunk_size)
    return CriterionResult(value, se, "monte_carlo", samples)


def risk(net: nn.Module, X: Tensor, Y: Tensor, *, weights: Tensor | None = None,
         dtype: torch.dtype | None = torch.float64) -> Tensor:
    """Risk ``R(W) = sum_i pi_i |W(x_i) - y_i|^2``, square loss without 1/2.

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(1, 2)])
        >>> risk(net, torch.tensor([[1.0, 2.0]]), torch.tensor([1.0]))
        tensor(4., dtype=torch.float64, grad_fn=<DotBackward0>)
    """
    layers = _params(net, dtype)
    X, Y, pi = _data(layers, X, Y, weights)
    err = _forward(layers, X) - Y
    return pi @ (err * err).sum(-1)


def dropout_penalty(
    net: nn.Module,
    X: Tensor,
    Y: Tensor,
    p: float = 0.5,
    method: Literal["exact", "monte_carlo"] = "exact",
    **kwargs: Any,
) -> CriterionResult:
    """Dropout penalty ``J_D(W) - R(W)``; it can be negative (the paper's Fig. 1).

    Takes the arguments of :func:`dropout_criterion`; the standard error is that of ``J_D``.

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])
        >>> float(dropout_penalty(net, torch.tensor([[1.0, -1.0]]), torch.tensor([8.0])))
        -10.0
    """
    res = dropout_criterion(net, X, Y, p, method, **kwargs)
    r = risk(net, X, Y, weights=kwargs.get("weights"), dtype=kwargs.get("dtype", torch.float64))
    return CriterionResult(res.value - r, res.stderr, res.method, res.n_patterns)


def weight_decay_criterion(
    net: nn.Module,
    X: Tensor,
    Y: Tensor,
    lam: float,
    *,
    include_biases: bool = False,
    weights: Tensor | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """Weight-decay criterion ``J_2(W) = R(W) + (lam / 2) ||W||^2`` (biases not penalised).

    ``||W||^2`` sums the squares of the weights only (biases are not penalised, as in the paper);
    ``include_biases=True`` penalises them too (Torch7's ``weightDecay``, used in the paper's
    Section 6).

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(1, 2)], [torch.ones(1)])
        >>> weight_decay_criterion(net, torch.zeros(1, 2), torch.tensor([1.0]), lam=0.5)
        tensor(0.5000, dtype=torch.float64, grad_fn=<AddBackward0>)
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise ValueError(f"lam must be a float >= 0, got {lam!r}")
    r = risk(net, X, Y, weights=weights, dtype=dtype)
    sq = 0.0
    for W, b in _params(net, dtype):
        sq = sq + (W * W).sum()
        if include_biases:
            sq = sq + (b * b).sum()
    return r + 0.5 * lam * sq


def expected_dropout_output(
    net: nn.Module,
    X: Tensor,
    p: float = 0.5,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """Exact mean output under dropout ``E_R D(W, x, R)``, shape ``(N, out)``.

    For linear networks it equals ``W(x)``; for ReLU networks it does not, which is what makes the
    penalty depend on the labels (Theorem 20): for one output,
    ``penalty(y) = penalty(0) - 2 y (E_R D - W(x))``.

    Example:
        >>> from dropreg.relu import relu_net
        >>> net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])   # Theorem 20's witness
        >>> expected_dropout_output(net, torch.tensor([[1.0, -2.0]]))
        tensor([[1.]], dtype=torch.float64, grad_fn=<AddBackward0>)
    """
    p = _check_p(p)
    layers = _params(net, dtype)
    X, _, _ = _data(layers, X, None, None)
    count = _enumerated(layers)
    if count > max_nodes:
        raise _limit_error(count, max_nodes)
    _, mean = _exact(layers, X, None, p, chunk_size)
    return mean
