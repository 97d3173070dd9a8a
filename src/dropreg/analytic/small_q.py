"""The small-drop-probability limit of dropout's gradient noise (Wei, Kakade, Ma 2020, Sec. 3,
eq. 4.6: xi_approx matches xi_drop to first order in the noise).

With independent Bernoulli masks ``z_j = b_j / (1 - q)``, ``P(b_j = 0) = q``, every moment of the
dropout gradient noise is of order ``q`` and, as ``q -> 0``, its covariance is dominated by
deleting one unit at a time (two deletions have probability ``O(q^2)``, the ``1/(1 - q)`` rescaling
is a deterministic ``O(q)`` shift)::

    Cov(xi_drop) / q  ->  sum_j (g_{-j} - g_0)(g_{-j} - g_0)^T,

``g_0`` the clean gradient and ``g_{-j}`` the gradient with unit ``j`` deleted (mask 0 on ``j``,
1 elsewhere). Its trace is :func:`small_q_noise_trace`; ``tr Cov(xi_approx) / q`` tends to
``sum_j ||d/dW (dL/dh_j h_j)||^2``, the linearisation of each deletion, so the ratio of the two
traces has an exact limit that is not 1 when a deletion is not linear in its effect.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(4, 2)).double()
    >>> x, y = torch.ones(1, 3, dtype=torch.float64), torch.tensor([1])
    >>> loss = torch.nn.functional.cross_entropy
    >>> small_q_noise_trace(net, loss, x, y) >= 0
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["one_unit_deletion_masks", "small_q_noise_trace"]


def one_unit_deletion_masks(model: nn.Module, x: Tensor) -> list:
    """The clean mask (all ones) followed by one mask per unit of every site with that unit 0.

    ``x`` must hold one example (masks are per example).
    """
    from dropreg.sites import DropoutMasks, sample_masks

    if x.shape[0] != 1:
        raise ValueError(f"x must hold one example, got batch size {x.shape[0]}")
    shapes = {k: v.shape for k, v in sample_masks(model, x, 1, generator=torch.Generator())[0]
              .masks.items()}
    ones = {k: torch.ones(s, dtype=x.dtype) for k, s in shapes.items()}
    out = [DropoutMasks(dict(ones))]
    for name, shape in shapes.items():
        for j in range(int(torch.Size(shape).numel())):
            m = ones[name].clone().reshape(-1)
            m[j] = 0.0
            out.append(DropoutMasks({**ones, name: m.reshape(shape)}))
    return out


def small_q_noise_trace(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                        x: Tensor, y: Tensor) -> float:
    """``lim_{q -> 0} tr Cov(xi_drop) / q = sum_j ||g_{-j} - g_0||^2`` for one example ``(x, y)``
    (Bernoulli dropout on every site; the gradient w.r.t. all parameters)."""
    from dropreg.curvature import dropout_gradients

    G = dropout_gradients(model, loss_fn, (x, y), one_unit_deletion_masks(model, x))
    return float(((G[:, 1:] - G[:, :1]) ** 2).sum())
