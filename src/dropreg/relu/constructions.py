"""The constructions of Helmbold & Long (2017) with their closed forms.

Fig. 1 (negative penalty), Section 4 (first-one gadget ``W_neg``, Lemma 10, Theorem 17), Section
5.1 (Theorem 18's witness), Sections 5.2-5.3 (Theorem 20); ``docs/papers/helmbold2017.md``. Each
witness is an :class:`Example` ``(net, X, Y)`` for :func:`~dropreg.relu.dropout_criterion`.

All closed forms take the DROP probability ``p`` (the paper's ``q``; its keep probability is
``1 - p``) and ``lam = p / (1 - p)``. Each was derived or re-derived here and is tested against
exact enumeration of all dropout patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from dropreg._checks import check_int
from dropreg.relu.criterion import _check_p, dropout_criterion
from dropreg.relu.network import StandardNet, linear_layers, relu_net

__all__ = [
    "Example",
    "figure1_example",
    "two_unit_penalty",
    "theorem18_witness",
    "theorem18_penalty",
    "theorem18_weight_decay",
    "theorem18_weight_decay_bound",
    "monotone_target",
    "w_neg",
    "lemma10_criterion",
    "theorem17_w_neg",
    "theorem20_witness",
    "FitResult",
    "fit_dropout_criterion",
    "best_output_scale",
]


class Example(NamedTuple):
    """A network with its data: ``net``, inputs ``X (N, K)``, targets ``Y (N, 1)``.

    Example:
        >>> net, X, Y = figure1_example()
        >>> X.tolist(), Y.tolist()
        ([[1.0, -1.0]], [[8.0]])
    """

    net: nn.Sequential
    X: Tensor
    Y: Tensor


def _f64(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def figure1_example(y: float = 8.0) -> Example:
    """The worked example of the paper's Fig. 1: a negative dropout penalty.

    K = 2 inputs, one hidden layer of 2 ReLUs, all weights 1, biases 0; one example
    ``x = (1, -1)`` with label ``y`` (8 in the paper). At ``p = 1/2``: ``J_D = 54``, ``R = 64``,
    penalty ``-10``.

    Example:
        >>> from dropreg.relu import dropout_criterion, dropout_penalty
        >>> net, X, Y = figure1_example()
        >>> float(dropout_criterion(net, X, Y, p=0.5)), float(dropout_penalty(net, X, Y, p=0.5))
        (54.0, -10.0)
    """
    net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])
    return Example(net, _f64([[1.0, -1.0]]), _f64([[y]]))


def two_unit_penalty(p: float, y: float) -> float:
    """Closed-form dropout penalty of the two-unit all-ones net on ``x = (1, -a)``, ``a >= 1``.

    This covers Fig. 1 (``x = (1, -1)``, ``y = 8``) and Theorem 20's witness (``x = (1, -2)``): only
    the pattern "keep x_1, drop x_2" makes the units positive, so with keep probability
    ``k = 1 - p``, ``E_R D = 2 (1 - k)`` while ``W(x) = 0``, and ``E_R D^2 = 2 (1 - k^2) / k^2``:

        penalty(y) = 2 (1 - k^2) / k^2 - 4 (1 - k) y     (derived here; tabulated in the docs)

    The penalty is affine in the label with slope ``-4p != 0``: Theorem 20's label dependence.

    Example:
        >>> two_unit_penalty(0.5, 8.0)
        -10.0
        >>> [round(two_unit_penalty(q, 8.0), 2) for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
        [-2.73, -7.52, -10.0, -2.18, 169.2]
    """
    p = _check_p(p)
    k = 1.0 - p
    return 2.0 * (1.0 - k * k) / (k * k) - 4.0 * (1.0 - k) * float(y)


def theorem20_witness(y: float = 0.0) -> Example:
    """Theorem 20's witness: ``x = (1, -2)``, two hidden units, all weights 1.

    The penalty at ``p = 1/2`` is ``6 - 2 y``: same input, different labels, different penalties.

    Example:
        >>> from dropreg.relu import dropout_penalty
        >>> [float(dropout_penalty(*theorem20_witness(y), p=0.5)) for y in (0.0, 1.0, 5.0)]
        [6.0, 4.0, -4.0]
    """
    net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])
    return Example(net, _f64([[1.0, -2.0]]), _f64([[y]]))


def _check_knd(K: int, n: int, d: int) -> None:
    for name, v in (("K", K), ("n", n), ("d", d)):
        check_int(name, v)


def theorem18_witness(K: int, n: int, d: int, y: float) -> Example:
    """Theorem 18's witness: every weight ``c = (y / (K n^{d-1}))^{1/d}``, biases 0.

    On ``x = 1_K`` each layer-j unit computes ``c^j K n^{j-1}`` and the output is ``y``: risk 0,
    while the dropout penalty grows exponentially with the depth (:func:`theorem18_penalty`).

    Example:
        >>> from dropreg.relu import dropout_criterion
        >>> net, X, Y = theorem18_witness(K=2, n=2, d=2, y=3.0)
        >>> round(float(dropout_criterion(net, X, Y, p=0.5)), 10)
        11.25
    """
    _check_knd(K, n, d)
    if not y >= 0:
        raise ValueError(f"y must be >= 0, got {y}")
    c = (y / (K * n ** (d - 1))) ** (1.0 / d)
    net = StandardNet(K, d, n, bias=True)
    with torch.no_grad():
        for lin in linear_layers(net):
            lin.weight.fill_(c)
            lin.bias.zero_()
    return Example(net, torch.ones(1, K, dtype=torch.float64), _f64([[y]]))


def theorem18_penalty(K: int, n: int, d: int, y: float, p: float = 0.5) -> float:
    """Dropout penalty (= criterion, risk 0) of Theorem 18's witness (proof of Theorem 18):

        y^2 ((1 + lam / K) (1 + lam / n)^(d-1) - 1),   lam = p / (1 - p)

    (``q / (p K)`` in the paper's keep/drop notation). At ``p = 1/2`` it is at least
    ``y^2 / K`` (the theorem states ``y^2 / (K + 1)``) and grows like ``(1 + 1/n)^d``.

    Example:
        >>> theorem18_penalty(2, 2, 3, 5.0)
        59.375
    """
    _check_knd(K, n, d)
    p = _check_p(p)
    lam = p / (1.0 - p)
    return y * y * ((1.0 + lam / K) * (1.0 + lam / n) ** (d - 1) - 1.0)


def _num_weights(K: int, n: int, d: int) -> int:
    widths = [K] + [n] * (d - 1) + [1]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def theorem18_weight_decay(K: int, n: int, d: int, y: float, lam: float) -> float:
    """Weight-decay criterion ``J_2 = R + (lam/2)||W||^2`` of Theorem 18's witness (risk 0):

        (lam / 2) (y / (K n^{d-1}))^{2/d} (K n + n^2 (d - 2) + n)

    Example:
        >>> theorem18_weight_decay(2, 2, 2, 4.0, lam=1.0)
        3.0
    """
    _check_knd(K, n, d)
    c2 = (y / (K * n ** (d - 1))) ** (2.0 / d)
    return 0.5 * lam * c2 * _num_weights(K, n, d)


def theorem18_weight_decay_bound(K: int, n: int, d: int, y: float, lam: float) -> float:
    """Theorem 18(c)'s bound ``(lam y^{2/d} / 2)(K n + n^2 (d - 2) + n)``.

    Example:
        >>> theorem18_weight_decay_bound(2, 2, 2, 4.0, lam=1.0)
        12.0
    """
    _check_knd(K, n, d)
    return 0.5 * lam * y ** (2.0 / d) * _num_weights(K, n, d)


def monotone_target(K: int) -> tuple[Tensor, Tensor]:
    """The distribution ``P_(1,1)`` of Section 4: half on ``(0_K, 0)``, half on ``(1_K, 1)``.

    Example:
        >>> X, Y = monotone_target(2)
        >>> X.tolist(), Y.tolist()
        ([[0.0, 0.0], [1.0, 1.0]], [[0.0], [1.0]])
    """
    K = check_int("K", K)
    X = torch.stack([torch.zeros(K), torch.ones(K)]).to(torch.float64)
    return X, _f64([[0.0], [1.0]])


def w_neg(K: int, n: int, d: int, c: float | None = None, output_bias: float = 0.0
          ) -> nn.Sequential:
    """The network ``W_neg`` of Section 4 (Lemma 10): ``n / K`` copies of the first-one gadget.

    Gadget unit ``i`` has weight -1 on inputs ``i' < i``, +1 on input ``i``, 0 after: it outputs 1
    iff ``x_i = 1`` is the first one of ``x``. Later hidden layers have all weights 1, the output
    weights are all ``c`` (default ``K / (2 n^{d-1} (1 + K/n)(1 + 1/n)^{d-2})``, the minimiser at
    ``p = 1/2``; the Lemma's statement prints ``K^2``, its proof uses ``K``), biases 0 except the
    output bias.

    Example:
        >>> from dropreg.relu import dropout_criterion
        >>> X, Y = monotone_target(2)
        >>> round(float(dropout_criterion(w_neg(2, 4, 2), X, Y, p=0.5)), 12)
        0.25
    """
    _check_knd(K, n, d)
    if d < 2:
        raise ValueError(f"d must be >= 2 (W_neg has a hidden layer), got {d}")
    if n % K:
        raise ValueError(f"n must be a multiple of K (n/K gadgets), got n={n}, K={K}")
    if c is None:
        c = K / (2.0 * n ** (d - 1) * (1.0 + K / n) * (1.0 + 1.0 / n) ** (d - 2))
    gadget = torch.eye(K, dtype=torch.float64) - torch.tril(torch.ones(K, K, dtype=torch.float64),
                                                           -1)
    weights = [gadget.repeat(n // K, 1)]
    weights += [torch.ones(n, n, dtype=torch.float64)] * (d - 2)
    weights.append(torch.full((1, n), float(c), dtype=torch.float64))
    biases: list[Tensor | None] = [None] * (d - 1) + [_f64([output_bias])]
    return relu_net(weights, biases)


def lemma10_criterion(K: int, n: int, d: int) -> float:
    """Lemma 10: ``J_D(W_neg) = (1/2)(1 - (1 - 2^-K) / ((1 + K/n)(1 + 1/n)^{d-2}))`` at p = 1/2.

    Example:
        >>> lemma10_criterion(4, 8, 2)
        0.1875
    """
    _check_knd(K, n, d)
    return 0.5 * (1.0 - (1.0 - 2.0**-K) / ((1.0 + K / n) * (1.0 + 1.0 / n) ** (d - 2)))


def best_output_scale(net: nn.Module, X: Tensor, Y: Tensor, p: float = 0.5
                      ) -> tuple[nn.Module, float]:
    """Scale the output weights (bias fixed) by the ``t`` that minimises the exact ``J_D``.

    The output is linear in the output weights, so ``J_D(t) = a t^2 + b t + c`` and three exact
    evaluations (``t = -1, 0, 1``) give ``t* = -b / (2a)``. This is how the output weight ``c`` of
    ``W_neg`` is optimised in Theorem 17; see :func:`theorem17_w_neg`.

    Returns:
        The rescaled copy of ``net`` and ``t``.

    Example:
        >>> X, Y = monotone_target(2)
        >>> net, t = best_output_scale(w_neg(2, 4, 2), X, Y)
        >>> round(t, 12)
        1.0
    """
    import copy

    vals = []
    for t in (-1.0, 0.0, 1.0):
        tmp = copy.deepcopy(net)
        with torch.no_grad():
            linear_layers(tmp)[-1].weight.mul_(t)
        vals.append(float(dropout_criterion(tmp, X, Y, p)))
    a = 0.5 * (vals[0] + vals[2]) - vals[1]
    b = 0.5 * (vals[2] - vals[0])
    if not a > 0:
        raise ValueError("J_D is not strictly convex in the output scale (the output is "
                         "identically zero under dropout); no unique minimiser")
    t = -b / (2.0 * a)
    new = copy.deepcopy(net)
    with torch.no_grad():
        linear_layers(new)[-1].weight.mul_(t)
    return new, t


def theorem17_w_neg(n: int, d: int = 2, output_bias: float = 0.2, p: float = 0.5
                    ) -> nn.Sequential:
    """Theorem 17's network (K = 2): ``W_neg`` with output bias 1/5 and the best output weight.

    Its ``J_D`` on ``P_(1,1)`` tends to 1/10 as ``n`` grows, below the 1/8 that every network with
    non-negative weights must pay (Theorem 17).

    Example:
        >>> from dropreg.relu import dropout_criterion
        >>> X, Y = monotone_target(2)
        >>> round(float(dropout_criterion(theorem17_w_neg(256), X, Y)), 4)
        0.1019
    """
    net = w_neg(2, n, d, output_bias=output_bias)
    X, Y = monotone_target(2)
    return best_output_scale(net, X, Y, p)[0]


@dataclass(frozen=True)
class FitResult:
    """Result of :func:`fit_dropout_criterion`: the final criterion ``value``, the fitted ``net``,
    the Adam ``steps`` taken and the number of negative weights of the net.

    Example:
        >>> net, X, Y = figure1_example()  # J_D = 54 at the start
        >>> fit = fit_dropout_criterion(net, X, Y, steps=3)
        >>> fit.steps, fit.value < 54.0, fit.value == float(dropout_criterion(fit.net, X, Y))
        (3, True, True)
    """

    value: float
    net: nn.Module
    steps: int
    n_negative_weights: int


def fit_dropout_criterion(
    net: nn.Module,
    X: Tensor,
    Y: Tensor,
    p: float = 0.5,
    *,
    steps: int = 2000,
    lr: float = 0.01,
    nonnegative_weights: bool = False,
) -> FitResult:
    """Minimise the exact dropout criterion with Adam (projected onto non-negative weights).

    With ``nonnegative_weights=True`` every weight matrix is clamped at 0 after each step (biases
    stay free), the setting of Theorem 17's lower bound. The net is
    modified in place.

    Example:
        >>> X, Y = monotone_target(2)
        >>> net = StandardNet(2, 2, 4, generator=torch.Generator().manual_seed(0))
        >>> fit = fit_dropout_criterion(net, X, Y, steps=200, nonnegative_weights=True)
        >>> fit.value >= 0.125 and fit.n_negative_weights == 0
        True
    """
    steps = check_int("steps", steps, minimum=0)
    layers = linear_layers(net)
    if nonnegative_weights:
        with torch.no_grad():
            for lin in layers:
                lin.weight.clamp_(min=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = dropout_criterion(net, X, Y, p).value
        loss.backward()
        opt.step()
        if nonnegative_weights:
            with torch.no_grad():
                for lin in layers:
                    lin.weight.clamp_(min=0.0)
    with torch.no_grad():
        value = float(dropout_criterion(net, X, Y, p).value)
        neg = sum(int((lin.weight < 0).sum()) for lin in layers)
    return FitResult(value, net, steps, neg)
