"""Top eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

Every Lanczos vector is kept and each new one is orthogonalised twice against all of them
("twice is enough"), so Ritz values do not duplicate and the residual estimate
``|beta_m s_{m,i}|`` equals ``||A y_i - theta_i y_i||`` up to rounding. Memory: ``iterations x P``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from dropreg._random import rademacher

__all__ = ["EigenResult", "Operator", "as_operator", "lanczos_iteration", "lanczos_tridiagonal",
           "top_eigenpairs"]


class Operator(Protocol):
    """A symmetric linear operator: ``shape`` and ``matvec`` (e.g. :class:`HessianOperator`)."""

    shape: tuple[int, int]

    def matvec(self, v: Tensor) -> Tensor: ...


def as_operator(op: Operator | Tensor) -> tuple[Callable[[Tensor], Tensor], int, torch.dtype]:
    """``(matvec, n, dtype)`` of an operator, a :class:`~dropreg.curvature.risk.DropoutRisk`
    (its :class:`~dropreg.curvature.hvp.HessianOperator`) or a dense symmetric tensor.

    Example:
        >>> try:
        ...     as_operator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        ... except ValueError as e:
        ...     print(str(e)[:33])
        op must be a symmetric matrix, an
    """
    from dropreg.curvature.risk import DropoutRisk

    if isinstance(op, DropoutRisk):
        from dropreg.curvature.hvp import HessianOperator

        op = HessianOperator(op)
    if isinstance(op, Tensor):
        if op.ndim != 2 or op.shape[0] != op.shape[1]:
            raise ValueError(f"op must be a square matrix, got shape {tuple(op.shape)}")
        asym = float((op - op.T).abs().max()) if op.numel() else 0.0
        scale = float(op.abs().max()) if op.numel() else 0.0
        if not asym <= 1e3 * torch.finfo(op.dtype).eps * max(scale, 1e-300):
            raise ValueError(f"op must be a symmetric matrix, and this one is not: "
                             f"max |A - A^T| = {asym:.3e} for max |A| = {scale:.3e}; the "
                             f"estimators here are for symmetric operators (symmetrise with "
                             f"(A + A.T) / 2 if that is what you mean)")
        return (lambda v: op @ v), op.shape[0], op.dtype
    if not hasattr(op, "matvec") or not hasattr(op, "shape"):
        raise TypeError(f"op must be a square Tensor or have .matvec and .shape, got {type(op)}")
    n = int(op.shape[0])
    dtype = getattr(op, "dtype", torch.float64)
    return op.matvec, n, dtype


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs with the numbers needed to trust them.

    Attributes:
        eigenvalues: ``(k,)``, ordered as requested (``which``).
        eigenvectors: ``(P, k)`` unit columns.
        residuals: ``(k,)`` ``||A v - lambda v||`` (Lanczos estimate, exact up to rounding).
        iterations: Lanczos steps = operator products used.
        converged: whether every residual is ``<= tol * max(|lambda|, scale)``.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64))
        >>> r = top_eigenpairs(A, k=1, generator=torch.Generator().manual_seed(0))
        >>> round(float(r.eigenvalues[0]), 10), r.eigenvectors.shape, r.converged
        (5.0, torch.Size([3, 1]), True)
        >>> bool(torch.allclose((A @ r.eigenvectors).abs(), 5 * r.eigenvectors.abs()))
        True
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    iterations: int
    converged: bool


def lanczos_iteration(
    matvec: Callable[[Tensor], Tensor], v0: Tensor, steps: int, reorthogonalize: bool = True
) -> Iterator[tuple[float, float, Tensor]]:
    """Lanczos one step at a time: after step ``j`` yields ``(alpha_j, beta_j, Q)``, ``Q`` the
    ``(j, P)`` basis so far and ``beta_j = ||r_j||`` the norm of the new residual (the next
    off-diagonal entry, 0 up to rounding on an invariant subspace, where the iteration stops).

    For a caller that decides after each product whether to go on
    (:func:`~dropreg.curvature.auto_trace`).

    Example:
        >>> A = torch.diag(torch.arange(1.0, 4.0, dtype=torch.float64))
        >>> [round(a, 6) for a, _, _ in lanczos_iteration(lambda v: A @ v, torch.ones(3,
        ...  dtype=torch.float64), 3)]
        [2.0, 2.0, 2.0]
    """
    n = v0.numel()
    if not float(v0.norm()) > 0:
        raise ValueError("v0 must be a non-zero start vector, got norm 0")
    Q = torch.zeros(steps, n, dtype=v0.dtype, device=v0.device)
    alphas: list[float] = []
    q = v0 / v0.norm()
    beta, q_prev = 0.0, None
    for j in range(steps):
        Q[j] = q
        w = matvec(q)
        alpha = float(w @ q)
        w = w - alpha * q
        if q_prev is not None:
            w = w - beta * q_prev
        if reorthogonalize:
            for _ in range(2):
                w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(w.norm())
        yield alpha, beta, Q[: j + 1]
        if beta <= 1e-12 * max(abs(a) for a in alphas):
            return
        q_prev, q = q, w / beta


def lanczos_tridiagonal(
    matvec: Callable[[Tensor], Tensor], v0: Tensor, steps: int, reorthogonalize: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """``steps`` Lanczos steps from ``v0``: diagonal ``alpha``, off-diagonal ``beta`` and the basis.

    Stops early on an invariant subspace. Returns ``(alpha (m,), beta (m-1,), Q (m, P))``.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
        >>> a, b, Q = lanczos_tridiagonal(lambda v: A @ v, torch.ones(5, dtype=torch.float64), 5)
        >>> T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        >>> torch.linalg.eigvalsh(T).round(decimals=8).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    alphas, betas, Q = [], [], v0.new_zeros((0, v0.numel()))
    for alpha, beta, basis in lanczos_iteration(matvec, v0, steps, reorthogonalize):
        alphas.append(alpha)
        betas.append(beta)
        Q = basis
    m = len(alphas)
    return (torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas[: m - 1],
            dtype=torch.float64), Q)


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    if which == "LA":
        return torch.argsort(theta, descending=True)[:k]
    if which == "SA":
        return torch.argsort(theta)[:k]
    return torch.argsort(theta.abs(), descending=True)[:k]


def top_eigenpairs(
    op: Operator | Tensor,
    k: int = 1,
    tol: float = 1e-6,
    *,
    which: Literal["LA", "LM", "SA"] = "LA",
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
    v0: Tensor | None = None,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos (full reorthogonalisation).

    Stops as soon as the ``k`` wanted Ritz pairs all have residual
    ``||A y - theta y|| <= tol * max(|theta|, s)`` with ``s`` the largest Ritz value in modulus;
    the eigenvalue error is then at most ``residual^2 / gap`` (and always ``<= residual``).

    Args:
        op: a :class:`HessianOperator`, any object with ``matvec`` and ``shape``, or a dense
            symmetric tensor.
        k: number of eigenpairs, ``1 <= k <= P``.
        tol: relative residual tolerance, > 0.
        which: ``"LA"`` largest algebraic (sharpness), ``"LM"`` largest magnitude, ``"SA"``
            smallest algebraic.
        max_iter: most operator products (default ``min(P, max(20 k, 200))``).
        generator: for the random start vector (Rademacher).
        v0: start vector (overrides ``generator``).

    Returns:
        :class:`EigenResult`.

    Example:
        >>> A = torch.diag(torch.linspace(0, 1, 50, dtype=torch.float64))
        >>> r = top_eigenpairs(A, k=2, tol=1e-8, generator=torch.Generator().manual_seed(0))
        >>> r.eigenvalues.round(decimals=6).tolist(), r.converged
        ([1.0, 0.979592], True)
    """
    matvec, n, dtype = as_operator(op)
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}], got {k!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if which not in ("LA", "LM", "SA"):
        raise ValueError(f"which must be 'LA', 'LM' or 'SA', got {which!r}")
    if max_iter is None:
        max_iter = min(n, max(20 * k, 200))
    if not isinstance(max_iter, int) or max_iter < k:
        raise ValueError(f"max_iter must be an int >= k = {k}, got {max_iter!r}")
    max_iter = min(max_iter, n)
    device = getattr(op, "device", None)
    if v0 is None:
        v0 = rademacher((n,), generator=generator, dtype=dtype, device=device)
    if not isinstance(v0, Tensor) or v0.shape != (n,):
        raise ValueError(f"v0 must be a tensor of shape ({n},), got "
                         f"{tuple(v0.shape) if isinstance(v0, Tensor) else type(v0).__name__}")
    if not float(v0.norm()) > 0 or not bool(torch.isfinite(v0).all()):
        raise ValueError(f"v0 must be a finite non-zero start vector, got norm {float(v0.norm())}")
    device = v0.device
    Q = torch.zeros(min(max_iter, 32), n, dtype=dtype, device=device)  # grown by doubling
    alphas: list[float] = []
    betas: list[float] = []
    q = v0.to(dtype) / v0.norm()
    q_prev, beta = None, 0.0
    theta = S = idx = None
    converged = False
    for j in range(max_iter):
        if j == Q.shape[0]:
            Q = torch.cat([Q, torch.zeros(min(Q.shape[0], max_iter - j), n, dtype=dtype,
                                          device=device)])
        Q[j] = q
        w = matvec(q).to(dtype)
        alpha = float(w @ q)
        w = w - alpha * q
        if q_prev is not None:
            w = w - beta * q_prev
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(w.norm())
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            b = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(b, 1) + torch.diag(b, -1)
        theta, S = torch.linalg.eigh(T)
        m = j + 1
        if m >= k:
            idx = _select(theta, k, which)
            res = beta * S[-1, idx].abs()
            scale = float(theta.abs().max())
            bound = tol * torch.clamp(theta[idx].abs(), min=scale)
            invariant = beta <= 1e-12 * max(scale, 1e-300)
            if invariant or bool((res <= bound).all()):
                converged = True
                break
        if j == max_iter - 1:
            break
        betas.append(beta)
        q_prev, q = q, w / beta
    m = len(alphas)
    idx = _select(theta, k, which)
    vecs = Q[:m].T @ S[:, idx].to(dtype)
    res = beta * S[-1, idx].abs()
    if m == n:  # the Krylov space is the whole space: Ritz pairs are exact
        converged = True
    return EigenResult(theta[idx].clone(), vecs, res, m, converged)
