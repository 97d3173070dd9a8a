"""Closed-form global minimizers of the Dropout and DropBlock objectives of a linear net.

Problem (whitened data; Pal et al. 2020, Mianjy, Arora & Vidal 2018; ``docs/papers/pal2020.md``,
"Closed-form minimizer")::

    min_{U (D x r), V (d x r)}  ||M - U V^T||_F^2 + lam * sum_g ||U_g V_g^T||_F^2

with ``M = Y^T X / N`` (``D x d``), ``lam = p / (1 - p)``, and ``U_g, V_g`` the ``b = r / k``
contiguous column blocks of size ``k = block_size`` (``k = 1`` is Dropout). Its convex lower
bound is ``min_A ||M - A||^2 + mu ||A||_(k)^2`` with ``mu = lam k / r`` and ``||.||_(k)`` the
spectral k-support norm; the minimizer is the prox of the singular values. Factors of width
``r`` with equal block norms attain the bound when the fusion-frame condition holds
(``docs/papers/pal2020.md``, "When the bound is attained");
with few blocks it can fail, and :func:`solve_dropblock` then says so in its certificate and
returns the best factorization found by multi-start L-BFGS.

Example:
    >>> import torch
    >>> M = torch.diag(torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64))
    >>> sol = solve_dropblock(M, width=4, p=0.5, block_size=2)
    >>> sol.certificate.attained, sol.rank
    (True, 2)
    >>> block_norms(sol.U, sol.V, 2)
    tensor([1.2019, 1.2019], dtype=torch.float64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg.data import Whitening, whiten
from dropreg.linear.ksupport import ksupport_norm, prox_squared_ksupport
from dropreg.linear.objective import _block_count, drop_to_lam, factorized_objective

__all__ = [
    "Certificate",
    "LinearSolution",
    "Whitening",
    "solve_dropout",
    "solve_dropblock",
    "dropout_singular_values",
    "dropblock_singular_values",
    "block_norms",
    "block_norm_spread",
    "numerical_rank",
    "whiten",
    "cross_covariance",
]

#: relative tolerance of the certificate: attained iff gap <= ATTAIN_RTOL * max(1, bound)
ATTAIN_RTOL = 1e-9


@dataclass(frozen=True)
class Certificate:
    """Global-optimality certificate of a factorization.

    Attributes:
        bound: the convex lower bound ``||M - A*||^2 + mu ||A*||_(k)^2`` (Dropout: the
            rank-constrained nuclear-norm value of Mianjy-Arora-Vidal), a lower bound on the
            factorized objective for every ``(U, V)`` of width ``r``.
        value: the factorized objective at the returned ``(U, V)``.
        gap: ``value - bound`` (>= 0 up to rounding).
        attained: ``gap <= tol``: the returned factors are a global minimizer.
        tol: the tolerance used, ``1e-9 * max(1, bound)``.
        method: ``"construction"`` (explicit equal-norm factors, step 4 of
            ``docs/papers/pal2020.md``, "Closed-form minimizer") or ``"lbfgs"``
            (fallback: best of ``starts`` L-BFGS runs on the factorized objective).
        reason: why the construction was not used ("" when it was).
        starts: number of L-BFGS starts (0 for the construction).

    Example:
        >>> sol = solve_dropout(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), 2, 0.5)
        >>> c = sol.certificate
        >>> c.method, c.attained, c.value == c.bound
        ('construction', True, True)
    """

    bound: float
    value: float
    gap: float
    attained: bool
    tol: float
    method: str
    reason: str = ""
    starts: int = 0


@dataclass(frozen=True)
class LinearSolution:
    """Global minimizer of the Dropout / DropBlock objective (float64 tensors).

    Attributes:
        map: end-to-end map ``U V^T`` (``D x d``).
        singular_values: singular values of ``map`` (length ``min(D, d)``, decreasing).
        value: factorized objective ``||M - U V^T||^2 + lam sum_g ||U_g V_g^T||^2`` at ``(U, V)``
            (add ``c_0 = ||Y||^2/N - ||M||^2`` for the expected loss).
        U: ``(D, r)`` outgoing weights; V: ``(d, r)`` incoming weights.
        rank: numerical rank of ``map``.
        threshold: soft threshold ``tau`` of the middle singular values (``mu / alpha``).
        box_weights: the optimal ``t`` of the box-norm form of the k-support norm (length
            ``min(D, d)``).
        p, width, block_size: the problem.
        certificate: see :class:`Certificate`.

    Example:
        >>> sol = solve_dropout(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), 2, 0.5)
        >>> bool(torch.allclose(sol.U @ sol.V.T, sol.map)), sol.rank, sol.value
        (True, 1, 4.0)
    """

    map: Tensor
    singular_values: Tensor
    value: float
    U: Tensor
    V: Tensor
    rank: int
    threshold: float
    box_weights: Tensor
    p: float
    width: int
    block_size: int
    certificate: Certificate


# ----------------------------------------------------------------------------- helpers

def _check_M(M: Tensor) -> Tensor:
    if not isinstance(M, Tensor):
        raise TypeError(f"M must be a torch.Tensor, got {type(M).__name__}")
    if M.dim() != 2:
        raise ValueError(f"M must be 2-D (D x d), got shape {tuple(M.shape)}")
    if not M.is_floating_point():
        raise TypeError(f"M must have a floating dtype, got {M.dtype}")
    if not torch.isfinite(M).all():
        raise ValueError("M must be finite")
    return M.detach().to(torch.float64)


def numerical_rank(A: Tensor, rtol: float | None = None) -> int:
    """Number of singular values above ``rtol * sigma_max`` (default ``max(shape) * eps``).

    Example:
        >>> import torch
        >>> numerical_rank(torch.ones(3, 4, dtype=torch.float64))
        1
    """
    if A.dim() != 2:
        raise ValueError(f"A must be 2-D, got shape {tuple(A.shape)}")
    s = torch.linalg.svdvals(A)
    return _rank_of(s, rtol, max(A.shape), A.dtype)


def _rank_of(s: Tensor, rtol: float | None, n: int, dtype: torch.dtype) -> int:
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0
    if rtol is None:
        rtol = n * torch.finfo(dtype).eps
    return int((s > rtol * s.max()).sum())


def block_norms(U: Tensor, V: Tensor, block_size: int) -> Tensor:
    """``||U_g V_g^T||_F`` for each of the ``r / block_size`` contiguous blocks.

    At a DropBlock global minimizer that attains the bound they are all equal to
    ``(k / r) ||A||_(k)`` (Dropout: ``||u_i|| ||v_i|| = ||A||_* / r``).

    Example:
        >>> import torch
        >>> block_norms(torch.ones(2, 4), torch.ones(3, 4), 2)
        tensor([4.8990, 4.8990])
    """
    b = _block_count(U.shape[1], block_size)
    Ub = U.T.reshape(b, block_size, -1)
    Vb = V.T.reshape(b, block_size, -1)
    G = (Ub @ Ub.transpose(1, 2)) * (Vb @ Vb.transpose(1, 2))
    return G.sum((1, 2)).clamp_min(0).sqrt()


def block_norm_spread(U: Tensor, V: Tensor, block_size: int) -> float:
    """Balancedness: ``(max_g - min_g) / max_g`` of :func:`block_norms` (0 = equal norms).

    Example:
        >>> import torch
        >>> block_norm_spread(torch.ones(2, 4), torch.ones(3, 4), 2)
        0.0
    """
    n = block_norms(U, V, block_size)
    top = float(n.max())
    return 0.0 if top == 0.0 else (top - float(n.min())) / top


def dropout_singular_values(s: Tensor, width: int, lam: float) -> tuple[Tensor, int, float]:
    """Singular values of the Dropout minimizer (Mianjy, Arora & Vidal 2018).

    ``rho = max{j <= r : s_j > lam sum_{i<=j} s_i / (r + lam j)}``, ``tau = lam sum_{i<=rho}
    s_i / (r + lam rho)``, ``a_i = s_i - tau`` for ``i <= rho`` and 0 after.

    Args:
        s: singular values of ``M``, decreasing.
        width: ``r``.
        lam: ``p / (1 - p)``.

    Returns:
        ``(a, rho, tau)``.

    Example:
        >>> import torch
        >>> dropout_singular_values(torch.tensor([3.0, 1.0], dtype=torch.float64), 2, 1.0)
        (tensor([2., 0.], dtype=torch.float64), 1, 1.0)
    """
    n = min(width, s.numel())
    j = torch.arange(1, n + 1, dtype=s.dtype)
    cs = torch.cumsum(s[:n], 0)
    ok = s[:n] > lam * cs / (width + lam * j)
    rho = int(torch.nonzero(ok).max()) + 1 if bool(ok.any()) else 0
    tau = float(lam * cs[rho - 1] / (width + lam * rho)) if rho else 0.0
    a = torch.zeros_like(s)
    a[:rho] = s[:rho] - tau
    return a, rho, tau


def dropblock_singular_values(s: Tensor, width: int, lam: float, block_size: int
                              ) -> tuple[Tensor, Tensor]:
    """Singular values of the convex DropBlock minimizer (Pal et al. 2020;
    ``docs/papers/pal2020.md``, "Closed-form minimizer", step 2).

    ``a = prox`` of ``(mu/2)||.||_(k)^2`` at ``s`` with ``mu = lam k / r``; returns ``(a, t)``
    with ``t`` the box weights.

    Example:
        >>> import torch
        >>> a, t = dropblock_singular_values(torch.tensor([3.0, 1.0], dtype=torch.float64),
        ...                                  2, 1.0, 2)
        >>> a
        tensor([1.5000, 0.5000], dtype=torch.float64)
    """
    mu = lam * block_size / width
    a, t = prox_squared_ksupport(s, block_size, mu, return_weights=True)
    return a, t


# ------------------------------------------------------------------ frame constructions

def _unit_norm_frame(lam_vec: np.ndarray, n: int) -> np.ndarray:
    """``F`` (m x n) with unit-norm columns and ``F F^T = diag(lam_vec)``; needs ``sum lam = n``
    and ``n >= m``. Bendel-Mickey / Davies-Higham Givens rotations: each rotation of two columns
    keeps ``F F^T`` and sets one column norm to 1 exactly (at most n - 1 rotations)."""
    m = lam_vec.size
    F = np.zeros((m, n))
    F[np.arange(m), np.arange(m)] = np.sqrt(lam_vec)
    d = (F**2).sum(0)
    tol = 1e-14
    for _ in range(n):
        lo = np.nonzero(d < 1 - tol)[0]
        hi = np.nonzero(d > 1 + tol)[0]
        if lo.size == 0 or hi.size == 0:
            break
        i, j = lo[0], hi[0]
        aii, ajj, aij = d[i], d[j], F[:, i] @ F[:, j]
        disc = math.sqrt(max(aij * aij - (aii - 1.0) * (ajj - 1.0), 0.0))
        den = aij + math.copysign(disc, aij)
        t = (aii - 1.0) / den if den != 0.0 else 0.0
        c = 1.0 / math.sqrt(1.0 + t * t)
        s = c * t
        fi, fj = F[:, i].copy(), F[:, j].copy()
        F[:, i] = c * fi - s * fj
        F[:, j] = s * fi + c * fj
        d[i], d[j] = (F[:, i] ** 2).sum(), (F[:, j] ** 2).sum()
    return F


def _fusion_frame(t_mid: np.ndarray, b: int, q1: int) -> list[np.ndarray] | None:
    """``F_g`` (m x q1, orthonormal columns), ``g = 1..b``, with ``sum_g F_g F_g^T = b diag(t)``
    (``docs/papers/pal2020.md``, "Closed-form minimizer", step 4), built exactly in the two cases
    where it reduces to a unit-norm frame: ``q1 = 1`` (the vectors themselves; needs ``b >= m``) and
    ``q1 = m - 1`` (orthogonal complements of unit vectors ``n_g`` with
    ``sum_g n_g n_g^T = b diag(1 - t)``; needs ``b >= m``). Returns ``None`` in the other cases (no
    explicit construction is known here)."""
    m = t_mid.size
    if q1 == 1 and b >= m:
        target = b * t_mid
        F = _unit_norm_frame(target * (b / target.sum()), b)
        return [F[:, [g]] for g in range(b)]
    if q1 == m - 1 and b >= m:
        comp = b * (1.0 - t_mid)
        Nf = _unit_norm_frame(comp * (b / comp.sum()), b)
        return [np.linalg.svd(Nf[:, [g]], full_matrices=True)[0][:, 1:] for g in range(b)]
    return None


# ------------------------------------------------------------------ factorized objective

def _fdb_numpy(x: np.ndarray, S: np.ndarray, r: int, k: int, lam: float
               ) -> tuple[float, np.ndarray]:
    """:func:`~dropreg.linear.objective.factorized_objective` of ``S`` at the flat factors ``x``
    and its gradient, in numpy for scipy's L-BFGS (hand gradient: no autograd per call)."""
    m1, m2 = S.shape
    U = x[: m1 * r].reshape(m1, r)
    V = x[m1 * r:].reshape(m2, r)
    R = S - U @ V.T
    b = r // k
    Ub = U.T.reshape(b, k, m1)
    Vb = V.T.reshape(b, k, m2)
    Gu = Ub @ Ub.transpose(0, 2, 1)
    Gv = Vb @ Vb.transpose(0, 2, 1)
    f = float((R**2).sum() + lam * (Gu * Gv).sum())
    gU = -2 * R @ V + 2 * lam * (Gv @ Ub).reshape(r, m1).T  # U_g V_g^T V_g
    gV = -2 * R.T @ U + 2 * lam * (Gu @ Vb).reshape(r, m2).T
    return f, np.concatenate([gU.ravel(), gV.ravel()])


def _lbfgs(S: np.ndarray, r: int, k: int, lam: float, x0: np.ndarray
           ) -> tuple[float, np.ndarray]:
    from scipy.optimize import minimize

    res = minimize(_fdb_numpy, x0, args=(S, r, k, lam), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-16, "gtol": 1e-12,
                            "maxcor": 30})
    return float(res.fun), res.x


# ---------------------------------------------------------------------------- solvers

def _factors_from_frame(P: Tensor, Rm: Tensor, a: np.ndarray, t: np.ndarray, head: int,
                        blocks: list[np.ndarray], r: int, k: int) -> tuple[Tensor, Tensor]:
    """Step 4 of the closed form: ``A_g = (k/r) P E_g E_g^T diag(a/t) R^T``, balanced by its SVD."""
    rho = a.size
    D, d = P.shape[0], Rm.shape[0]
    ratio = np.divide(a, t, out=np.zeros_like(a), where=t > 0)
    Uc, Vc = [], []
    scale = math.sqrt(k / r)
    for Fg in blocks:
        E = np.zeros((rho, head + Fg.shape[1]))
        E[np.arange(head), np.arange(head)] = 1.0
        E[head:, head:] = Fg
        Bg = E.T * ratio[None, :]                        # E_g^T diag(a/t)   (k' x rho)
        W, sv, Zt = np.linalg.svd(Bg, full_matrices=False)
        root = np.sqrt(sv)
        Ug = np.zeros((rho, k))
        Vg = np.zeros((rho, k))
        kk = min(k, sv.size)
        Ug[:, :kk] = (E @ W)[:, :kk] * root[:kk] * scale
        Vg[:, :kk] = Zt[:kk].T * root[:kk] * scale
        Uc.append(Ug)
        Vc.append(Vg)
    Ucore = torch.from_numpy(np.concatenate(Uc, axis=1)) if Uc else torch.zeros(rho, r,
                                                                               dtype=torch.float64)
    Vcore = torch.from_numpy(np.concatenate(Vc, axis=1)) if Vc else torch.zeros(rho, r,
                                                                               dtype=torch.float64)
    U = P[:, :rho] @ Ucore if rho else torch.zeros(D, r, dtype=torch.float64)
    V = Rm[:, :rho] @ Vcore if rho else torch.zeros(d, r, dtype=torch.float64)
    return U, V


def _solution(M, P, s, Rm, a_map, U, V, lam, p, r, k, bound, method, reason, starts, t,
              tau) -> LinearSolution:
    value = float(factorized_objective(U, V, M, p, k))
    gap = value - bound
    tol = ATTAIN_RTOL * max(1.0, abs(bound))
    attained = gap <= tol
    if attained and a_map is not None:
        nz = int((a_map > 0).sum())
        A = (P[:, :nz] * a_map[:nz]) @ Rm[:, :nz].T
        sv = a_map
    else:
        A = U @ V.T
        sv = torch.linalg.svdvals(A)
    return LinearSolution(
        map=A, singular_values=sv, value=value, U=U, V=V,
        rank=_rank_of(sv, None, max(M.shape), torch.float64), threshold=tau,
        box_weights=t, p=p, width=r, block_size=k,
        certificate=Certificate(bound=bound, value=value, gap=gap, attained=bool(attained),
                                tol=tol, method=method, reason=reason, starts=starts))


def solve_dropout(M: Tensor, width: int, p: float) -> LinearSolution:
    """Global minimizer of ``||M - U V^T||^2 + lam sum_i ||u_i||^2 ||v_i||^2`` (width ``r``).

    Cavazza et al. 2018; Mianjy, Arora and Vidal 2018: singular value
    thresholding ``a_i = (s_i - tau)_+`` restricted to rank ``<= r``, ``tau = (lam / r)
    ||A*||_*``. The factors are equalized, ``||u_i|| ||v_i|| = ||A*||_* / r`` for every unit,
    built from a unit-norm frame (Givens rotations), so the certificate is always attained.

    Args:
        M: ``(D, d)`` cross-covariance ``Y^T X / N`` of whitened data.
        width: hidden width ``r``.
        p: drop probability (the papers' keep probability is ``theta = 1 - p``).

    Example:
        >>> import torch
        >>> sol = solve_dropout(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), 2, 0.5)
        >>> sol.singular_values, sol.threshold
        (tensor([2., 0.], dtype=torch.float64), 1.0)
    """
    M = _check_M(M)
    check_int("width", width)
    lam = drop_to_lam(p)
    P, s, Rh = torch.linalg.svd(M, full_matrices=False)
    Rm = Rh.T
    a, rho, tau = dropout_singular_values(s, width, lam)
    bound = float(((s - a) ** 2).sum() + lam / width * a.sum() ** 2)
    t = torch.zeros_like(s)
    if rho:
        t[:rho] = a[:rho] / a[:rho].sum()
    an = a[:rho].numpy()
    tn = t[:rho].numpy()
    blocks = _fusion_frame(tn, width, 1) if rho else [np.zeros((0, 1))] * width
    U, V = _factors_from_frame(P, Rm, an, tn, 0, blocks, width, 1)
    return _solution(M, P, s, Rm, a, U, V, lam, p, width, 1, bound, "construction", "", 0, t,
                     tau)


def solve_dropblock(M: Tensor, width: int, p: float, block_size: int, *, starts: int = 5,
                    generator: torch.Generator | None = None) -> LinearSolution:
    """Global minimizer of the DropBlock objective with a certificate (Pal et al. 2020).

    ``min ||M - U V^T||^2 + lam sum_g ||U_g V_g^T||^2`` over ``U (D x r)``, ``V (d x r)`` with
    ``b = r / k`` contiguous blocks of size ``k = block_size``.

    1. Convex bound: ``a = prox`` of ``(mu/2)||.||_(k)^2`` at the singular values of ``M``,
       ``mu = lam k / r``; ``A* = P diag(a) R^T``.
    2. Equal-norm factors (``docs/papers/pal2020.md``, "Closed-form minimizer", step 4): every block
       takes the head directions (``t_i = 1``) and ``q + 1`` orthonormal combinations ``F_g`` of the
       middle ones with ``sum_g F_g F_g^T = b diag(t_mid)``. Built exactly (unit-norm frames by
       Givens rotations) when ``q = 0`` (always for Dropout) or ``q + 1 = |mid| - 1``; then ``||U_g
       V_g^T||_F = (k/r)||A*||_(k)`` for every block to rounding (``method="construction"``).
    3. Otherwise, if the bound may be attainable, L-BFGS on the factorized objective restricted
       to the rank-``rho`` singular subspace (where any attaining factorization lives), blocks
       then balanced by their SVDs (``method="lbfgs"``; block norms equal to the optimizer's
       accuracy, about 1e-7 relative).
    4. If the bound is not reached (rank ``A* > r``; ``b (q+1) < |mid|`` or
       ``b (|mid| - q - 1) < |mid|``, where no fusion frame exists; or the few-blocks obstruction
       of ``docs/papers/pal2020.md``, "When the bound is attained") the certificate says
       ``attained=False`` with the reason. **Fallback**: multi-start L-BFGS (scipy, gtol 1e-12) on
       the factorized objective in the full singular bases of ``M`` (an exact reduction), from
       ``starts`` random starts of scale ``0.1 sqrt(s_1 / r)`` plus the best subspace point; the
       best is returned with its gap to the bound. The fallback is a local search: its value is an
       upper bound on the global minimum, the bound a lower bound.

    ``block_size = 1`` is Dropout and calls :func:`solve_dropout`.

    Args:
        M: ``(D, d)`` cross-covariance ``Y^T X / N`` of whitened data (see :func:`whiten`).
        width: hidden width ``r``.
        p: drop probability (Pal et al.'s keep probability is ``theta = 1 - p``).
        block_size: ``k``, dividing ``width``.
        starts: random starts of the fallback.
        generator: randomness of the fallback's starts.

    Example:
        >>> import torch
        >>> M = torch.diag(torch.tensor([5, 4, 3, 2.5, .1, .05], dtype=torch.float64))
        >>> sol = solve_dropblock(M, 4, 0.3 / 1.3, 2, generator=torch.Generator().manual_seed(0))
        >>> sol.certificate.attained, sol.certificate.method, round(sol.certificate.gap, 4)
        (False, 'lbfgs', 0.0144)
    """
    M = _check_M(M)
    b = _block_count(check_int("width", width), block_size)
    starts = check_int("starts", starts)
    if block_size == 1:
        return solve_dropout(M, width, p)
    lam = drop_to_lam(p)
    k, r = block_size, width
    P, s, Rh = torch.linalg.svd(M, full_matrices=False)
    Rm = Rh.T
    a, t = dropblock_singular_values(s, r, lam, k)
    mu = lam * k / r
    bound = float(((s - a) ** 2).sum() + mu * ksupport_norm(a, k) ** 2)
    tau = 0.0
    rho = int((a > 0).sum())
    an, tn = a[:rho].numpy(), t[:rho].numpy()
    head = int((tn >= 1.0 - 1e-12).sum())
    q1 = min(k, rho) - head if rho > k else 0
    mid = tn[head:]
    if mid.size:
        tau = float(s[head] - a[head])
    reason = ""
    tol = ATTAIN_RTOL * max(1.0, abs(bound))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    warm: np.ndarray | None = None
    if rho > r:
        reason = f"rank of the convex minimizer ({rho}) exceeds the width r = {r}"
    elif mid.size and min(b * q1, b * (mid.size - q1)) < mid.size:
        reason = (f"{b} blocks with q+1 = {q1} of {mid.size} middle directions: b(q+1) or "
                  f"b(|mid|-q-1) < |mid|, so no fusion frame exists and the bound is not "
                  "attainable (few blocks; dropreg docs, papers/pal2020, 'When the bound is "
                  "attained')")
    elif mid.size and b == 1:
        reason = "one block: a single projection cannot have fractional weights t"
    else:
        blocks = _fusion_frame(mid * (q1 / mid.sum()), b, q1) if mid.size else [
            np.zeros((0, 0))] * b
        x0 = []
        if blocks is not None:
            U, V = _factors_from_frame(P, Rm, an, tn, head, blocks, r, k)
            if float(factorized_objective(U, V, M, p, k)) - bound <= tol:
                return _solution(M, P, s, Rm, a, U, V, lam, p, r, k, bound, "construction", "",
                                 0, t, tau)
            x0 = [np.concatenate([(P[:, :rho].T @ U).numpy().ravel(),
                                  (Rm[:, :rho].T @ V).numpy().ravel()])]
        # The bound, if attainable, is attained inside the rank-rho singular subspace: search
        # there first (small problem), warm-started from the imperfect construction.
        tail = float((s[rho:] ** 2).sum())        # ||M||^2 outside the subspace
        f, x = _multistart(s[:rho].numpy(), r, k, lam, starts, gen, x0, bound - tail + tol)
        f += tail
        if f - bound <= tol:
            U, V = _lift(x, P, Rm, rho, r, k)
            return _solution(M, P, s, Rm, a, U, V, lam, p, r, k, bound, "lbfgs", "", starts,
                             t, tau)
        warm = x
        reason = (f"no factorization reached the bound (best gap in the rank-{rho} subspace "
                  f"{f - bound:.2e}): with few blocks the bound can be unattainable "
                  "(dropreg docs, papers/pal2020, 'When the bound is attained')")
    # fallback: multi-start L-BFGS in the full singular bases of M (an exact reduction)
    m0 = _rank_of(s, None, max(M.shape), torch.float64)
    inits = []
    if warm is not None:
        Uw, Vw = warm[: rho * r].reshape(rho, r), warm[rho * r:].reshape(rho, r)
        pad = np.zeros((m0 - rho, r))
        inits.append(np.concatenate([np.vstack([Uw, pad]).ravel(), np.vstack([Vw, pad]).ravel()]))
    f, x = _multistart(s[:m0].numpy(), r, k, lam, starts, gen, inits, bound + tol)
    U, V = _lift(x, P, Rm, m0, r, k)
    return _solution(M, P, s, Rm, None, U, V, lam, p, r, k, bound, "lbfgs", reason, starts, t,
                     tau)


def _multistart(sv: np.ndarray, r: int, k: int, lam: float, starts: int,
                gen: torch.Generator, inits: list[np.ndarray], target: float
                ) -> tuple[float, np.ndarray]:
    """Best L-BFGS run on ``||diag(sv) - U V^T||^2 + lam sum_g ||U_g V_g^T||^2`` from ``inits``
    and ``starts`` random starts of scale ``0.1 sqrt(sv_1 / r)``; stops early once a run reaches
    ``target`` (the bound: nothing can do better)."""
    m0 = sv.size
    if m0 == 0:
        return 0.0, np.zeros(0)
    S = np.diag(sv)
    scale = 0.1 * math.sqrt(float(sv[0]) / r)
    inits = list(inits) + [scale * torch.randn(2 * m0 * r, generator=gen, dtype=torch.float64)
                           .numpy() for _ in range(starts)]
    best_f, best_x = math.inf, inits[0]
    for x0 in inits:
        f, x = _lbfgs(S, r, k, lam, x0)
        if f < best_f:
            best_f, best_x = f, x
        if best_f <= target:
            break
    return best_f, best_x


def _lift(x: np.ndarray, P: Tensor, Rm: Tensor, m0: int, r: int, k: int
          ) -> tuple[Tensor, Tensor]:
    """Factors from reduced coordinates, each block balanced by the SVD of ``U_g V_g^T`` (which
    leaves the objective unchanged)."""
    D, d = P.shape[0], Rm.shape[0]
    if m0 == 0:
        return torch.zeros(D, r, dtype=torch.float64), torch.zeros(d, r, dtype=torch.float64)
    Uc, Vc = x[: m0 * r].reshape(m0, r).copy(), x[m0 * r:].reshape(m0, r).copy()
    for g in range(r // k):
        sl = slice(g * k, (g + 1) * k)
        W, sv, Zt = np.linalg.svd(Uc[:, sl] @ Vc[:, sl].T, full_matrices=False)
        root = np.sqrt(sv[:k])
        Uc[:, sl] = 0.0
        Vc[:, sl] = 0.0
        kk = root.size
        Uc[:, g * k:g * k + kk] = W[:, :kk] * root
        Vc[:, g * k:g * k + kk] = Zt[:kk].T * root
    return P[:, :m0] @ torch.from_numpy(Uc), Rm[:, :m0] @ torch.from_numpy(Vc)


# ------------------------------------------------------------------------- whitening
# Whitening and whiten live in dropreg.data (the one whitening of the package, ZCA); they are
# re-exported here and from dropreg.linear.

def cross_covariance(X: Tensor, Y: Tensor, *, atol: float = 1e-8) -> Tensor:
    """``M = Y^T X / N`` (``D x d``), after checking that ``X`` is whitened
    (``docs/papers/pal2020.md``, "Setup").

    On whitened data ``(1/N)||Y - X A^T||^2 = ||M - A||_F^2 + c_0`` with
    ``c_0 = ||Y||^2 / N - ||M||^2``, so every closed form is a factorization of ``M``.

    Raises ``ValueError`` if ``||X^T X / N - I||_max > atol``: the closed forms
    (:func:`solve_dropout`, :func:`solve_dropblock`) assume whitened inputs; call
    :func:`whiten` first.

    Example:
        >>> import torch
        >>> cross_covariance(torch.eye(2, dtype=torch.float64) * 2 ** 0.5,
        ...                  torch.ones(2, 1, dtype=torch.float64))
        tensor([[0.7071, 0.7071]], dtype=torch.float64)
    """
    if X.dim() != 2 or Y.dim() != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be (N, d) and (N, D), got {tuple(X.shape)} and "
                         f"{tuple(Y.shape)}")
    X = X.to(torch.float64)
    Y = Y.to(torch.float64)
    N, d = X.shape
    dev = float((X.T @ X / N - torch.eye(d, dtype=torch.float64)).abs().max())
    if dev > atol:
        raise ValueError(f"X is not whitened: max |X^T X / N - I| = {dev:.3e} > atol = {atol}; "
                         "the closed forms assume whitened inputs, call dropreg.linear.whiten(X) "
                         "first")
    return Y.T @ X / N
