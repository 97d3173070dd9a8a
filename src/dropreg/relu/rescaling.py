"""Rescalings that leave the dropout criterion unchanged (Helmbold & Long 2017, Section 3).

``docs/papers/helmbold2017.md``, "Scaling properties (Section 3)". Each function returns a new
network (the input is not modified):

* :func:`rescale_inputs` (Theorem 4): for a diagonal full-rank ``A``, ``W_1 -> W_1 A^{-1}``; then
  ``D(W', A x, R) = D(W, x, R)`` for every pattern, so ``J_D`` and ``R`` on ``A o P`` equal those of
  ``W`` on ``P``.
* :func:`rescale_layers` (Theorem 5): ``W_j -> c_j W_j`` and ``b_j -> (c_1 ... c_j) b_j``; then
  ``D(W', x, R) = (c_1 ... c_d) D(W, x, R)`` for every pattern. With product 1, ``J_D``, ``R`` and
  the penalty are unchanged while ``||W||^2`` is not (weight decay has no such invariance).
* :func:`rescale_output` (Theorem 6): output weights and bias times ``c``; then
  ``J_D(W'; c y) = c^2 J_D(W; y)`` (the dropout aversion scales by ``c^2``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dropreg.relu.network import linear_layers

__all__ = ["rescale_inputs", "rescale_layers", "rescale_output"]


def _copy(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net)


def rescale_inputs(net: nn.Module, scales: Tensor | Sequence[float]) -> nn.Module:
    """Network for inputs rescaled by a diagonal ``A`` (Theorem 4): ``W_1 -> W_1 A^{-1}``.

    Feed it the rescaled data ``X * scales`` (rows ``x -> A x``).

    Args:
        net: ``nn.Sequential`` of ``Linear`` and ``ReLU``.
        scales: the diagonal of ``A``, one non-zero finite entry per input (negative allowed), or
            the diagonal matrix ``A`` itself.

    Example:
        >>> from dropreg.relu import StandardNet, dropout_criterion
        >>> net = StandardNet(2, 3, 2, generator=torch.Generator().manual_seed(0))
        >>> X, Y = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([1.0, -1.0])
        >>> A = torch.tensor([3.0, -0.2])
        >>> a = float(dropout_criterion(net, X, Y))
        >>> b = float(dropout_criterion(rescale_inputs(net, A), X * A, Y))
        >>> abs(a - b) < 1e-12 * a
        True
    """
    first = linear_layers(net)[0]
    s = torch.as_tensor(scales, dtype=first.weight.dtype)
    if s.ndim == 2:
        if s.shape[0] != s.shape[1] or bool((s - torch.diag(torch.diagonal(s))).abs().max() > 0):
            raise ValueError(f"scales given as a matrix must be square diagonal, got shape "
                             f"{tuple(s.shape)} with off-diagonal entries")
        s = torch.diagonal(s)
    if s.ndim != 1 or s.shape[0] != first.in_features:
        raise ValueError(
            f"scales must have {first.in_features} entries (one per input), got shape "
            f"{tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s == 0).any()):
        raise ValueError(f"scales must be finite and non-zero (A full rank), got {s.tolist()}")
    new = _copy(net)
    with torch.no_grad():
        linear_layers(new)[0].weight.div_(s)
    return new


def rescale_layers(net: nn.Module, c: Sequence[float]) -> nn.Module:
    """Layer rescaling of Theorem 5: ``W_j -> c_j W_j``, ``b_j -> (prod_{i<=j} c_i) b_j``.

    The new network computes ``(c_1 ... c_d) D(W, x, R)`` under every dropout pattern ``R``; with
    ``prod(c) = 1`` the dropout criterion, the risk and the penalty are unchanged.

    Args:
        net: ``nn.Sequential`` of ``Linear`` and ``ReLU`` with ``d`` Linear layers.
        c: ``d`` positive finite factors, one per Linear layer (the output layer last).

    Example:
        >>> from dropreg.relu import StandardNet, dropout_criterion
        >>> net = StandardNet(2, 3, 2, generator=torch.Generator().manual_seed(0))
        >>> X, Y = torch.tensor([[1.0, 2.0]]), torch.tensor([1.0])
        >>> new = rescale_layers(net, [2.0, 0.25, 2.0])
        >>> a, b = float(dropout_criterion(net, X, Y)), float(dropout_criterion(new, X, Y))
        >>> abs(a - b) < 1e-12 * a
        True
    """
    layers = linear_layers(net)
    c = [float(v) for v in c]
    if len(c) != len(layers):
        raise ValueError(f"c must have {len(layers)} factors (one per Linear layer), got {len(c)}")
    if not all(math.isfinite(v) and v > 0 for v in c):
        raise ValueError(f"c must be positive and finite (ReLU is positively homogeneous), got {c}")
    new = _copy(net)
    prod = 1.0
    with torch.no_grad():
        for lin, cj in zip(linear_layers(new), c):
            prod *= cj
            lin.weight.mul_(cj)
            if lin.bias is not None:
                lin.bias.mul_(prod)
    return new


def rescale_output(net: nn.Module, c: float) -> nn.Module:
    """Output rescaling of Theorem 6: output weights and bias times ``c``.

    ``D(W', x, R) = c D(W, x, R)``, so ``J_D(W'; c y) = c^2 J_D(W; y)``: the minimisers for labels
    ``c y`` are those for ``y`` rescaled, and the dropout aversion is multiplied by ``c^2``.

    Args:
        net: ``nn.Sequential`` of ``Linear`` and ``ReLU``.
        c: non-zero finite factor (the theorem takes ``c > 0``; the identity holds for any sign).

    Example:
        >>> from dropreg.relu import StandardNet, dropout_criterion
        >>> net = StandardNet(2, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> X, Y = torch.tensor([[1.0, -1.0]]), torch.tensor([2.0])
        >>> a = float(dropout_criterion(net, X, Y))
        >>> b = float(dropout_criterion(rescale_output(net, 3.0), X, 3.0 * Y))
        >>> abs(b - 9 * a) < 1e-12 * b
        True
    """
    c = float(c)
    if not math.isfinite(c) or c == 0:
        raise ValueError(f"c must be finite and non-zero, got {c}")
    new = _copy(net)
    out = linear_layers(new)[-1]
    with torch.no_grad():
        out.weight.mul_(c)
        if out.bias is not None:
            out.bias.mul_(c)
    return new
