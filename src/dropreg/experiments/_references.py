"""Independent reference solvers the claims compare the library's closed forms with.

They share no code with the closed forms of :mod:`dropreg.linear`: a generic quasi-Newton search
(scipy L-BFGS with autograd gradients) from random starts on the factorized objective.

Example:
    >>> import torch
    >>> M = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    >>> f, U, V = lbfgs_factorized(M, 2, 1, 1.0, torch.Generator(), starts=2)
    >>> from dropreg.linear import solve_dropout
    >>> abs(f - solve_dropout(M, 2, 0.5).value) < 1e-9
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["lbfgs_factorized", "lbfgs_minimize", "lbfgs_descend"]

F64 = torch.float64


def _lbfgs_run(objective: Callable[[Tensor, Tensor], Tensor], D: int, d: int, r: int,
               x0: Tensor) -> tuple[float, Tensor, Tensor]:
    """One scipy L-BFGS run on ``objective(U, V)`` from the flat start ``x0`` (autograd
    gradients, float64)."""
    from scipy.optimize import minimize

    def fg(x):
        t = torch.tensor(x, dtype=F64, requires_grad=True)
        f = objective(t[: D * r].reshape(D, r), t[D * r:].reshape(d, r))
        f.backward()
        return f.item(), t.grad.numpy().copy()

    res = minimize(fg, x0.detach().to(F64).numpy(), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-11, "maxcor": 30})
    x = torch.tensor(res.x, dtype=F64)
    return float(res.fun), x[: D * r].reshape(D, r), x[D * r:].reshape(d, r)


def lbfgs_minimize(objective: Callable[[Tensor, Tensor], Tensor], shapes: tuple[tuple[int, int],
                   tuple[int, int]], generator: torch.Generator, starts: int, *,
                   init_scale: float = 0.1) -> tuple[float, Tensor, Tensor]:
    """Best of ``starts`` scipy L-BFGS runs on ``objective(U, V)`` (autograd gradients, float64)
    from random starts ``init_scale * N(0, 1)`` drawn from ``generator``.

    Returns ``(value, U, V)`` of the best run.

    Example:
        >>> import torch
        >>> f, U, V = lbfgs_minimize(lambda U, V: ((U @ V.T - 1.0) ** 2).sum(), ((1, 1), (1, 1)),
        ...                          torch.Generator(), 1)
        >>> f < 1e-12
        True
    """
    (D, r), (d, r2) = shapes
    if r2 != r:
        raise ValueError(f"shapes must share the width, got {shapes}")
    if starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    best: tuple[float, Tensor, Tensor] = (math.inf, torch.empty(0), torch.empty(0))
    for _ in range(starts):
        x0 = init_scale * torch.randn(D * r + d * r, generator=generator, dtype=F64)
        run = _lbfgs_run(objective, D, d, r, x0)
        if run[0] < best[0]:
            best = run
    return best


def lbfgs_descend(objective: Callable[[Tensor, Tensor], Tensor], U: Tensor, V: Tensor
                  ) -> tuple[float, Tensor, Tensor]:
    """The local minimum of ``objective(U, V)`` that L-BFGS reaches from ``(U, V)``: the bottom of
    the basin a point (e.g. an SGD iterate) lies in, when the objective has several minima.

    Example:
        >>> import torch
        >>> f, U, V = lbfgs_descend(lambda U, V: ((U @ V.T - 1.0) ** 2).sum(),
        ...                         torch.ones(1, 1), torch.ones(1, 1) * 2)
        >>> f < 1e-12
        True
    """
    (D, r), (d, r2) = U.shape, V.shape
    if r2 != r:
        raise ValueError(f"U and V must have the same width, got {tuple(U.shape)}, "
                         f"{tuple(V.shape)}")
    return _lbfgs_run(objective, D, d, r, torch.cat([U.reshape(-1), V.reshape(-1)]))


def lbfgs_factorized(M: Tensor, r: int, k: int, lam: float, generator: torch.Generator,
                     starts: int) -> tuple[float, Tensor, Tensor]:
    """Independent search for the DropBlock minimum (Pal et al. 2020, Sec. 3, whitened data):
    L-BFGS on ``||M - U V^T||_F^2 + lam sum_g ||U_g V_g^T||_F^2`` (blocks of ``k`` units,
    ``lam = p / (1 - p)``), best of ``starts`` random starts of scale 0.1.

    Returns ``(value, U, V)`` of the best run (``U`` is ``D x r``, ``V`` is ``d x r``).

    Example:
        >>> import torch
        >>> M = torch.eye(2, dtype=torch.float64)
        >>> f, U, V = lbfgs_factorized(M, 2, 2, 1.0, torch.Generator(), 1)
        >>> U.shape, V.shape
        (torch.Size([2, 2]), torch.Size([2, 2]))
    """
    from dropreg.linear import factorized_objective

    D, d = M.shape
    p = lam / (1 + lam)
    return lbfgs_minimize(lambda U, V: factorized_objective(U, V, M, p, k), ((D, r), (d, r)),
                          generator, starts)
