"""Vector and spectral k-support norm, its dual norm and the prox of its square.

``docs/papers/pal2020.md``, "The k-support norm". The k-support norm of Argyriou, Foygel and Srebro
(2012) has unit ball ``conv{w : ||w||_0 <= k, ||w||_2 <= 1}``; ``k = 1`` is l1 and ``k >= d`` is
l2. The spectral k-support norm (McDonald, Pontil and Stamos 2014) is the vector norm of the
singular values: ``k = 1`` is the nuclear norm and ``k >= rank`` the Frobenius norm.

All functions act on the last dimension (vectors) or the last two (matrices) and are batched over
the leading ones. They keep the input's floating dtype (float32 or float64).

Example:
    >>> import torch
    >>> w = torch.tensor([3.0, 1.0, -4.0, 2.0, -5.0], dtype=torch.float64)
    >>> round(float(ksupport_norm(w, 3) ** 2), 12)     # sqrt(75), not the blog's sqrt(50)
    75.0
    >>> float(ksupport_dual_norm(w, 2) ** 2)
    41.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dropreg._checks import check_int

__all__ = [
    "ksupport_norm",
    "ksupport_dual_norm",
    "ksupport_box_weights",
    "prox_squared_ksupport",
    "spectral_ksupport_norm",
    "spectral_ksupport_dual_norm",
    "prox_squared_spectral_ksupport",
]


def _check_float(x: Tensor, name: str, min_dim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape "
                         f"{tuple(x.shape)}")


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not (lam >= 0.0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite float >= 0, got {lam}")
    return lam


def _norm_parts(w: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Return (squared norm, head size h = k - q - 1, tail sum T) of the closed form (Argyriou et
    al. 2012)."""
    d = w.shape[-1]
    k = min(k, d)
    z = torch.sort(w.abs(), dim=-1, descending=True).values          # (..., d)
    if d == 0:
        zero = w.new_zeros(w.shape[:-1])
        return zero, zero.long(), zero
    # suffix sums: tail[h] = sum_{i >= h} z_i (0-based), h = 0..k-1 (reverse cumsum, so that
    # tail[d - 1] == z[d - 1] exactly)
    tail = torch.flip(torch.cumsum(torch.flip(z, (-1,)), dim=-1), (-1,))[..., :k]
    h = torch.arange(k, device=w.device)
    q1 = (k - h).to(w.dtype)                                           # q + 1 = k - h
    avg = tail / q1
    prev = torch.cat([torch.full_like(z[..., :1], math.inf), z[..., : k - 1]], dim=-1)  # z[h-1]
    cur = z[..., :k]                                                    # z[h]
    # The h with prev > avg >= cur is unique in exact arithmetic. Rounding can break the
    # inequalities at ties, where neighbouring h give the same value, so take the h of least
    # violation (0 for the valid one).
    viol = (avg - prev).clamp_min(0) + (cur - avg).clamp_min(0)
    viol = torch.where((prev > avg) & (avg >= cur), torch.full_like(viol, -1.0), viol)
    hidx = torch.argmin(viol, dim=-1)
    sq = torch.cumsum(z[..., :k] ** 2, dim=-1)
    sq = torch.cat([torch.zeros_like(sq[..., :1]), sq], dim=-1)         # sum z[:h]^2, h=0..k
    head_sq = torch.gather(sq, -1, hidx.unsqueeze(-1)).squeeze(-1)
    T = torch.gather(tail, -1, hidx.unsqueeze(-1)).squeeze(-1)
    value = head_sq + T**2 / (k - hidx).to(w.dtype)
    return value, hidx, T


def ksupport_norm(w: Tensor, k: int) -> Tensor:
    """k-support norm ``||w||_(k)`` of the last dimension (Argyriou et al. 2012).

    Closed form: with ``z = |w|`` sorted decreasingly and the unique ``q`` in ``{0..k-1}`` with
    ``z_{k-q-1} > (1/(q+1)) sum_{i>=k-q} z_i >= z_{k-q}``,
    ``||w||_(k)^2 = sum_{i<k-q} z_i^2 + (sum_{i>=k-q} z_i)^2 / (q+1)``. Cost O(d log d).

    Args:
        w: tensor ``(..., d)``, float32 or float64.
        k: the support size, ``k >= 1``; ``k >= d`` gives the l2 norm, ``k = 1`` the l1 norm.

    Returns:
        Tensor of shape ``w.shape[:-1]``.

    Example:
        >>> import torch
        >>> w = torch.tensor([[3.0, 1.0, -4.0, 2.0, -5.0]])
        >>> ksupport_norm(w, 1), ksupport_norm(w, 5)
        (tensor([15.]), tensor([7.4162]))
    """
    _check_float(w, "w", 1)
    k = check_int("k", k)
    value, _, _ = _norm_parts(w, k)
    return value.clamp_min(0).sqrt()


def ksupport_dual_norm(u: Tensor, k: int) -> Tensor:
    """Dual k-support norm: the l2 norm of the ``k`` largest ``|u_i|`` (Argyriou et al. 2012).

    Example:
        >>> import torch
        >>> float(ksupport_dual_norm(torch.tensor([1.0, -3.0, 2.0]), 2) ** 2)
        13.0
    """
    _check_float(u, "u", 1)
    k = min(check_int("k", k), u.shape[-1])
    return torch.topk(u.abs(), k, dim=-1).values.pow(2).sum(-1).sqrt()


def ksupport_box_weights(w: Tensor, k: int) -> Tensor:
    """Optimal ``t`` of the variational form ``||w||_(k)^2 = min_t sum_i w_i^2 / t_i`` over
    ``{0 <= t_i <= 1, sum t_i <= k}`` (McDonald et al. 2014).

    ``t_i = 1`` on the ``k - q - 1`` largest entries and ``(q + 1) |w_i| / T`` on the others, with
    ``T`` their sum; zero entries get ``t_i = 0``.

    Example:
        >>> import torch
        >>> ksupport_box_weights(torch.tensor([3.0, 1.0, -4.0, 2.0, -5.0]), 3)
        tensor([0.6000, 0.2000, 0.8000, 0.4000, 1.0000])
    """
    _check_float(w, "w", 1)
    k = check_int("k", k)
    d = w.shape[-1]
    if d == 0:
        return w.clone()
    _, hidx, T = _norm_parts(w, k)
    aw = w.abs()
    order = torch.argsort(aw, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(d, device=w.device).expand_as(order))
    q1 = (min(k, d) - hidx).to(w.dtype)
    mid = q1.unsqueeze(-1) * aw / torch.where(T > 0, T, torch.ones_like(T)).unsqueeze(-1)
    return torch.where(rank < hidx.unsqueeze(-1), torch.ones_like(aw), mid)


def _sort_ascending(a: Tensor) -> Tensor:
    """Sort the last dimension ascending; numpy's sort on CPU (several times faster than
    ``torch.sort`` there), ``torch.sort`` elsewhere."""
    if a.device.type == "cpu" and not a.requires_grad:
        import numpy as np

        return torch.from_numpy(np.sort(a.numpy(), axis=-1))
    return torch.sort(a, dim=-1).values


def _s_of_alpha(alpha: Tensor, za: Tensor, P: Tensor, lam: float) -> Tensor:
    """S(alpha) = sum_i clip(alpha z_i - lam, 0, 1) for batched scalars ``alpha`` (shape (B,)),
    ``za`` ascending (B, d) and its prefix sums ``P`` (B, d + 1)."""
    d = za.shape[-1]
    c0 = (lam / alpha).unsqueeze(-1)            # z > c0  -> t > 0
    c1 = ((1.0 + lam) / alpha).unsqueeze(-1)    # z >= c1 -> t = 1
    i0 = torch.searchsorted(za, c0, right=True)  # first index with z > c0
    i1 = torch.searchsorted(za, c1, right=False)  # first index with z >= c1
    n1 = (d - i1).squeeze(-1).to(za.dtype)
    n_mid = (i1 - i0).clamp_min(0).squeeze(-1).to(za.dtype)
    sum_mid = (torch.gather(P, -1, i1) - torch.gather(P, -1, torch.minimum(i0, i1))).squeeze(-1)
    return n1 + alpha * sum_mid - lam * n_mid


def prox_squared_ksupport(w: Tensor, k: int, lam: float, *, return_weights: bool = False
                          ) -> Tensor | tuple[Tensor, Tensor]:
    """Prox of the squared k-support norm: ``argmin_x 0.5||x - w||^2 + (lam/2)||x||_(k)^2``.

    McDonald, Pontil and Stamos (2014), Algorithm 1: ``x_i = t_i w_i / (t_i + lam)`` with
    ``t_i = clip(alpha |w_i| - lam, 0, 1)`` and ``alpha > 0`` the root of ``sum_i t_i = k``. The
    root is found by a sort of ``|w|`` and a binary search over the 2d breakpoints of the
    piecewise-linear ``sum_i t_i(alpha)`` (each step O(log d)), then linear interpolation, so the
    cost is O(d log d). If ``w`` has at most ``k`` nonzeros the answer is ``w / (1 + lam)``.

    Args:
        w: tensor ``(..., d)``, float32 or float64; batched over leading dimensions.
        k: support size ``>= 1``.
        lam: weight ``>= 0`` of the squared norm.
        return_weights: also return the box weights ``t`` (same shape as ``w``).

    Example:
        >>> import torch
        >>> w = torch.tensor([3.0, 1.0, -4.0, 2.0, -5.0], dtype=torch.float64)
        >>> prox_squared_ksupport(w, 1, 0.1)  # k = 1: soft threshold at 0.1 * ||x||_1 = 1
        tensor([ 2.,  0., -3.,  1., -4.], dtype=torch.float64)
    """
    _check_float(w, "w", 1)
    k = check_int("k", k)
    lam = _check_lam(lam)
    shape = w.shape
    d = shape[-1]
    flat = w.reshape(-1, d)
    B = flat.shape[0]
    aw = flat.abs()
    if lam == 0.0 or d == 0 or B == 0:
        t = (aw > 0).to(w.dtype)
        out = flat.clone()
        return (out.reshape(shape), t.reshape(shape)) if return_weights else out.reshape(shape)
    za = _sort_ascending(aw)
    P = flat.new_empty(B, d + 1)
    P[:, 0] = 0.0
    torch.cumsum(za, dim=-1, out=P[:, 1:])
    zero = flat.new_zeros(B, 1)
    nnz = (d - torch.searchsorted(za, zero, right=True)).squeeze(-1)   # (B,), za ascending
    few = nnz <= k
    # Breakpoints in increasing alpha: A_j = lam / zd_j and C_j = (1 + lam) / zd_j, j = 0..nnz-1,
    # zd = za reversed (descending). Index j maps to za[d - 1 - j].
    # For each list find the number of breakpoints with S <= k by bisection (S is monotone).
    safe_nnz = torch.where(few, torch.full_like(nnz, k + 1), nnz).clamp_max(d)

    def bp(j: Tensor, c: float) -> Tensor:
        zj = torch.gather(za, -1, (d - 1 - j).clamp(0, d - 1).unsqueeze(-1)).squeeze(-1)
        return c / torch.where(zj > 0, zj, torch.ones_like(zj))

    def count_le(c: float) -> Tensor:
        lo = torch.zeros_like(nnz)                      # S(bp(lo-1)) <= k known for lo > 0
        hi = safe_nnz.clone()                           # answer in [lo, hi]
        steps = max(1, int(math.ceil(math.log2(d + 1))) + 1)
        for _ in range(steps):
            mid = (lo + hi) // 2
            active = lo < hi
            s = _s_of_alpha(bp(mid, c), za, P, lam)
            good = (s <= k) & active
            lo = torch.where(good, mid + 1, lo)
            hi = torch.where(active & ~good, mid, hi)
        return lo

    nA, nC = count_le(lam), count_le(1.0 + lam)
    inf = torch.full((B,), math.inf, dtype=w.dtype, device=w.device)
    a_lo = torch.where(nA > 0, bp(nA - 1, lam), -inf)
    c_lo = torch.where(nC > 0, bp(nC - 1, 1.0 + lam), -inf)
    a_hi = torch.where(nA < safe_nnz, bp(nA, lam), inf)
    c_hi = torch.where(nC < safe_nnz, bp(nC, 1.0 + lam), inf)
    al0 = torch.maximum(a_lo, c_lo).clamp_min(0.0)
    al1 = torch.minimum(a_hi, c_hi)
    al1 = torch.where(torch.isfinite(al1), al1, al0 + 1.0)
    s0 = _s_of_alpha(torch.where(al0 > 0, al0, torch.ones_like(al0)), za, P, lam)
    s0 = torch.where(al0 > 0, s0, torch.zeros_like(s0))
    s1 = _s_of_alpha(al1, za, P, lam)
    denom = s1 - s0
    alpha = torch.where(denom > 0, al0 + (k - s0) * (al1 - al0) / torch.where(denom > 0, denom,
                        torch.ones_like(denom)), al1)
    t = aw.mul_(alpha.unsqueeze(-1)).sub_(lam).clamp_(0.0, 1.0)   # reuses aw's memory
    if return_weights:
        x = (t + lam).reciprocal_().mul_(t).mul_(flat)
    else:                      # x = w t / (t + lam) = w (1 - lam / (t + lam)), in t's memory
        x = t.add_(lam).reciprocal_().mul_(-lam).add_(1.0).mul_(flat)
    if bool(few.any()):
        t = torch.where(few.unsqueeze(-1), (flat != 0).to(w.dtype), t)
        x = torch.where(few.unsqueeze(-1), flat / (1.0 + lam), x)
    x, t = x.reshape(shape), t.reshape(shape)
    return (x, t) if return_weights else x


def _svdvals(W: Tensor) -> Tensor:
    return torch.linalg.svdvals(W)


def spectral_ksupport_norm(W: Tensor, k: int) -> Tensor:
    """Spectral k-support norm ``||sigma(W)||_(k)`` over the last two dimensions (McDonald et al.
    2014).

    ``k = 1`` is the nuclear norm, ``k >= rank(W)`` the Frobenius norm.

    Example:
        >>> import torch
        >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
        >>> float(spectral_ksupport_norm(W, 1)), float(spectral_ksupport_norm(W, 3) ** 2)
        (6.0, 14.0)
    """
    _check_float(W, "W", 2)
    return ksupport_norm(_svdvals(W), k)


def spectral_ksupport_dual_norm(W: Tensor, k: int) -> Tensor:
    """Dual spectral k-support norm: ``sqrt(sum_{i<=k} sigma_i(W)^2)``.

    Example:
        >>> import torch
        >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
        >>> float(spectral_ksupport_dual_norm(W, 1))
        3.0
    """
    _check_float(W, "W", 2)
    return ksupport_dual_norm(_svdvals(W), k)


def prox_squared_spectral_ksupport(W: Tensor, k: int, lam: float) -> Tensor:
    """Prox of ``(lam/2)||.||_(k)^2`` for matrices: the vector prox on the singular values, with
    the singular vectors kept (the norm is orthogonally invariant).

    Example:
        >>> import torch
        >>> W = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> prox_squared_spectral_ksupport(W, 2, 1.0)
        tensor([[1.5000, 0.0000],
                [0.0000, 0.5000]], dtype=torch.float64)
    """
    _check_float(W, "W", 2)
    P, s, Rh = torch.linalg.svd(W, full_matrices=False)
    a = prox_squared_ksupport(s, k, lam)
    return (P * a.unsqueeze(-2)) @ Rh
