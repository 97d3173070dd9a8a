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
* :func:`auto_trace`: four Rademacher probes look at the top of the spectrum (and stay probes);
  on a flat one Hutchinson spends the rest, otherwise Lanczos from the first of them builds a
  Krylov space that is deflated exactly, the rest of ``(I - P) A (I - P)`` by Hutchinson
  (Hutch++ with a Krylov basis: Meyer et al. 2021,
  Algorithm 1; Chen and Hallman 2023, "Krylov-aware stochastic trace estimation", SIAM J. Matrix
  Anal. Appl. 44(3), arXiv:2205.01736).
* :func:`hutchinson_variance`: the exact per-probe variance ``2 (||A||_F^2 - sum_i a_ii^2)`` of
  Rademacher Hutchinson on an explicit matrix (to compare estimators at equal standard error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg._random import mean_and_stderr, rademacher
from dropreg.curvature.lanczos import Operator, as_operator, lanczos_iteration

__all__ = ["TraceResult", "auto_trace", "hutchinson_variance", "spectral_concentration",
           "squared_frobenius", "stochastic_trace", "xnystrace", "xtrace"]


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


def _quadratic_forms(matvec, Z: Tensor) -> Tensor:
    """``z_i^T A z_i`` for the columns of ``Z``, in float64: the one Hutchinson sample formula
    (:func:`stochastic_trace` and both branches of :func:`auto_trace`)."""
    return (Z * _apply(matvec, Z)).sum(0).double()


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
        s = _quadratic_forms(matvec, Z)
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
    then a ``ValueError`` says so (use :func:`xtrace`). The check cannot see every indefinite
    operator: with small negative eigenvalues ``G`` is often positive definite anyway (so it is
    for the trained MLP of the trace benchmark, smallest eigenvalue -0.11), and the estimate is
    then returned although the Nyström approximation it rests on assumes PSD.

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



# --------------------------------------------------------------------------- auto_trace


def hutchinson_variance(A: Tensor) -> float:
    """Exact variance of one Rademacher Hutchinson sample ``z^T A z`` for a symmetric matrix:
    ``2 (||A||_F^2 - sum_i a_ii^2) = 2 sum_(i != j) a_ij^2`` (the diagonal is seen exactly, since
    ``z_i^2 = 1``; Hutchinson 1989, "A stochastic estimator of the trace of the influence matrix
    for Laplacian smoothing splines", Commun. Statist. Simul. Comput. 18(3), Proposition 1;
    checked by enumeration in the tests). With ``m`` probes the estimate's
    variance is this over ``m``: what a Hutchinson tool (PyHessian's) needs for a given s.e.

    Example:
        >>> hutchinson_variance(torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
        4.0
    """
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a Tensor, got {type(A).__name__}")
    as_operator(A)  # square and symmetric, or a ValueError naming op
    A = A.double()
    return 2.0 * (float(A.square().sum()) - float(A.diagonal().square().sum()))


#: Rademacher probes :func:`auto_trace` applies first: they decide between its branches and are
#: then probes of the branch chosen (ours).
AUTO_PILOT_PROBES: int = 4
#: :func:`auto_trace` deflates when the pilots' estimate of ``sum lambda^4 / (sum lambda^2)^2``
#: (one over the effective rank of ``A^2``) is at least this many times ``1 / num_matvecs``
#: (ours: 1, i.e. the squared spectrum's mass sits in at most about ``num_matvecs`` directions).
AUTO_CONCENTRATION: float = 1.0
#: A Ritz pair counts as resolved in :func:`auto_trace`'s stopping rule when its residual is at
#: most this fraction of ``|theta|`` (ours).
AUTO_RITZ_TOL: float = 0.1


def auto_trace(
    op: Operator | Tensor,
    num_matvecs: int = 100,
    *,
    lanczos_steps: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceResult:
    """Hutchinson, or Hutchinson on the operator deflated by a Lanczos Krylov space, chosen from
    four Rademacher probes that are then probes of the branch chosen: no product is spent on
    the choice alone.

    **The choice.** The pilots ``Z = [z_1 .. z_m]`` (``m = AUTO_PILOT_PROBES = 4``) give ``Y =
    A Z`` and ``G = Y^T Y = Z^T A^2 Z``. For a flat spectrum ``G`` is close to ``||A||_F^2 I``;
    when a few eigenvalues carry ``||A||_F^2`` it is close to low rank. The estimate ``r = (m
    ||G||_F^2 / tr(G)^2 - 1) / (m + 1)`` of ``sum lambda^4 / (sum lambda^2)^2`` (the first-order
    expectation of ``||G||_F^2`` under Gaussian probes; a flat spectrum gives ``r`` near
    ``1 / n``, ``C`` equal outliers near ``1 / C``) is compared with ``AUTO_CONCENTRATION /
    N`` (``N = num_matvecs``; ours): deflation pays when the mass of ``A^2`` sits in fewer
    directions than there are products.

    **Hutchinson branch** (a flat top): the pilots' ``z^T A z`` and ``N - m`` new probes of
    :func:`stochastic_trace` (the same numbers for the same generator state): ``N`` probes for
    ``N`` products.

    **Deflated branch**: Lanczos from ``z_1`` (its first product is the pilot's), basis ``V =
    [q_1 .. q_j]``, ``T = V^T A V`` tridiagonal, ``beta_j`` the last residual norm; projecting
    ``V`` out removes exactly ``K_j = ||T||_F^2 + 2 beta_j^2`` of ``||A||_F^2``. Lanczos stops
    after step ``j >= 3`` once the larger of the last two gains ``K_j - K_{j-1}`` is at most one
    residual probe's share ``U_j / (N - j - 1)`` of what is left, ``U_j`` the unresolved part
    of ``||A z_1||^2``: ``n sum tau_i^2 theta_i^2`` over the Ritz pairs (values ``theta_i``,
    quadrature weights ``tau_i^2``, the squared first components of the eigenvectors of ``T``;
    Golub and Meurant 2010, Chapter 6) whose residual is above ``AUTO_RITZ_TOL = 0.1`` times
    ``|theta_i|`` (ours). It stops anyway at ``lanczos_steps`` (default ``N // 2``) or on an
    invariant subspace. Then ``tr(A) = tr(T) + E[g^T (I - P) A (I - P) g]`` over ``N - j``
    Rademacher ``g``: the other ``m - 1`` pilots, whose products ``A (I - P) g = A g - (A V)
    (V^T g)`` need none more (``A V`` are the Lanczos products), and ``N - j - m + 1`` new ones
    (Hutch++ with a Krylov basis: Meyer, Musco, Musco, Woodruff 2021, Algorithm 1; Chen and
    Hallman 2023, Section 3). ``V`` depends on ``z_1`` only, so the residual probes are
    independent of it; the estimate is exact when the Krylov space holds the range of ``A``.

    The pilots are both in the decision and probes: the bias is ``Cov(1[branch], sum of the
    pilots' samples) / N``, at most ``sqrt(m) s.d. / (2 N)`` (a tenth of the s.e. for ``N =
    100``), and zero where the choice does not depend on them (a clear flat top or clear
    outliers). ``stderr`` is that of the Hutchinson part; ``samples`` its per-probe samples
    (without ``tr(T)``); ``method`` is ``"auto:hutchinson"`` or ``"auto:deflated"``;
    ``num_matvecs`` counts every product.

    Example:
        >>> A = torch.diag(torch.logspace(0, -6, 200, dtype=torch.float64))
        >>> r = auto_trace(A, 60, generator=torch.Generator().manual_seed(0))
        >>> r.method, r.num_matvecs, abs(r.estimate - float(A.trace())) < 3 * r.stderr + 1e-9
        ('auto:deflated', 60, True)
        >>> flat = torch.diag(torch.linspace(1.0, 2.0, 200, dtype=torch.float64))
        >>> auto_trace(flat, 60, generator=torch.Generator().manual_seed(0)).method
        'auto:hutchinson'
    """
    r, _ = _auto_trace(op, num_matvecs, lanczos_steps, generator)
    return r


def spectral_concentration(G: Tensor) -> float:
    """``(m ||G||_F^2 / tr(G)^2 - 1) / (m + 1)`` for the ``m x m`` Gram matrix ``G = Z^T A^2 Z``
    of ``m`` random probes: an estimate of ``sum lambda^4 / (sum lambda^2)^2``, one over the
    effective rank of ``A^2`` (:func:`auto_trace`'s choice; 0 for ``A = 0``).

    Example:
        >>> round(spectral_concentration(torch.eye(2, dtype=torch.float64)), 3)  # flat
        0.0
        >>> round(spectral_concentration(torch.ones(2, 2, dtype=torch.float64)), 3)  # rank 1
        0.333
    """
    m = G.shape[0]
    t = float(G.trace())
    if t <= 0:
        return 0.0
    return (m * float(G.square().sum()) / t**2 - 1.0) / (m + 1)


def _unresolved_mass(alphas: list[float], betas: list[float], n: int) -> float:
    """``n sum_i tau_i^2 theta_i^2`` over the Ritz pairs of ``T`` whose residual
    ``beta_j |s_(j,i)|`` is above ``AUTO_RITZ_TOL |theta_i|``: the part of ``z^T A^2 z`` (the
    estimate of ``||A||_F^2``) that the Krylov space has not resolved yet. ``betas`` holds the
    off-diagonal of ``T`` and last the residual norm ``beta_j``."""
    a = torch.tensor(alphas, dtype=torch.float64)
    b = torch.tensor(betas[:-1], dtype=torch.float64)
    theta, S = torch.linalg.eigh(torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1))
    unresolved = betas[-1] * S[-1].abs() > AUTO_RITZ_TOL * theta.abs()
    return n * float((S[0] ** 2 * theta**2 * unresolved).sum())


def _auto_trace(op, num_matvecs, lanczos_steps, generator) -> tuple[TraceResult, dict]:
    """:func:`auto_trace` and what it saw: ``basis`` (the deflated ``V``, ``(j, n)``, or None),
    ``steps`` (Lanczos steps, 0 in the Hutchinson branch), ``pilot_samples`` (``z_i^T A z_i``),
    ``concentration`` (the choice's statistic), ``pilot_residual_samples`` (their samples of
    ``(I - P) A (I - P)`` when deflated) and, when deflated, ``trace_T`` (``tr T``)."""
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    N = check_int("num_matvecs", num_matvecs, minimum=8)
    m = AUTO_PILOT_PROBES
    k_max = check_int("lanczos_steps", lanczos_steps if lanczos_steps is not None else N // 2,
                      minimum=2)
    if k_max > N - m + 1:
        raise ValueError(f"lanczos_steps = {k_max} must be <= num_matvecs - {m - 1} = "
                         f"{N - m + 1} (the {m - 1} other pilot probes are residual probes)")
    Z = rademacher((n, m), generator=generator, dtype=dtype, device=device)
    Y = _apply(matvec, Z)
    pilots = (Z * Y).sum(0).double()
    Yd = Y.double()
    c = spectral_concentration(Yd.T @ Yd)
    info = {"steps": 0, "pilot_samples": pilots, "concentration": c, "basis": None}
    if c < AUTO_CONCENTRATION / N:
        h = stochastic_trace(op, N - m, generator=generator)
        samples = torch.cat([pilots.cpu(), h.samples.cpu()])
        est, se = mean_and_stderr(samples)
        return TraceResult(est, se, N, samples, "auto:hutchinson"), info

    z, first = Z[:, 0], Y[:, 0] / math.sqrt(n)  # q_1 = z_1 / sqrt(n), A q_1 is known
    products: list[Tensor] = []

    def lanczos_matvec(q: Tensor) -> Tensor:
        w = first if not products else matvec(q)
        products.append(w)
        return w

    alphas: list[float] = []
    betas: list[float] = []
    K = [0.0]  # K[j] = ||T_j||_F^2 + 2 beta_j^2, removed from ||A||_F^2 by projecting V_j out
    offdiag2 = 0.0  # 2 sum of the squared inner off-diagonal entries of T_j
    Q = None
    for alpha, beta, basis in lanczos_iteration(lanczos_matvec, z, min(k_max, n)):
        Q = basis
        alphas.append(alpha)
        j = len(alphas)
        K.append(sum(a * a for a in alphas) + offdiag2 + 2.0 * beta**2)
        offdiag2 += 2.0 * beta**2
        betas.append(beta)
        if j >= 3 and (max(K[j] - K[j - 1], K[j - 1] - K[j - 2]) * (N - j - 1)
                       <= _unresolved_mass(alphas, betas, n)):
            break
    steps = len(alphas)
    V, AV = Q.T, torch.stack(products[:steps], dim=1)  # (n, j) each
    info.update(steps=steps, basis=Q, trace_T=sum(alphas))

    def residual_forms(G: Tensor, AG: Tensor) -> Tensor:
        """``g^T (I - P) A (I - P) g`` per column, from ``A g`` (no product)."""
        C = V.T @ G
        C = C + V.T @ (G - V @ C)  # twice is enough (the basis may be float32)
        return ((G - V @ C) * (AG - AV @ C)).sum(0).double()

    old = residual_forms(Z[:, 1:], Y[:, 1:])
    info["pilot_residual_samples"] = old
    fresh = N - steps - (m - 1)
    s = old.cpu()
    if fresh > 0:
        G = rademacher((n, fresh), generator=generator, dtype=dtype, device=device)
        for _ in range(2):
            G = G - V @ (V.T @ G)
        s = torch.cat([s, _quadratic_forms(matvec, G).cpu()])
    est, se = mean_and_stderr(s)
    return TraceResult(sum(alphas) + est, se, N, s, "auto:deflated"), info
