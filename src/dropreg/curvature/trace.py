"""Stochastic trace and squared Frobenius norm of a symmetric operator, with standard errors.

* Hutchinson: ``tr(A) = E[z^T A z]`` for Rademacher ``z``; estimate = mean of ``num_matvecs``
  samples, s.e. = sample std / sqrt(num_matvecs).
* Hutch++ (Meyer, Musco, Musco, Woodruff 2021): with ``m = num_matvecs`` split in thirds,
  ``Q = orth(A S)`` for ``m/3`` Rademacher columns ``S``; ``tr(A) = tr(Q^T A Q) + tr of the
  deflated rest`` by Hutchinson with the last third. The s.e. is that of the Hutchinson part
  (the first part is exact given ``Q``); unbiased like Hutchinson, with far smaller variance for
  matrices with fast-decaying spectra such as Hessians.
* ``||A||_F^2 = E||A z||^2`` for Rademacher or Gaussian ``z``.
* XTrace and XNysTrace (Epperly, Tropp, Webber 2024, "XTrace: making the most of every sample in
  stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), Sections 2-3): every probe is
  used both for the low-rank approximation and as a Hutchinson probe of the rest, through
  leave-one-out approximations (:func:`xtrace`, :func:`xnystrace`).
* :func:`auto_trace`: a few Lanczos steps look at the top of the spectrum, then Hutchinson (flat
  spectrum) or XTrace (a top that holds most of ``||A||_F^2``) spends the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg._random import mean_and_stderr, rademacher
from dropreg.curvature.lanczos import Operator, as_operator, lanczos_tridiagonal

__all__ = ["TraceResult", "auto_trace", "squared_frobenius", "stochastic_trace", "xnystrace",
           "xtrace"]


@dataclass(frozen=True)
class TraceResult:
    """A stochastic estimate: ``estimate``, its standard error ``stderr``, ``num_matvecs`` used,
    the per-probe ``samples`` of the stochastic part and the ``method``.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> r = stochastic_trace(A, 30, generator=torch.Generator().manual_seed(0))
        >>> r.method, r.num_matvecs, r.samples.shape, r.estimate
        ('hutchinson', 30, torch.Size([30]), 55.0)
    """

    estimate: float
    stderr: float
    num_matvecs: int
    samples: Tensor
    method: str


def _apply(matvec, Z: Tensor) -> Tensor:
    return torch.stack([matvec(c) for c in Z.T], dim=1)


def stochastic_trace(
    op: Operator | Tensor,
    num_matvecs: int = 100,
    method: Literal["hutchinson", "hutch++"] = "hutchinson",
    *,
    generator: torch.Generator | None = None,
) -> TraceResult:
    """Trace of a symmetric operator by Hutchinson or Hutch++ with its standard error.

    Args:
        op: a :class:`HessianOperator`, an object with ``matvec``/``shape``, or a square tensor.
        num_matvecs: operator products to spend (>= 2; >= 6 for Hutch++, used in thirds).
        method: ``"hutchinson"`` or ``"hutch++"``.
        generator: for the Rademacher probes.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> r = stochastic_trace(A, 30, generator=torch.Generator().manual_seed(0))
        >>> r.estimate, r.stderr  # Rademacher probes are exact for a diagonal matrix
        (55.0, 0.0)
        >>> g = torch.Generator().manual_seed(0)
        >>> round(stochastic_trace(A, 30, "hutch++", generator=g).estimate, 6)
        55.0
    """
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    if method == "hutchinson":
        check_int("num_matvecs", num_matvecs, minimum=2)
        Z = rademacher((n, num_matvecs), generator=generator, dtype=dtype, device=device)
        s = (Z * _apply(matvec, Z)).sum(0).double()
        est, se = mean_and_stderr(s)
        return TraceResult(est, se, num_matvecs, s, method)
    if not isinstance(num_matvecs, int) or num_matvecs < 6:
        raise ValueError(f"num_matvecs must be an int >= 6 for hutch++, got {num_matvecs!r}")
    k = num_matvecs // 3
    k_h = num_matvecs - 2 * k
    S = rademacher((n, k), generator=generator, dtype=dtype, device=device)
    Q, _ = torch.linalg.qr(_apply(matvec, S))
    AQ = _apply(matvec, Q)
    exact = float(torch.trace(Q.T @ AQ))
    G = rademacher((n, k_h), generator=generator, dtype=dtype, device=device)
    G = G - Q @ (Q.T @ G)
    AG = _apply(matvec, G)
    AG = AG - Q @ (Q.T @ AG)
    s = (G * AG).sum(0).double()
    est, se = mean_and_stderr(s)
    return TraceResult(exact + est, se, 2 * k + k_h, s, method)


def squared_frobenius(
    op: Operator | Tensor, num_matvecs: int = 100, *, generator: torch.Generator | None = None
) -> TraceResult:
    """``||A||_F^2 = E||A z||^2`` (Rademacher ``z``) with its standard error.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> r = squared_frobenius(A, 4000, generator=torch.Generator().manual_seed(0))
        >>> abs(r.estimate - 15.0) < 5 * r.stderr
        True
    """
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    check_int("num_matvecs", num_matvecs, minimum=2)
    Z = rademacher((n, num_matvecs), generator=generator, dtype=dtype, device=device)
    s = (_apply(matvec, Z) ** 2).sum(0).double()
    est, se = mean_and_stderr(s)
    return TraceResult(est, se, num_matvecs, s, "hutchinson-frobenius")


# --------------------------------------------------------------------------- XTrace, XNysTrace


def _probes(op: Operator | Tensor, m: int, generator: torch.Generator | None):
    """``(matvec, dtype, Omega, A Omega)``: ``m`` Rademacher probes and their products, the
    two in float64 (the small dense algebra is done in float64 whatever the operator's dtype)."""
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    omega = rademacher((n, m), generator=generator, dtype=dtype, device=device)
    return matvec, dtype, omega.double(), _apply(matvec, omega).double()


def _result(samples: Tensor, shift: float, num_matvecs: int, method: str) -> TraceResult:
    """Mean of the exchangeable estimates ``samples`` (minus ``shift``) and the paper's error
    estimate ``std(samples) / sqrt(m)`` (Epperly et al. 2024, Section 2.3)."""
    est, se = mean_and_stderr(samples)
    return TraceResult(est - shift, se, num_matvecs, samples, method)


def _check_budget(name: str, num_matvecs: object, minimum: int, n: int, per: int) -> int:
    num_matvecs = check_int("num_matvecs", num_matvecs, minimum=minimum)
    if num_matvecs // per >= n:
        raise ValueError(f"{name}: num_matvecs // {per} = {num_matvecs // per} probes must be "
                         f"fewer than the dimension {n}; with that many products compute the "
                         "trace exactly from the unit vectors")
    return num_matvecs


def xtrace(
    op: Operator | Tensor, num_matvecs: int = 100, *, generator: torch.Generator | None = None
) -> TraceResult:
    """XTrace (Epperly, Tropp, Webber 2024, Section 2, "XTrace"): trace of a symmetric operator.

    With ``m = num_matvecs // 2`` Rademacher probes ``Omega``, ``Y = A Omega = Q R`` and
    ``Z = A Q`` (``2m`` products), estimate ``i`` is Hutch++ with the leave-one-out basis
    ``Q_(i)`` of ``Y`` without column ``i`` and the probe ``omega_i``, which is independent of it:
    ``t_i = tr(Q_(i)^T A Q_(i)) + omega_i^T (I - Q_(i) Q_(i)^T) A (I - Q_(i) Q_(i)^T) omega_i``,
    so each ``t_i`` is unbiased; the estimate is their mean. All ``t_i`` cost ``O(n m^2)`` from
    ``Q, R, Z``: ``Q_(i) Q_(i)^T = Q Q^T - Q s_i s_i^T Q^T`` with ``s_i`` the normalised column
    ``i`` of ``R^{-T}`` (the paper's Section 2.2). ``stderr`` is the paper's error estimate
    ``std(t_i) / sqrt(m)`` (the ``t_i`` are dependent: it is an estimate, not a bound).

    Args:
        op: a :class:`HessianOperator`, an object with ``matvec``/``shape``, or a square tensor.
        num_matvecs: products to spend (an even number >= 4 is used in full; ``m`` must be
            below the dimension).
        generator: for the Rademacher probes.

    Example:
        >>> A = torch.diag(torch.logspace(0, -12, 40, dtype=torch.float64))  # fast decay
        >>> r = xtrace(A, 30, generator=torch.Generator().manual_seed(0))
        >>> r.method, r.num_matvecs, abs(r.estimate - float(A.trace())) < 1e-3
        ('xtrace', 30, True)
    """
    _, n, _ = as_operator(op)
    num_matvecs = _check_budget("xtrace", num_matvecs, 4, n, 2)
    m = num_matvecs // 2
    matvec, dtype, omega, Y = _probes(op, m, generator)
    Q, R = torch.linalg.qr(Y)
    diag = R.diagonal().abs()
    if not bool((diag > 1e-12 * diag.max()).all()):
        raise ValueError(f"xtrace: the sketch A Omega has numerical rank below m = {m} (the "
                         "operator has rank < m): use fewer num_matvecs")
    Z = _apply(matvec, Q.to(dtype)).double()
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    W = Q.T @ omega
    S = torch.linalg.solve_triangular(R, torch.eye(m, dtype=R.dtype, device=R.device),
                                      upper=True).T
    S = S / S.norm(dim=0, keepdim=True)
    HS = H @ S
    low_rank = H.trace() - (S * HS).sum(0)               # tr(Q_(i)^T A Q_(i))
    C = W - S * (S * W).sum(0, keepdim=True)             # Q^T (I - Q_(i) Q_(i)^T) omega_i
    rest = ((omega * Y).sum(0) - 2.0 * (C * R).sum(0)    # omega_i^T y_i - 2 c_i^T Q^T y_i
            + (C * (H @ C)).sum(0))                      # + c_i^T Q^T A Q c_i
    return _result(low_rank + rest, 0.0, 2 * m, "xtrace")


def xnystrace(
    op: Operator | Tensor, num_matvecs: int = 100, *, generator: torch.Generator | None = None
) -> TraceResult:
    """XNysTrace (Epperly, Tropp, Webber 2024, Section 3): trace of a positive semi-definite
    operator from ``m = num_matvecs`` products, by leave-one-out Nyström approximations.

    With ``G = Omega^T A Omega`` and ``K = G^{-1}``, the Nyström approximation from all probes
    but ``i`` has trace ``tr(A_hat) - ||A Omega K e_i||^2 / K_ii`` and the residual probe
    ``omega_i^T (A - A_hat_(i)) omega_i = 1 / K_ii`` (a Schur complement), so
    ``t_i = tr(A_hat) - ||A Omega K e_i||^2 / K_ii + 1 / K_ii``, each unbiased (``A_hat_(i)``
    does not depend on ``omega_i``). As in the paper the products are those of the shifted
    ``A + nu I`` (``nu`` a rounding-level shift, ``n nu`` subtracted at the end) so that ``G``
    factors stably. ``stderr`` is ``std(t_i) / sqrt(m)``, as for :func:`xtrace`. For an
    indefinite operator (a Hessian away from a minimum) ``G`` need not be positive definite:
    then a ``ValueError`` says so (use :func:`xtrace`).

    Example:
        >>> A = torch.diag(torch.logspace(0, -12, 40, dtype=torch.float64))
        >>> r = xnystrace(A, 15, generator=torch.Generator().manual_seed(0))
        >>> r.method, abs(r.estimate - float(A.trace())) < 1e-3
        ('xnystrace', True)
    """
    _, n, _ = as_operator(op)
    m = _check_budget("xnystrace", num_matvecs, 2, n, 1)
    _, _, omega, Y = _probes(op, m, generator)
    nu = float(torch.finfo(torch.float64).eps) * n**0.5 * float(Y.norm())
    Y = Y + nu * omega
    G = omega.T @ Y
    L, info = torch.linalg.cholesky_ex(0.5 * (G + G.T))
    if int(info) != 0:
        raise ValueError("xnystrace: Omega^T A Omega is not positive definite, so the operator "
                         "is not positive semi-definite; use xtrace")
    K = torch.cholesky_inverse(L)
    B = torch.linalg.solve_triangular(L, Y.T, upper=False)  # L^{-1} Y^T: ||B||_F^2 = tr(A_hat)
    M = Y @ K
    k = K.diagonal()
    samples = B.square().sum() - M.square().sum(0) / k + 1.0 / k
    return _result(samples, nu * n, m, "xnystrace")


def _hutchinson(op: Operator | Tensor, m: int, generator: torch.Generator | None) -> TraceResult:
    _, _, omega, Y = _probes(op, m, generator)
    return _result((omega * Y).sum(0), 0.0, m, "hutchinson")


#: :func:`auto_trace` chooses XTrace when the top eigenvalues hold at least this share of the
#: estimated ``||A||_F^2`` (our threshold, from the variance model in its docstring).
AUTO_TOP_FRACTION: float = 0.5


def auto_trace(
    op: Operator | Tensor,
    num_matvecs: int = 100,
    *,
    lanczos_steps: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceResult:
    """Hutchinson or XTrace, chosen by the decay of the top of the spectrum seen by Lanczos.

    The rule (ours). Hutchinson's variance per probe is about ``2 ||A||_F^2``, so with ``2m``
    products its estimate has variance about ``||A||_F^2 / m``; XTrace's, with ``m`` probes and
    ``2m`` products, about ``2 ||A - A_m||_F^2 / m`` (``A_m`` the top ``m`` eigenvalues: the rest
    is what its probes see). XTrace wins when the top ``m`` eigenvalues hold more than half of
    ``||A||_F^2``. That share is estimated by ``k = lanczos_steps`` (default
    ``min(10, num_matvecs // 20)``, at least 2) Lanczos steps from a Rademacher vector: their
    Gauss quadrature (Ritz values ``theta_j``, weights ``tau_j^2``, the squared first components
    of the eigenvectors of the tridiagonal matrix; Golub and Meurant 2010, Chapter 6) is a
    ``k``-point model of the spectrum, exact for ``lambda^2``; the share is that of
    ``sum tau_j^2 theta_j^2`` carried by its largest nodes up to a weight ``m / n``. XTrace is
    chosen when the share is at least ``AUTO_TOP_FRACTION = 1/2`` (our threshold), Hutchinson
    otherwise; either spends the remaining ``num_matvecs - k`` products (Hutchinson also counts
    the start vector ``z``, whose ``z^T A z = n alpha_1`` is one more Rademacher probe). Near the
    threshold the two have about the same variance, so a wrong choice there costs little. The
    result's ``method`` is ``"auto:xtrace"`` or ``"auto:hutchinson"``; ``num_matvecs`` includes
    the Lanczos steps.

    Example:
        >>> A = torch.diag(torch.logspace(0, -6, 200, dtype=torch.float64))
        >>> auto_trace(A, 60, generator=torch.Generator().manual_seed(0)).method
        'auto:xtrace'
        >>> flat = torch.diag(torch.linspace(1.0, 2.0, 200, dtype=torch.float64))
        >>> auto_trace(flat, 60, generator=torch.Generator().manual_seed(0)).method
        'auto:hutchinson'
    """
    r, _ = _auto_trace(op, num_matvecs, lanczos_steps, generator)
    return r


def top_share(theta: Tensor, weights: Tensor, fraction: float) -> float:
    """Share of ``sum w_j theta_j^2`` carried by the largest ``theta_j`` up to a total weight
    ``fraction`` (the last node counted in part): :func:`auto_trace`'s estimate of the share of
    ``||A||_F^2`` held by the top ``fraction * n`` eigenvalues.

    Example:
        >>> top_share(torch.tensor([1.0, 3.0]), torch.tensor([0.5, 0.5]), 0.25)
        0.45
    """
    order = torch.argsort(theta.abs(), descending=True)
    th, w = theta[order].double(), weights[order].double()
    total = float((w * th**2).sum())
    if total <= 0:
        return 1.0
    before = torch.cumsum(w, 0) - w
    take = (fraction - before).clamp(min=0.0).minimum(w)
    return float((take * th**2).sum()) / total


def _auto_trace(op, num_matvecs, lanczos_steps, generator) -> tuple[TraceResult, float]:
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    num_matvecs = check_int("num_matvecs", num_matvecs, minimum=8)
    k = lanczos_steps if lanczos_steps is not None else max(2, min(10, num_matvecs // 20))
    k = check_int("lanczos_steps", k, minimum=1)
    if num_matvecs - k < 4:
        raise ValueError(f"num_matvecs - lanczos_steps = {num_matvecs - k} must be >= 4")
    z = rademacher((n,), generator=generator, dtype=dtype, device=device)
    alpha, beta, _ = lanczos_tridiagonal(matvec, z, k)
    used = int(alpha.numel())
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    theta, vecs = torch.linalg.eigh(T)
    rest = num_matvecs - used
    share = top_share(theta, vecs[0] ** 2, min(1.0, (rest // 2) / n))
    if share >= AUTO_TOP_FRACTION and rest // 2 < n:
        r = xtrace(op, rest, generator=generator)
        choice = "xtrace"
    else:  # the Lanczos start vector is one more Rademacher probe: z^T A z = n alpha_1
        h = _hutchinson(op, rest, generator)
        samples = torch.cat([torch.tensor([n * float(alpha[0])], dtype=torch.float64),
                             h.samples.cpu()])
        r = _result(samples, 0.0, rest, "hutchinson")
        choice = "hutchinson"
    return (TraceResult(r.estimate, r.stderr, used + r.num_matvecs, r.samples, f"auto:{choice}"),
            share)
