"""Flatness of a solution (Zhang, Zhou, Xu 2022; Feng & Tu 2021; Li et al. 2018).

* :func:`sharpness`: largest Hessian eigenvalue (Lanczos) and trace (Hutch++).
* :func:`interval_flatness`: ``F_v = a_r - a_l``, the largest interval around 0 with
  ``L(theta + a v) <= threshold * L(theta)`` (Feng & Tu 2021; threshold 2), ``v`` unit-norm.
* :func:`filter_normalized_direction` and :func:`loss_profile`: 1-D loss landscapes along a random
  direction whose every filter (row of a weight) has the norm of the same filter of the
  parameters (Li et al. 2018); biases and other 1-D parameters get 0 unless asked.
* :func:`trajectory_pca` and :func:`variance_flatness`: PCA of parameter snapshots and interval
  flatness along each component (the inverse variance-flatness relation of Feng & Tu 2021).

Each tool takes the risk, a :class:`~dropreg.curvature.risk.DropoutRisk` in any dropout state
(or a :class:`HessianOperator`, which stands for its risk): ``loss(vec)`` evaluates the loss at
flat parameters ``vec`` and ``params`` gives the current point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dropreg._params import flatten_params
from dropreg.curvature.alignment import spearman
from dropreg.curvature.hvp import HessianOperator
from dropreg.curvature.lanczos import EigenResult, top_eigenpairs
from dropreg.curvature.risk import DropoutRisk
from dropreg.curvature.trace import TraceResult, stochastic_trace

__all__ = [
    "IntervalFlatness",
    "Sharpness",
    "VarianceFlatness",
    "filter_normalized_direction",
    "interval_flatness",
    "loss_profile",
    "sharpness",
    "trajectory_pca",
    "variance_flatness",
]


@dataclass(frozen=True)
class Sharpness:
    """Largest eigenvalue (:class:`EigenResult`) and trace (:class:`TraceResult`) of ``H``.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
        >>> s = Sharpness(top_eigenpairs(A, generator=torch.Generator().manual_seed(0)),
        ...               stochastic_trace(A, 4, generator=torch.Generator().manual_seed(0)))
        >>> round(s.lambda_max, 10), s.trace.estimate
        (3.0, 4.0)
    """

    top: EigenResult
    trace: TraceResult

    @property
    def lambda_max(self) -> float:
        """The largest Hessian eigenvalue found."""
        return float(self.top.eigenvalues[0])


Risk = DropoutRisk | HessianOperator


def sharpness(
    op: Risk, *, tol: float = 1e-4, trace_matvecs: int = 60,
    generator: torch.Generator | None = None,
) -> Sharpness:
    """``lambda_max(H)`` by Lanczos and ``tr(H)`` by Hutch++ (exact when P is small).

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        >>> net = net.double()
        >>> X, y = torch.randn(10, 2).double(), torch.randn(10, 1).double()
        >>> s = sharpness(HessianOperator(net, torch.nn.functional.mse_loss, (X, y)),
        ...               generator=torch.Generator().manual_seed(0))
        >>> s.top.converged, s.lambda_max > 0
        (True, True)
    """
    if isinstance(op, DropoutRisk):
        op = HessianOperator(op)
    top = top_eigenpairs(op, 1, tol, generator=generator)
    P = op.shape[0]
    if P <= trace_matvecs:  # exact: tr H = sum_i e_i^T H e_i
        d = torch.stack([op.matvec(e)[i] for i, e in
                         enumerate(torch.eye(P, dtype=op.dtype, device=op.device))]).double()
        tr = TraceResult(float(d.sum()), 0.0, P, d, "exact")
    else:
        tr = stochastic_trace(op, trace_matvecs, "hutch++", generator=generator)
    return Sharpness(top, tr)


@dataclass(frozen=True)
class IntervalFlatness:
    """``width = right - left`` (parameter-space distance along the unit direction), the
    threshold loss, and whether each side hit ``max_alpha`` (then the width is a lower bound).

    Example:
        >>> net = torch.nn.Linear(1, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0)
        >>> X = torch.ones(1, 1, dtype=torch.float64)
        >>> op = HessianOperator(net, torch.nn.functional.mse_loss, (X, 2 * X))  # L = (w - 2)^2
        >>> r = interval_flatness(op, torch.ones(1, dtype=torch.float64), rtol=1e-10)
        >>> round(r.width, 6) == round(2 * 2**0.5, 6), r.width == r.right - r.left, r.censored
        (True, True, False)
    """

    width: float
    left: float
    right: float
    threshold: float
    censored: bool
    evaluations: int


def interval_flatness(
    op: Risk,
    direction: Tensor,
    *,
    center: Tensor | None = None,
    threshold: float = 2.0,
    max_alpha: float = 1e3,
    rtol: float = 1e-3,
) -> IntervalFlatness:
    """Interval flatness along ``direction`` (Feng & Tu 2021).

    The direction is normalised to unit length. Each side steps out geometrically from
    ``1e-6 * max_alpha`` until the loss exceeds ``threshold * L(center)``, then bisects the
    crossing to relative accuracy ``rtol``.

    Example:
        >>> net = torch.nn.Linear(1, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0)
        >>> X = torch.ones(1, 1, dtype=torch.float64)
        >>> op = HessianOperator(net, torch.nn.functional.mse_loss, (X, 2 * X))  # L = (w - 2)^2
        >>> r = interval_flatness(op, torch.ones(1, dtype=torch.float64), rtol=1e-8)
        >>> round(r.left, 4), round(r.right, 4)  # (w - 2)^2 <= 2 on [2 - 2**0.5, 2 + 2**0.5]
        (-0.4142, 2.4142)
    """
    if not threshold > 1:
        raise ValueError(f"threshold must be > 1, got {threshold}")
    if not max_alpha > 0:
        raise ValueError(f"max_alpha must be > 0, got {max_alpha}")
    theta = flatten_params(op.params) if center is None else center.to(op.dtype)
    d = direction.to(op.dtype)
    nd = float(d.norm())
    if nd == 0:
        raise ValueError("direction must be non-zero")
    d = d / nd
    L0 = op.loss(theta)
    if not L0 > 0:
        raise ValueError(f"interval flatness needs a positive loss at the center (the interval is "
                         f"where the loss stays below threshold * loss), got loss {L0}")
    thr = threshold * L0
    evals = 1
    ends, censored = [], False
    for sign in (1.0, -1.0):
        lo, a = 0.0, 1e-6 * max_alpha
        while True:
            evals += 1
            if op.loss(theta + sign * a * d) > thr:
                break
            lo = a
            if a >= max_alpha:
                censored = True
                break
            a = min(2 * a, max_alpha)
        if lo < a and not (censored and lo == max_alpha):
            hi = a
            while hi - lo > rtol * hi:
                mid = 0.5 * (lo + hi)
                evals += 1
                if op.loss(theta + sign * mid * d) > thr:
                    hi = mid
                else:
                    lo = mid
            ends.append(0.5 * (lo + hi))
        else:
            ends.append(lo)
    right, left = ends[0], -ends[1]
    return IntervalFlatness(right - left, left, right, thr, censored, evals)


def filter_normalized_direction(
    model: nn.Module,
    *,
    params: Sequence[str] | None = None,
    include_1d: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A random direction, filter-normalised as in Li et al. 2018 (flat, like the parameters).

    Each slice ``d[i]`` of a weight (an output unit / conv filter) is Gaussian, rescaled to
    ``||theta[i]||``. 1-D parameters (biases, norm scales) are 0 unless ``include_1d``, in which
    case they are rescaled as a whole.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> d = filter_normalized_direction(net, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(d[:6].view(2, 3).norm(dim=1), net.weight.detach().norm(dim=1))
        True
        >>> d[6:].tolist()
        [0.0, 0.0]
    """
    named = dict(model.named_parameters())
    names = [k for k, p in named.items() if p.requires_grad] if params is None else list(params)
    parts = []
    for k in names:
        t = named[k].detach()
        r = torch.randn(t.shape, generator=generator, dtype=t.dtype)
        if t.ndim >= 2:
            tn = t.reshape(t.shape[0], -1).norm(dim=1)
            rn = r.reshape(r.shape[0], -1).norm(dim=1).clamp_min(1e-300)
            r = r * (tn / rn).view(-1, *([1] * (t.ndim - 1)))
        elif include_1d:
            r = r * (t.norm() / r.norm().clamp_min(1e-300))
        else:
            r = torch.zeros_like(t)
        parts.append(r.reshape(-1))
    return torch.cat(parts)


def loss_profile(
    op: Risk, direction: Tensor, alphas: Tensor, *, center: Tensor | None = None
) -> Tensor:
    """``L(theta + alpha d)`` for each ``alpha`` (``d`` used as given, not normalised).

    Example:
        >>> net = torch.nn.Linear(1, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(2.0)
        >>> X = torch.ones(1, 1, dtype=torch.float64)
        >>> op = HessianOperator(net, torch.nn.functional.mse_loss, (X, 2 * X))
        >>> loss_profile(op, torch.ones(1), torch.tensor([-1.0, 0.0, 3.0])).tolist()
        [1.0, 0.0, 9.0]
    """
    theta = flatten_params(op.params) if center is None else center.to(op.dtype)
    d = direction.to(op.dtype)
    return torch.tensor([op.loss(theta + float(a) * d) for a in alphas], dtype=torch.float64)


def trajectory_pca(snapshots: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """PCA of parameter snapshots ``(T, P)``: ``(mean (P,), directions (P, k), variances (k,))``.

    Variances use the ``T - 1`` divisor; directions are unit columns, by decreasing variance.

    Example:
        >>> S = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
        >>> mean, V, var = trajectory_pca(S, 2)
        >>> mean.tolist(), [round(v, 4) for v in var.tolist()]
        ([1.0, 0.5], [1.3333, 0.3333])
    """
    T = snapshots.shape[0]
    if snapshots.ndim != 2 or T < 2:
        raise ValueError(f"snapshots must be (T >= 2, P), got shape {tuple(snapshots.shape)}")
    if not isinstance(k, int) or not 1 <= k <= min(T - 1, snapshots.shape[1]):
        raise ValueError(f"k must be an int in [1, {min(T - 1, snapshots.shape[1])}], got {k!r}")
    mean = snapshots.mean(0)
    C = snapshots - mean
    _, s, Vh = torch.linalg.svd(C, full_matrices=False)
    return mean, Vh[:k].T, s[:k] ** 2 / (T - 1)


@dataclass(frozen=True)
class VarianceFlatness:
    """PCA variances of a trajectory and interval flatness along each component.

    ``spearman`` < 0 and ``slope`` (of log variance on log flatness, i.e. ``-psi`` in
    ``sigma^2 ~ F^-psi``) < 0 are the inverse variance-flatness relation.

    See :func:`variance_flatness` for an example.
    """

    variances: Tensor
    flatness: Tensor
    directions: Tensor
    mean: Tensor
    spearman: float
    slope: float


def variance_flatness(
    op: Risk, snapshots: Tensor, k: int = 20, *, threshold: float = 2.0,
    max_alpha: float = 1e3,
) -> VarianceFlatness:
    """Inverse variance-flatness relation (Feng & Tu 2021; ``docs/papers/zhang2022.md``): PCA of
    ``snapshots`` ``(T, P)``; interval flatness of ``op``'s loss along each of the top ``k``
    components, around the snapshot mean.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(8, 3, generator=g, dtype=torch.float64)
        >>> y = torch.randn(8, 1, generator=g, dtype=torch.float64)
        >>> op = HessianOperator(torch.nn.Linear(3, 1, bias=False).double(),
        ...                      torch.nn.functional.mse_loss, (X, y))
        >>> snaps = torch.randn(10, 3, generator=g, dtype=torch.float64)
        >>> vf = variance_flatness(op, snaps, k=3)
        >>> vf.variances.shape, vf.flatness.shape, vf.directions.shape
        (torch.Size([3]), torch.Size([3]), torch.Size([3, 3]))
        >>> bool((vf.variances[:-1] >= vf.variances[1:]).all())  # PCA order
        True
    """
    mean, V, var = trajectory_pca(snapshots.to(op.dtype), k)
    F = torch.tensor([interval_flatness(op, V[:, i], center=mean, threshold=threshold,
                                        max_alpha=max_alpha).width for i in range(k)],
                     dtype=torch.float64)
    var = var.double()
    rho = spearman(var, F) if k >= 3 else float("nan")
    x, y = F.log(), var.log()
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum()) if k >= 2 else math.nan
    return VarianceFlatness(var, F, V, mean, rho, slope)
