"""Deep linear networks with Dropout after every hidden layer (Mianjy and Arora 2019).

Network ``x -> W_{K+1} D_K W_K ... D_1 W_1 x`` with ``D_l = diag(b_l) / (1 - p)``, ``b_l`` iid
Bernoulli(``1 - p``) keep-masks, weights in the ``torch.nn.Linear`` layout (``W_l`` is
``d_l x d_{l-1}``). ``docs/papers/mianjy2019.md``.

Example:
    >>> import torch
    >>> round(envelope_constant([5], 0.4), 12)          # one hidden layer: lam / d_1
    0.133333333333
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dropreg.linear.objective import drop_to_lam

__all__ = [
    "deep_linear_regularizer",
    "deep_linear_expected_loss",
    "envelope_constant",
    "flat_rank_one_network",
    "RankOneOptimum",
    "rank_one_optimum",
]


def _check_weights(weights: Sequence[Tensor]) -> list[Tensor]:
    ws = list(weights)
    if len(ws) < 2:
        raise ValueError(f"weights must hold at least 2 matrices (one hidden layer), got {len(ws)}")
    for i, W in enumerate(ws):
        if not isinstance(W, Tensor) or W.dim() != 2:
            raise ValueError(f"weights[{i}] must be a 2-D tensor, got {getattr(W, 'shape', W)}")
    for i in range(1, len(ws)):
        if ws[i].shape[1] != ws[i - 1].shape[0]:
            raise ValueError(f"weights[{i}] has {ws[i].shape[1]} columns but weights[{i - 1}] "
                             f"has {ws[i - 1].shape[0]} rows")
    return ws


def deep_linear_regularizer(weights: Sequence[Tensor], p: float,
                            sigma_x: Tensor | None = None) -> Tensor:
    """Explicit Dropout regularizer ``R(W) = E loss - loss`` of a deep linear net (Mianjy & Arora
    2019).

    Recursion: ``G_1 = W_1 Sigma W_1^T``, ``H_l = G_l + lam Diag(G_l)``,
    ``G_l = W_l H_{l-1} W_l^T``; ``R = tr(W_{K+1} H_K W_{K+1}^T) - tr(P Sigma P^T)`` with
    ``P = W_{K+1} ... W_1``. Expanded, it is a sum over nonempty sets of hidden layers with
    weights ``lam^{|S|}``: the l2-path-type terms.

    Args:
        weights: ``[W_1, ..., W_{K+1}]`` (``W_l`` is ``d_l x d_{l-1}``), ``K >= 1`` hidden layers.
        p: drop probability of every hidden layer.
        sigma_x: input second moment ``X^T X / N`` (``None``: whitened, ``I``).

    Example:
        >>> import torch
        >>> W1, W2 = torch.ones(2, 1), torch.ones(1, 2)
        >>> float(deep_linear_regularizer([W1, W2], 0.5))      # lam sum_i u_i^2 v_i^2
        2.0
    """
    ws = _check_weights(weights)
    lam = drop_to_lam(p)
    W1 = ws[0]
    G = W1 @ W1.T if sigma_x is None else W1 @ sigma_x.to(W1.dtype) @ W1.T
    H = G + lam * torch.diag(torch.diagonal(G))
    for W in ws[1:-1]:
        G = W @ H @ W.T
        H = G + lam * torch.diag(torch.diagonal(G))
    Wout = ws[-1]
    P = Wout
    for W in reversed(ws[:-1]):
        P = P @ W
    plain = (P * P).sum() if sigma_x is None else (P @ sigma_x.to(P.dtype) * P).sum()
    return (Wout @ H * Wout).sum() - plain


def deep_linear_expected_loss(weights: Sequence[Tensor], X: Tensor, Y: Tensor, p: float
                              ) -> Tensor:
    """Exact expected Dropout loss ``(1/N) ||Y - X P^T||^2 + R(W)`` with ``Sigma = X^T X / N``.

    ``P = W_{K+1} ... W_1`` is the end-to-end map and ``R`` the recursion of
    :func:`deep_linear_regularizer` (``docs/papers/mianjy2019.md``).

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(deep_linear_expected_loss([o, o], o, o, 0.5))   # 0 + lam
        1.0
    """
    ws = _check_weights(weights)
    P = ws[-1]
    for W in reversed(ws[:-1]):
        P = P @ W
    N = X.shape[0]
    return ((Y - X @ P.T) ** 2).sum() / N + deep_linear_regularizer(ws, p, X.T @ X / N)


def envelope_constant(hidden_widths: Sequence[int], p: float) -> float:
    """``nu = prod_l (1 + lam / d_l) - 1`` over the hidden widths (``docs/papers/mianjy2019.md``).

    The convex envelope of the induced regularizer is ``nu ||P||_*^2`` (Mianjy and Arora 2019):
    ``R(W) >= nu ||W_{K+1} ... W_1||_*^2`` on whitened data, with equality on flat rank-one nets.

    Example:
        >>> round(envelope_constant([6, 6], 0.4), 5)
        0.23457
    """
    lam = drop_to_lam(p)
    widths = list(hidden_widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"hidden_widths must be a nonempty sequence of ints >= 1, got {widths}")
    return math.prod(1.0 + lam / w for w in widths) - 1.0


def flat_rank_one_network(A: Tensor, hidden_widths: Sequence[int]) -> list[Tensor]:
    """A "flat" network (all hidden units identical) computing the rank-one ``A``.

    ``W_1 = c 1 q^T``, ``W_l = c 1 1^T``, ``W_{K+1} = c sigma p 1^T`` scaled so the layers are
    balanced; its regularizer is exactly ``nu ||A||_*^2``.

    Example:
        >>> import torch
        >>> A = torch.outer(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0, 0.0]))
        >>> ws = flat_rank_one_network(A.double(), [3, 4])
        >>> bool(torch.allclose(ws[2] @ ws[1] @ ws[0], A.double()))
        True
    """
    widths = list(hidden_widths)
    P, s, Rh = torch.linalg.svd(A.to(torch.float64), full_matrices=False)
    sigma = float(s[0]) if s.numel() else 0.0
    if s.numel() > 1 and float(s[1]) > 1e-12 * max(sigma, 1e-300):
        raise ValueError(f"A must have rank <= 1, its singular values are {s.tolist()}")
    K = len(widths)
    # product = c^{K+1} prod(d_l) sigma p q^T  ->  c = (1 / prod d_l)^{1/(K+1)}, sigma on top
    scale = (sigma / math.prod(widths)) ** (1.0 / (K + 1))
    p, q = P[:, 0], Rh[0]
    ws = [scale * torch.outer(torch.ones(widths[0], dtype=torch.float64), q)]
    for l in range(1, K):
        ws.append(scale * torch.ones(widths[l], widths[l - 1], dtype=torch.float64))
    ws.append(scale * torch.outer(p, torch.ones(widths[-1], dtype=torch.float64)))
    return ws


@dataclass(frozen=True)
class RankOneOptimum:
    """The large-dropout global optimum of the deep-linear Dropout objective (Mianjy & Arora 2019,
    claim (c)).

    Attributes:
        applies: ``nu / (1 + nu) >= s_2 / s_1``, the condition under which it is global.
        nu: the envelope constant.
        map: ``P_1 s_1 / (1 + nu) R_1^T``.
        singular_value: ``s_1 / (1 + nu)``.
        value: ``||M||^2 - s_1^2 / (1 + nu)``, the optimal ``||M - P||^2 + R(W)``.
        weights: a flat rank-one network attaining it.

    Example:
        >>> M = torch.diag(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64))
        >>> opt = rank_one_optimum(M, [5, 5], 0.7)
        >>> [tuple(w.shape) for w in opt.weights]  # d -> 5 -> 5 -> D
        [(5, 3), (5, 5), (3, 5)]
        >>> round(opt.singular_value, 12) == round(4.0 / (1 + opt.nu), 12)
        True
    """

    applies: bool
    nu: float
    map: Tensor
    singular_value: float
    value: float
    weights: list[Tensor]


def rank_one_optimum(M: Tensor, hidden_widths: Sequence[int], p: float) -> RankOneOptimum:
    """Global optimum of ``||M - W_{K+1}...W_1||^2 + R(W)`` for large dropout (Mianjy & Arora 2019,
    (c)).

    If ``nu / (1 + nu) >= s_2 / s_1`` the optimum is rank one with singular value
    ``s_1 / (1 + nu)``: it minimizes the convex lower bound ``||M - A||^2 + nu ||A||_*^2`` and a
    flat network attains it. Otherwise ``applies`` is False and the returned map is only the
    best rank-one candidate.

    Example:
        >>> import torch
        >>> M = torch.diag(torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64))
        >>> opt = rank_one_optimum(M, [5, 5], 0.7)
        >>> opt.applies, round(opt.value, 6)
        (True, 9.811983)
    """
    M = M.to(torch.float64)
    nu = envelope_constant(hidden_widths, p)
    P, s, Rh = torch.linalg.svd(M, full_matrices=False)
    s1 = float(s[0])
    s2 = float(s[1]) if s.numel() > 1 else 0.0
    a = s1 / (1.0 + nu)
    A = a * torch.outer(P[:, 0], Rh[0])
    value = float((s**2).sum()) - s1 * s1 / (1.0 + nu)
    applies = s1 == 0.0 or nu / (1.0 + nu) >= s2 / s1
    return RankOneOptimum(applies=bool(applies), nu=nu, map=A, singular_value=a, value=value,
                          weights=flat_rank_one_network(A, hidden_widths))
